"""Who a validated token says the caller is: claims mapped by the WLCG Common JWT Profile.

Pure functions on plain claim dictionaries, so the mapping is tested without keys or a server.
``wlcg.groups`` names the VO and the roles (``/compass`` → VO ``compass``;
``/compass/production`` → role ``production`` in it), ``scope`` names the allowed actions
(``compute.create|read|modify|cancel``), ``sub`` the user, and the Ailuro-specific
``ailuro.queues`` the queues a pilot token may serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUPS_CLAIM = "wlcg.groups"
SCOPE_CLAIM = "scope"
QUEUES_CLAIM = "ailuro.queues"
"""Queues a pilot (or factory) token is bound to: a list of queue names."""

COMPUTE_SCOPES = ("compute.create", "compute.read", "compute.modify", "compute.cancel")
"""The WLCG compute scopes Ailuro understands (create: submit; read: list/watch; modify: retry,
priorities; cancel: kill). Other scopes in a token are kept out of the principal."""

ROLES = ("user", "production", "pilot", "factory", "admin")
"""Role names a group below the VO may carry (``/compass/pilot``)."""

MAX_GROUPS = 64
MAX_QUEUES = 256
MAX_NAME_CHARS = 255


class ClaimsError(ValueError):
    """A token's claims do not describe a usable principal; the message says which claim and why."""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """An authenticated caller, derived from a validated token."""

    user: str
    """The token's ``sub``: recorded as the owner of what the caller creates."""
    vo: str
    """The one VO named by the token's ``wlcg.groups`` (``/compass`` → ``compass``)."""
    roles: tuple[str, ...] = ()
    """Roles from ``/<vo>/<role>`` groups, sorted; ``user`` is implied by VO membership."""
    scopes: tuple[str, ...] = ()
    """Compute scopes from ``scope``, sorted (``compute.create`` ...)."""
    queues: tuple[str, ...] = ()
    """Queues a pilot or factory token is bound to (``ailuro.queues``)."""
    issuer: str = ""
    """The ``iss`` of the token: whose word this is."""
    expires: float = 0.0
    """The token's ``exp`` (seconds since the epoch)."""


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ClaimsError(f"claim {name!r} is missing or not a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        raise ClaimsError(f"claim {name!r} is longer than {MAX_NAME_CHARS} characters")
    return value.strip()


def _string_list(claims: Mapping[str, Any], name: str, limit: int) -> list[str]:
    value = claims.get(name, [])
    if isinstance(value, str):  # some issuers send a single group as a string
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClaimsError(f"claim {name!r} must be a list of strings")
    if len(value) > limit:
        raise ClaimsError(f"claim {name!r} has more than {limit} entries")
    if any(len(v) > MAX_NAME_CHARS for v in value):
        raise ClaimsError(f"claim {name!r} has an entry longer than {MAX_NAME_CHARS} characters")
    return value


def vo_and_roles(groups: list[str]) -> tuple[str, tuple[str, ...]]:
    """The VO and roles that WLCG groups name; exactly one VO, else :class:`ClaimsError`.

    ``/compass`` and ``/compass/production`` → ``("compass", ("production",))``. Deeper or unknown
    sub-groups (``/compass/analysis/2024``) carry no role. A token naming two VOs is refused
    rather than guessed at: the caller asks its issuer for a token of the VO it acts for.
    """
    vos: set[str] = set()
    roles: set[str] = set()
    for group in groups:
        parts = [p for p in group.strip().split("/") if p]
        if not group.startswith("/") or not parts:
            raise ClaimsError(f"claim 'wlcg.groups' entry {group!r} is not a group path like /vo or /vo/role")
        vos.add(parts[0])
        if len(parts) == 2 and parts[1] in ROLES:
            roles.add(parts[1])
    if not vos:
        raise ClaimsError("claim 'wlcg.groups' names no VO")
    if len(vos) > 1:
        raise ClaimsError(f"claim 'wlcg.groups' names {len(vos)} VOs; a token must act for one")
    return vos.pop(), tuple(sorted(roles))


def scopes_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The compute scopes in the space-separated ``scope`` claim (others are ignored)."""
    raw = claims.get(SCOPE_CLAIM, "")
    if not isinstance(raw, str):
        raise ClaimsError("claim 'scope' must be a space-separated string")
    return tuple(sorted({s for s in raw.split() if s in COMPUTE_SCOPES}))


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Map validated claims to a :class:`Principal` (the signature and times are checked already)."""
    vo, roles = vo_and_roles(_string_list(claims, GROUPS_CLAIM, MAX_GROUPS))
    exp = claims.get("exp", 0)
    return Principal(
        user=_string(claims, "sub"),
        vo=vo,
        roles=roles,
        scopes=scopes_of(claims),
        queues=tuple(sorted(set(_string_list(claims, QUEUES_CLAIM, MAX_QUEUES)))),
        issuer=_string(claims, "iss"),
        expires=float(exp) if isinstance(exp, int | float) else 0.0,
    )
