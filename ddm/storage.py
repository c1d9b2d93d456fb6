"""Storage elements (SEs) by name, resolved to the base URL where their files live.

For now an SE is just a name and a base URL (DESIGN.md §7 adds kind, several endpoints and tape
staging later). Resolution of a name, first match wins:

1. an explicit mapping given to :class:`StorageConfig` (``endpoints``);
2. the environment variable ``AILURO_SE_<NAME>`` (name upper-cased, characters other than letters
   and digits replaced by ``_``), e.g. ``AILURO_SE_CERN_EOS=file:///eos/compass``;
3. ``<storage_root>/<NAME>`` as a ``file://`` URL, when a storage root is configured
   (``AILURO_STORAGE_ROOT``); this is what the one-machine demo uses.

An empty SE name means the default SE (``AILURO_DEFAULT_SE``, else ``LOCAL``). A file ``lfn`` of
``scope`` lives at ``<base>/<scope>/<lfn>`` (``<base>/<lfn>`` without a scope): scope plus name is
unique, as in Rucio.

SE names, scopes and lfns come from job definitions, that is from clients, so each must be one
plain path component (no ``/`` or ``\\``, not ``.`` or ``..``, no NUL or control characters) before
it becomes part of a path: a ``destination_se`` of ``../../etc`` can never make a pilot or the
DDM agent write outside the storage root or an SE's base.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ailuro.errors import InvalidArgument, NotFound
from ddm.protocols import join_url, path_to_url, scheme_of

ENV_PREFIX = "AILURO_SE_"
ENV_STORAGE_ROOT = "AILURO_STORAGE_ROOT"
ENV_DEFAULT_SE = "AILURO_DEFAULT_SE"
DEFAULT_SE = "LOCAL"


MAX_COMPONENT = 255
"""Longest SE name, scope or lfn used as a path component."""


def check_component(value: str, field: str, *, required: bool = True) -> str:
    """``value`` if it is one safe path component; ``InvalidArgument`` naming ``field`` otherwise."""
    if not value:
        if required:
            raise InvalidArgument("must not be empty", field=field)
        return value
    if (
        len(value) > MAX_COMPONENT
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        raise InvalidArgument(
            "must be a plain name (no '/', '\\\\', '.', '..', control characters; at most 255 characters)",
            field=field,
        )
    return value


def env_var_for(se: str) -> str:
    """The environment variable that may name ``se``'s base URL."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", se).upper()


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """How storage-element names map to base URLs."""

    endpoints: Mapping[str, str] = field(default_factory=dict)
    """Explicit SE name -> base URL (``file:///data/se1``, later ``root://host//path``)."""
    storage_root: Path | None = None
    """Directory under which unconfigured SEs get a ``file://`` directory of their own name."""
    default_se: str = DEFAULT_SE
    """The SE used when a job or file names none."""
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    """Where ``AILURO_SE_<NAME>`` variables are looked up (the process environment by default)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> StorageConfig:
        """Configuration from ``AILURO_STORAGE_ROOT`` / ``AILURO_DEFAULT_SE`` / ``AILURO_SE_*``."""
        env = dict(os.environ if environ is None else environ)
        root = env.get(ENV_STORAGE_ROOT)
        values: dict[str, object] = {
            "storage_root": Path(root) if root else None,
            "default_se": env.get(ENV_DEFAULT_SE) or DEFAULT_SE,
            "environ": env,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


class StorageResolver:
    """Turns SE names and file names into URLs that a protocol plugin can open."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config

    def base_url(self, se: str, *, field: str = "destination_se") -> str:
        """Base URL of storage element ``se`` (empty: the default SE); ``NotFound`` when unknown."""
        name = check_component(se or self.config.default_se, field)
        if name in self.config.endpoints:
            return self._checked(name, self.config.endpoints[name])
        from_env = self.config.environ.get(env_var_for(name))
        if from_env:
            return self._checked(name, from_env)
        if self.config.storage_root is not None:
            return path_to_url(Path(self.config.storage_root) / name)
        raise NotFound(
            f"unknown storage element {name!r}: set {env_var_for(name)}=<base URL> or {ENV_STORAGE_ROOT}=<dir>"
        )

    def file_url(self, se: str, *, lfn: str, scope: str = "", field: str = "destination_se") -> str:
        """Where file ``scope:lfn`` lives on ``se`` (``field`` names the SE in errors)."""
        return se_file_url(self.base_url(se, field=field), scope=scope, lfn=lfn)

    @staticmethod
    def _checked(name: str, url: str) -> str:
        if "://" not in url:
            # a bare directory is accepted for convenience and made a file:// URL
            return path_to_url(url)
        if not scheme_of(url):
            raise InvalidArgument(f"storage element {name}: bad URL {url!r}", field="endpoint")
        return url


def se_file_url(endpoint: str, *, scope: str, lfn: str) -> str:
    """Where file ``scope:lfn`` lives under a storage element's base URL (``<base>/<scope>/<lfn>``)."""
    check_component(lfn, "lfn")
    check_component(scope, "scope", required=False)
    return join_url(endpoint, scope, lfn)
