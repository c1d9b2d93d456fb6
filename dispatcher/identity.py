"""Who is calling: the identity every service-layer function takes as an explicit argument.

Real authentication (tokens, X.509) comes later; today the identity is read from gRPC metadata
(``ailuro-user``, ``ailuro-vo``, ``ailuro-roles``) and defaults to ``anonymous`` (embedded mode).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ailuro.vocabulary import ROLES_METADATA_KEY as ROLES_KEY
from ailuro.vocabulary import USER_METADATA_KEY as USER_KEY
from ailuro.vocabulary import VO_METADATA_KEY as VO_KEY


@dataclass(frozen=True, kw_only=True)
class Identity:
    """A caller: a name (recorded as job owner), a VO and roles."""

    name: str = "anonymous"
    vo: str = ""
    roles: tuple[str, ...] = ()


ANONYMOUS = Identity()


def identity_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
    """Build the caller's identity from gRPC invocation metadata (absent keys: anonymous)."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (USER_KEY, VO_KEY, ROLES_KEY):
            values[key] = value.decode() if isinstance(value, bytes) else value
    name = values.get(USER_KEY, "").strip()[:255] or ANONYMOUS.name
    roles = tuple(r.strip() for r in values.get(ROLES_KEY, "").split(",") if r.strip())
    return Identity(name=name, vo=values.get(VO_KEY, "").strip()[:255], roles=roles)
