"""Who is calling: the identity every service-layer function takes as an explicit argument.

The server's one authentication interceptor (:mod:`dispatcher.auth.interceptor`) puts it in
:data:`CURRENT` for each call: from a validated bearer token, or (development mode only) from
the ``ailuro-user``/``ailuro-vo``/``ailuro-roles`` metadata, read by :func:`identity_from_metadata`.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from ailuro.vocabulary import ROLES_METADATA_KEY as ROLES_KEY
from ailuro.vocabulary import USER_METADATA_KEY as USER_KEY
from ailuro.vocabulary import VO_METADATA_KEY as VO_KEY
from dispatcher.auth.principal import Principal


@dataclass(frozen=True, kw_only=True)
class Identity:
    """A caller: a name (recorded as job owner), a VO and roles."""

    name: str = "anonymous"
    vo: str = ""
    roles: tuple[str, ...] = ()
    principal: Principal | None = None
    """The validated token's principal (scopes, queues, issuer); None in trusted-metadata mode."""
    all_vos: bool = False
    """Acts on every VO's (and every owner's) jobs: an admin of the admin VO, or a trusted-metadata
    caller that claims no role (see :mod:`dispatcher.auth.policy`)."""


ANONYMOUS = Identity()

CURRENT: ContextVar[Identity | None] = ContextVar("ailuro_identity", default=None)
"""The identity of the call being served, set by the authentication interceptor."""


def identity_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
    """Build the caller's identity from gRPC invocation metadata (absent keys: anonymous)."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (USER_KEY, VO_KEY, ROLES_KEY):
            values[key] = value.decode() if isinstance(value, bytes) else value
    name = values.get(USER_KEY, "").strip()[:255] or ANONYMOUS.name
    roles = tuple(r.strip() for r in values.get(ROLES_KEY, "").split(",") if r.strip())
    return Identity(name=name, vo=values.get(VO_KEY, "").strip()[:255], roles=roles)
