"""Who a PanDA gateway caller is, on the same identities and roles as the gRPC API.

Two ways in, as in PanDA:

- **OIDC** (``PANDA_AUTH=oidc``): ``Authorization: Bearer <token>`` and ``Origin: <VO>``. The token
  is forwarded unchanged and the dispatcher validates it. The gateway reads the token's claims
  only to refuse early: an ``Origin`` naming another VO than the token's ``wlcg.groups``, and
  ``managed`` jobs without the production role. Reading them unverified is safe because they are
  used only to refuse — whatever they claim, the dispatcher verifies the signature before it acts.
- **X.509** (``X509_USER_PROXY``): the verified client certificate's DN is mapped through the
  same grid-mapfile as the dispatcher's mTLS port (:mod:`dispatcher.auth.gridmap`); an unmapped
  DN is refused. With ``--auth-dir`` the gateway signs a short-lived token for the mapped user
  (the dispatcher's embedded issuer key: the gateway then runs as the dispatcher's account); else
  it passes the mapping as identity metadata, which only a development dispatcher believes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ailuro.errors import InvalidArgument, PermissionDenied, Unauthenticated
from dispatcher.auth import issuer as embedded
from dispatcher.auth.gridmap import Mapping, dn_of_der
from dispatcher.auth.principal import GROUPS_CLAIM, ClaimsError, vo_and_roles

MINTED_LIFETIME_S = 300.0
"""Lifetime of a token the gateway signs for a certificate caller (renewed a minute before it ends)."""
_VO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_AUTHORIZATION = 16384


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who the HTTP caller proves (or, for a development dispatcher, claims) to be."""

    user: str | None
    """Passed as ``ailuro-user`` (believed only by a development dispatcher)."""
    vo: str | None
    """The VO it acts for (``Origin``, the token's VO, or the DN's mapping)."""
    roles: tuple[str, ...] = ()
    """Roles the gateway checks before forwarding (``managed`` needs ``production``)."""
    authorization: str | None = None
    """``Bearer <token>`` forwarded to the dispatcher (the caller's, or one minted for its DN)."""


def token_claims(authorization: str) -> dict[str, Any] | None:
    """The claims of a JWT bearer token, NOT verified (used to refuse, never to grant)."""
    token = authorization.removeprefix("Bearer ").strip()
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 8192:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def token_sub(authorization: str) -> str | None:
    """The ``sub`` claim of a JWT bearer token, NOT verified (development mode only)."""
    sub = (token_claims(authorization) or {}).get("sub")
    return sub[:255] if isinstance(sub, str) and sub.strip() else None


class Minter:
    """Signs short-lived tokens for mapped DNs with the embedded issuer's key, one per identity."""

    def __init__(self, auth_dir: Path, *, issuer: str, audience: str) -> None:
        self._key = embedded.load_key(embedded.IssuerFiles(state_dir=auth_dir))  # IssuerError names the file
        self._issuer = issuer
        self._audience = audience
        self._cache: dict[Mapping, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def authorization(self, mapping: Mapping) -> str:
        """``Bearer <token>`` for ``mapping``'s user, VO and roles."""
        now = time.time()
        with self._lock:
            cached = self._cache.get(mapping)
            if cached is not None and cached[1] - 60 > now:
                return cached[0]
            token = embedded.issue(
                self._key,
                issuer=self._issuer,
                audience=self._audience,
                user=mapping.user,
                vo=mapping.vo,
                roles=mapping.roles,
                lifetime_s=MINTED_LIFETIME_S,
                now=now,
            )
            if len(self._cache) > 10_000:  # bounded by the grid-mapfile's size anyway
                self._cache.clear()
            self._cache[mapping] = (f"Bearer {token}", now + MINTED_LIFETIME_S)
            return self._cache[mapping][0]


def _origin(raw: str | None) -> str | None:
    origin = (raw or "").strip()
    if origin and not _VO_RE.match(origin):
        raise InvalidArgument("must be a VO name (letters, digits, '.', '_', '-'; at most 64)", field="Origin")
    return origin or None


def _token_caller(authorization: str, origin: str | None, *, dev_trust_token_sub: bool) -> Caller:
    claims = token_claims(authorization)
    vo, roles = None, ()
    if claims is not None:
        groups = claims.get(GROUPS_CLAIM)
        # an unusable token: the dispatcher refuses it with the precise reason
        with contextlib.suppress(ClaimsError):
            vo, roles = vo_and_roles(groups if isinstance(groups, list) else [])
    if origin and vo and origin != vo:
        raise PermissionDenied(f"names VO {origin!r} but the token acts for {vo!r}", field="Origin")
    user = token_sub(authorization) if dev_trust_token_sub else None
    return Caller(user=user, vo=origin or vo, roles=roles, authorization=authorization)


def resolve_caller(
    *,
    peercert: bytes | None,
    authorization: str | None,
    origin: str | None,
    gridmap: dict[str, Mapping] | None,
    minter: Minter | None,
    dev_trust_token_sub: bool = False,
) -> Caller:
    """The caller of one request: a bearer token decides, else a verified certificate's mapped DN."""
    if authorization and (len(authorization) > MAX_AUTHORIZATION or not authorization.startswith("Bearer ")):
        raise InvalidArgument("must be 'Bearer <token>' of at most 16 KiB", field="Authorization")
    vo = _origin(origin)
    if authorization:
        return _token_caller(authorization, vo, dev_trust_token_sub=dev_trust_token_sub)
    dn = dn_of_der(peercert)
    if dn is None:
        return Caller(user=None, vo=vo)  # anonymous: the dispatcher decides (token mode refuses)
    if gridmap is None:
        raise Unauthenticated("client certificates need the gateway's --gridmap", field="certificate")
    mapping = gridmap.get(dn)
    if mapping is None:
        raise Unauthenticated(f"DN {dn[:300]!r} is not in the grid-mapfile", field="certificate")
    if vo and vo != mapping.vo:
        raise PermissionDenied(f"names VO {vo!r} but the certificate's DN maps to {mapping.vo!r}", field="Origin")
    bearer = minter.authorization(mapping) if minter is not None else None
    return Caller(user=mapping.user, vo=mapping.vo, roles=mapping.roles, authorization=bearer)
