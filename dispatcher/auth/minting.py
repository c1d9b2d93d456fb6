"""Tokens for the parts that run the system for you: ``ailuro demo``, the factory, its pilots, load tests.

They sign with the embedded issuer's key (:mod:`dispatcher.auth.issuer`), so they work only on an
account that can read the dispatcher's ``--auth-dir`` — the same rule as ``ailuro token issue``.
Each token carries exactly the role its holder needs (least privilege, so they keep working once
roles are enforced): a submitter ``user`` (``production`` for managed jobs), a factory ``factory``
bound to its queues, a pilot ``pilot`` bound to the one queue it serves (``ailuro.queues``).
Token files are written with :func:`ailuro.credentials.write_token_file` (0600, atomically), never
put on a command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from dispatcher.auth.config import DEFAULT_AUDIENCE, EMBEDDED_ISSUER
from dispatcher.auth.issuer import IssuerFiles, ensure, issue, load_key

USER_LIFETIME_S = 12 * 3600.0
"""A submitter's token: a working day, like ``ailuro token issue``'s default."""
FACTORY_LIFETIME_S = 7 * 86400.0
"""A factory runs for days; its operator renews the file (the factory re-reads it per channel)."""
PILOT_LIFETIME_S = 4 * 86400.0
"""A pilot token must outlive the pilot's wait in the batch queue plus its walltime; the pilot
reads it once at start, so it is minted fresh for every submission."""
PILOT_VO = "pilots"
"""VO of a pilot token for a queue that does not serve exactly one VO (its queues bind it)."""


@dataclass(frozen=True, kw_only=True)
class Minter:
    """Signs role-bound tokens with the embedded issuer's key."""

    key: ed25519.Ed25519PrivateKey
    """The embedded issuer's signing key."""
    issuer: str = EMBEDDED_ISSUER
    """``iss`` of the tokens (the dispatcher's ``AuthConfig.embedded_issuer``)."""
    audience: str = DEFAULT_AUDIENCE
    """``aud`` of the tokens (the dispatcher's ``AuthConfig.audience``)."""

    @classmethod
    def from_state_dir(cls, state_dir: Path, *, create: bool = False, admin_vo: str = "admin") -> Minter:
        """The minter of the issuer in ``state_dir`` (made first when ``create``: a demo or load
        test that starts its own dispatcher); :class:`IssuerError` when it cannot be read."""
        files = IssuerFiles(state_dir=Path(state_dir).expanduser())
        if create:
            ensure(files, issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, admin_vo=admin_vo)
        return cls(key=load_key(files))

    def _sign(self, *, user: str, vo: str, roles: Sequence[str], queues: Sequence[str] = (), lifetime_s: float) -> str:
        return issue(
            self.key,
            issuer=self.issuer,
            audience=self.audience,
            user=user,
            vo=vo,
            roles=roles,
            queues=queues,
            lifetime_s=lifetime_s,
        )

    def user(self, user: str, vo: str, *, production: bool = False, lifetime_s: float = USER_LIFETIME_S) -> str:
        """A submitter's token: role ``user`` (``production`` too for managed jobs)."""
        return self._sign(
            user=user, vo=vo, roles=("user", "production") if production else ("user",), lifetime_s=lifetime_s
        )

    def factory(self, factory: str, vo: str, queues: Sequence[str], *, lifetime_s: float = FACTORY_LIFETIME_S) -> str:
        """A factory's token: role ``factory``, bound to the queues it serves."""
        return self._sign(user=factory, vo=vo, roles=("factory",), queues=queues, lifetime_s=lifetime_s)

    def pilot(
        self, queue: str, *, vos: Sequence[str] = (), subject: str = "", lifetime_s: float = PILOT_LIFETIME_S
    ) -> str:
        """A pilot's token: role ``pilot``, bound to ``queue`` only, in the queue's VO when it serves
        exactly one (else :data:`PILOT_VO`); the subject defaults to ``pilot@<queue>``."""
        vo = vos[0] if len(vos) == 1 else PILOT_VO
        return self._sign(
            user=subject or f"pilot@{queue}", vo=vo, roles=("pilot",), queues=(queue,), lifetime_s=lifetime_s
        )
