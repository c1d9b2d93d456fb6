"""The pilot wrapper: the small shell script every backend submits (COMPASS's ``lsfwrapper.sh``).

One template (``pilot_wrapper.sh.in``) for all batch systems: the factory renders it once per
submission with the queue's settings, and the batch system runs it, once per worker. Values are
shell-quoted here, so nothing from a configuration file can inject shell code.

The wrapper runs the installed pilot (``PilotSpec.pilot_command``), or, when the spec's
environment carries :data:`BUNDLE_ENV` keys (the factory sets them from the dispatcher's
``/pilot/bundle.json``), downloads the pilot bundle, checks its sha256 and version, and runs it
with the given Python. It leaves evidence for the backends in the spec's log directory; see
:mod:`backends.wrapper.evidence`.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources
from pathlib import Path

from backends.base import PilotSpec
from backends.pilot_tokens import WORKER_TOKEN_FILE

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

BUNDLE_URL_ENV = "AILURO_BUNDLE_URL"
BUNDLE_SHA256_ENV = "AILURO_BUNDLE_SHA256"
BUNDLE_VERSION_ENV = "AILURO_BUNDLE_VERSION"
BUNDLE_PYTHON_ENV = "AILURO_BUNDLE_PYTHON"
BUNDLE_ENV = (BUNDLE_URL_ENV, BUNDLE_SHA256_ENV, BUNDLE_VERSION_ENV, BUNDLE_PYTHON_ENV)
"""Spec environment keys that switch the wrapper to a downloaded, verified pilot bundle."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def template_text() -> str:
    """The raw wrapper template."""
    return resources.files(__package__).joinpath("pilot_wrapper.sh.in").read_text()


def render_wrapper(spec: PilotSpec) -> str:
    """The wrapper script for ``spec``, ready to write to a file and run with bash."""
    for name in spec.environment:
        if not _ENV_NAME.match(name):
            raise ValueError(f"not a valid environment variable name: {name!r}")
    if not spec.pilot_command:
        raise ValueError("pilot_command must not be empty")
    bundle = {k: spec.environment.get(k, "") for k in BUNDLE_ENV}
    if bundle[BUNDLE_URL_ENV]:
        if not _SHA256.match(bundle[BUNDLE_SHA256_ENV]):
            raise ValueError(f"{BUNDLE_SHA256_ENV} must be a sha256 hex digest when {BUNDLE_URL_ENV} is set")
        if not bundle[BUNDLE_VERSION_ENV]:
            raise ValueError(f"{BUNDLE_VERSION_ENV} is required when {BUNDLE_URL_ENV} is set")
    env_lines = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(spec.environment.items()))
    values = {
        "SERVER": shlex.quote(spec.server),
        "QUEUE": shlex.quote(spec.queue),
        "FACTORY_ID": shlex.quote(spec.factory_id),
        "PREFIX": shlex.quote(spec.worker_id_prefix),
        "MARKER_DIR": shlex.quote(str(spec.log_dir)),
        "ENVIRONMENT": env_lines,
        "PILOT_COMMAND": " ".join(shlex.quote(a) for a in spec.pilot_command),
        "IDLE_TIMEOUT": shlex.quote(f"{spec.idle_timeout_s:g}"),
        "PILOT_ARGS": " ".join(shlex.quote(a) for a in spec.pilot_args),
        "BUNDLE_URL": shlex.quote(bundle[BUNDLE_URL_ENV]),
        "BUNDLE_SHA256": shlex.quote(bundle[BUNDLE_SHA256_ENV]),
        "BUNDLE_VERSION": shlex.quote(bundle[BUNDLE_VERSION_ENV]),
        "BUNDLE_PYTHON": shlex.quote(bundle[BUNDLE_PYTHON_ENV] or "python3"),
        "PILOT_TOKEN_DIR": shlex.quote(str(spec.token_dir) if spec.token_dir is not None else ""),
        "PILOT_TOKEN_FILE": shlex.quote(WORKER_TOKEN_FILE),
    }
    text = template_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text


def write_wrapper(spec: PilotSpec, path: Path) -> Path:
    """Render the wrapper for ``spec`` into ``path`` (mode 0755) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_wrapper(spec))
    tmp.chmod(0o755)
    tmp.replace(path)
    return path
