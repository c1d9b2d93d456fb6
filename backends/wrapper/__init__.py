"""The pilot wrapper: the small shell script every backend submits (COMPASS's ``lsfwrapper.sh``).

One template (``pilot_wrapper.sh.in``) for all batch systems: the factory renders it once per
submission with the queue's settings, and the batch system runs it, once per worker. Values are
shell-quoted here, so nothing from a configuration file can inject shell code.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources
from pathlib import Path

from backends.base import PilotSpec

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    env_lines = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(spec.environment.items()))
    values = {
        "SERVER": shlex.quote(spec.server),
        "QUEUE": shlex.quote(spec.queue),
        "FACTORY_ID": shlex.quote(spec.factory_id),
        "PREFIX": shlex.quote(spec.worker_id_prefix),
        "ENVIRONMENT": env_lines,
        "PILOT_COMMAND": " ".join(shlex.quote(a) for a in spec.pilot_command),
        "IDLE_TIMEOUT": shlex.quote(f"{spec.idle_timeout_s:g}"),
        "PILOT_ARGS": " ".join(shlex.quote(a) for a in spec.pilot_args),
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
