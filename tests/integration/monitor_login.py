"""Identities for monitor tests: the dispatcher's real embedded issuer, made in the test's directory.

The monitor validates these tokens exactly as it validates a production viewer's (the issuer's
JWKS file, Ed25519 signatures, audience, expiry); tests that are about pages, not about login,
send an admin's ``Authorization: Bearer`` header with every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from dispatcher.auth.config import DEFAULT_AUDIENCE, EMBEDDED_ISSUER
from dispatcher.auth.issuer import IssuerFiles, ensure, issue, load_key
from monitor.auth import MonitorAuth


@dataclass(frozen=True)
class Identities:
    """An embedded issuer's key and the monitor settings that trust it."""

    files: IssuerFiles
    key: ed25519.Ed25519PrivateKey

    def auth(self, **kw: object) -> MonitorAuth:
        """Monitor auth settings trusting this issuer (``public_vo=...`` and others pass through)."""
        return MonitorAuth(embedded_jwks=str(self.files.jwks), **kw)  # type: ignore[arg-type]

    def token(self, user: str, vo: str, roles: Sequence[str] = (), *, lifetime_s: float = 3600.0) -> str:
        """A token of ``user`` in ``vo`` signed by this issuer."""
        return issue(
            self.key,
            issuer=EMBEDDED_ISSUER,
            audience=DEFAULT_AUDIENCE,
            user=user,
            vo=vo,
            roles=roles,
            lifetime_s=lifetime_s,
        )

    def bearer(self, user: str, vo: str, roles: Sequence[str] = ()) -> dict[str, str]:
        """``Authorization: Bearer`` for ``user`` in ``vo``."""
        return {"Authorization": f"Bearer {self.token(user, vo, roles)}"}

    def admin(self) -> dict[str, str]:
        """``Authorization: Bearer`` of an admin (sees every VO)."""
        return self.bearer("admin", "admin", ("admin",))


def identities(directory: Path) -> Identities:
    """A fresh embedded issuer in ``directory/auth`` (key, JWKS), as the dispatcher makes it."""
    files = IssuerFiles(state_dir=directory / "auth")
    ensure(files, issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, admin_vo="admin")
    return Identities(files=files, key=load_key(files))
