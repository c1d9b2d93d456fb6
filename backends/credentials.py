"""A factory's id and secret: what proves to the dispatcher that workers are this factory's.

Until real identities exist (issue #14), each factory id has a random secret, created at the
factory's first start in a file only its user can read (mode 0600) and sent with every
FactoryService call. The dispatcher fixes the secret's hash at the first registration under the
id and refuses workers' registrations and updates that present another one.

The secret lives in the state directory, keyed by factory id, not in the work directory: a
factory started with ``--factory-id X`` from any work directory is factory X and can adopt (or
cancel) X's workers.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from ailuro.client import FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY
from ailuro.errors import InvalidArgument
from ailuro.vocabulary import ROLES_METADATA_KEY

STATE_DIR_ENV = "AILURO_STATE_DIR"
"""Overrides the state directory (default ``$XDG_STATE_HOME/ailuro``, else ``~/.local/state/ailuro``)."""

FACTORY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
"""A factory id: also a file name, so a safe one."""


def check_factory_id(factory_id: str) -> str:
    """``factory_id`` itself; ``InvalidArgument`` when it is not of :data:`FACTORY_ID_RE`'s form."""
    if not FACTORY_ID_RE.fullmatch(factory_id):
        raise InvalidArgument(
            f"must be 1-128 letters, digits, '.', '_' or '-' (not starting with '.'), got {factory_id!r}",
            field="factory_id",
        )
    return factory_id


def state_dir() -> Path:
    """Where per-user factory state (secrets) lives."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "ailuro" if xdg else Path.home() / ".local" / "state" / "ailuro"


def default_secret_file(factory_id: str) -> Path:
    """``<state dir>/factories/<factory id>.secret``."""
    return state_dir() / "factories" / f"{check_factory_id(factory_id)}.secret"


def load_or_create_secret(path: Path) -> str:
    """The secret in ``path``, created (mode 0600, exclusively) with 256 random bits if absent.

    A file readable by others is refused rather than silently used: the secret is the factory's
    only proof of who it is.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InvalidArgument(
                f"factory secret {path} is readable by others (mode {mode:o}); chmod 600 it", field="secret_file"
            ) from None
        secret = path.read_text().strip()
        if not secret:
            raise InvalidArgument(f"factory secret {path} is empty", field="secret_file") from None
        return secret
    secret = secrets.token_hex(32)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def factory_metadata(factory_id: str, secret: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that identifies the factory on every FactoryService call.

    It claims the ``factory`` role, which a trusted-metadata (development) dispatcher believes, so
    the factory is held to a factory's rights there too; with a token the token decides.
    """
    return (
        (FACTORY_ID_METADATA_KEY, factory_id),
        (FACTORY_SECRET_METADATA_KEY, secret),
        (ROLES_METADATA_KEY, "factory"),
    )


def stored_factory_id(workdir: Path) -> str:
    """The factory id kept in ``<workdir>/factory-id``, made (``factory-<random>``) at first use.

    The factory and the token minted for it (``ailuro factory --auth-dir``) both use it, so the
    token's subject is the factory id its workers are registered under.
    """
    path = workdir / "factory-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        workdir.mkdir(parents=True, exist_ok=True)
        factory_id = f"factory-{secrets.token_hex(4)}"
        path.write_text(factory_id + "\n")
        return factory_id
