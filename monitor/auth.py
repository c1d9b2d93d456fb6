"""Who is looking at the monitor: the same identities as the dispatcher, kept in a session.

A viewer proves who they are once, with a bearer token validated by the dispatcher's own
:class:`~dispatcher.auth.tokens.TokenValidator` (the embedded issuer's JWKS, external issuers,
the OIDC issuer), pasted into the login form or obtained by OIDC authorization-code login
(:mod:`monitor.oidc`). The monitor then keeps a **server-side session**: the cookie holds only a
random 256-bit session id (HttpOnly, SameSite=Strict, Secure over TLS); the token itself never
goes back to the browser, logging out really ends the session (the id is forgotten here), and a
cookie stays far below browsers' size limits whatever the token's size. The price: sessions live
in this process, so a restarted monitor asks viewers to log in again. Scripts send
``Authorization: Bearer <token>`` with each request instead (validated the same way, cached).

The viewer's VOs and roles come from the token (:class:`~dispatcher.auth.principal.Principal`):
an ``admin`` sees everything, anyone else their VO's jobs, tasks, files and pilots. Pilot and
factory tokens are machine identities and cannot log in.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from ailuro.errors import PermissionDenied, Unauthenticated
from ailuro.queues import QueueConfig
from dispatcher.auth.config import AuthConfig, IssuerConfig
from dispatcher.auth.principal import Principal
from dispatcher.auth.tokens import AuthError, TokenValidator
from monitor.filters import Viewer

SESSION_COOKIE = "ailuro_session"
MACHINE_ROLES = frozenset({"pilot", "factory"})
"""Roles of machine identities: their tokens cannot log in to the monitor."""


class LoginRequired(Unauthenticated):
    """The request carries no credentials: pages send the browser to ``/login``, JSON twins answer 401."""


@dataclass(frozen=True, kw_only=True)
class Session:
    """One logged-in viewer."""

    viewer: Viewer
    """Who the session's token proved."""
    expires: float
    """The session ends then (the token's ``exp``, at most :attr:`MonitorAuth.session_max_s` after login)."""
    csrf: str
    """The session's anti-CSRF token: state-changing forms (logout) must send it back."""


class Sessions:
    """Logged-in sessions by the SHA-256 of their id (the id itself is only in the viewer's cookie).

    Bounded: past ``max_sessions`` the oldest session is forgotten, so a flood of logins cannot
    grow memory.
    """

    def __init__(self, *, max_sessions: int, clock: Callable[[], float] = time.time) -> None:
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._max = max_sessions
        self._clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def _key(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode(errors="replace")).digest()

    def create(self, viewer: Viewer, expires: float) -> tuple[str, Session]:
        """A new session for ``viewer``; returns its id (for the cookie) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(viewer=viewer, expires=expires, csrf=secrets.token_urlsafe(32))
        with self._lock:
            self._sessions[self._key(session_id)] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session of ``session_id``, or None (unknown, ended or expired)."""
        if not session_id or len(session_id) > 128:
            return None
        key = self._key(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires <= self._clock():
                del self._sessions[key]
                return None
            return session

    def end(self, session_id: str) -> None:
        """Forget a session (logout): its cookie no longer proves anything."""
        with self._lock:
            self._sessions.pop(self._key(session_id), None)


def visible_queues(vos: Iterable[str], queues: Iterable[QueueConfig]) -> frozenset[str]:
    """The queues (from the queue file) that serve one of ``vos`` or any VO."""
    wanted = set(vos)
    return frozenset(q.name for q in queues if not q.vos or wanted & set(q.vos))


def viewer_of_principal(principal: Principal, queues: Iterable[QueueConfig]) -> Viewer:
    """The monitor's viewer for a validated token (PermissionDenied for a pilot or factory token)."""
    roles = frozenset(principal.roles)
    if roles & MACHINE_ROLES and "admin" not in roles:
        raise PermissionDenied(f"a {'/'.join(sorted(roles & MACHINE_ROLES))} token cannot log in to the monitor")
    vos = frozenset({principal.vo})
    return Viewer(name=principal.user, vos=vos, roles=roles | {"user"}, queues=visible_queues(vos, queues))


@dataclass(frozen=True, kw_only=True)
class MonitorAuth:
    """How the monitor learns who is looking (``MonitorConfig.auth``)."""

    tokens: AuthConfig = field(default_factory=AuthConfig)
    """Token validation settings shared with the dispatcher (clock skew, size caps, JWKS fetching),
    and the external issuers to trust (``issuers``)."""
    embedded_jwks: str = ""
    """The JWKS of the dispatcher's embedded issuer (``<auth dir>/jwks.json``); empty: none."""
    public_vo: str = ""
    """``--public VO``: anyone, without logging in, sees that VO's pages (no logs, no audit)."""
    cookie_secure: bool | None = None
    """Mark cookies Secure: None decides per request (only when the request came over https)."""
    session_max_s: float = 12 * 3600.0
    """A session ends this long after login at the latest, even if the token lives longer."""
    max_sessions: int = 10_000
    """Sessions kept at once (the oldest is forgotten beyond it)."""

    def issuers(self) -> tuple[IssuerConfig, ...]:
        """Every issuer whose tokens log in: the configured ones and the dispatcher's embedded one."""
        embedded = (
            (IssuerConfig(issuer=self.tokens.embedded_issuer, jwks=self.embedded_jwks, audience=self.tokens.audience),)
            if self.embedded_jwks
            else ()
        )
        return (*self.tokens.issuers, *embedded)


class Authenticator:
    """Validates tokens into viewers (cached by digest until ``exp``) and keeps the sessions."""

    def __init__(
        self, auth: MonitorAuth, queues: tuple[QueueConfig, ...], *, extra: dict[str, TokenValidator] | None = None
    ) -> None:
        self.auth = auth
        self.queues = queues
        issuers = auth.issuers()
        self._validator = TokenValidator(auth.tokens, issuers) if issuers else None
        self._extra = dict(extra or {})  # issuer -> validator (the OIDC issuer, known after discovery)
        self.sessions = Sessions(max_sessions=auth.max_sessions)
        self._cache: OrderedDict[bytes, tuple[Viewer, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.public_viewer = (
            Viewer(
                vos=frozenset({auth.public_vo}),
                public=True,
                queues=visible_queues((auth.public_vo,), queues),
            )
            if auth.public_vo
            else None
        )

    @property
    def accepts_tokens(self) -> bool:
        """Whether any issuer is configured (otherwise only a ``--public`` view exists)."""
        return self._validator is not None or bool(self._extra)

    def add_issuer(self, issuer: str, validator: TokenValidator) -> None:
        """Trust tokens of ``issuer`` (the OIDC provider, once its discovery document is read)."""
        self._extra[issuer] = validator

    def validate(self, token: str) -> tuple[Viewer, float]:
        """The viewer a token proves and the token's expiry; Unauthenticated/PermissionDenied if not."""
        digest = hashlib.sha256(token.encode(errors="replace")).digest()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.time():
            return cached
        try:
            principal = self._validator_for(token).validate(token)
        except AuthError as exc:
            raise Unauthenticated(f"authentication failed: {exc.reason}") from None
        found = (viewer_of_principal(principal, self.queues), principal.expires)
        with self._lock:
            self._cache[digest] = found
            while len(self._cache) > self.auth.max_sessions:
                self._cache.popitem(last=False)
        return found

    def _validator_for(self, token: str) -> TokenValidator:
        try:
            iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            iss = None
        chosen = self._extra.get(iss) if isinstance(iss, str) else None
        if chosen is not None:
            return chosen
        if self._validator is None:
            raise Unauthenticated("this monitor trusts no token issuer (it runs with --public only)")
        return self._validator

    def login(self, token: str) -> tuple[str, Session]:
        """A new session for a valid token (its id goes in the cookie)."""
        viewer, expires = self.validate(token)
        return self.sessions.create(viewer, min(expires, time.time() + self.auth.session_max_s))


def bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header ("" when the header is malformed)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


def queue_view(queue: QueueConfig) -> dict[str, Any]:
    """A queue's configuration as the site page shows it.

    The pilots' environment may carry credentials: only its variable names are shown.
    """
    return {
        "name": queue.name,
        "vos": list(queue.vos),
        "labels": list(queue.labels),
        "backend": queue.backend,
        "enabled": queue.enabled,
        "max_running": queue.max_running,
        "factory": {
            "max_queued": queue.factory.max_queued,
            "max_total": queue.factory.max_total,
            "max_per_cycle": queue.factory.max_per_cycle,
            "idle_timeout_s": queue.factory.idle_timeout_s,
        },
        "backend_options": {k: str(v) for k, v in sorted(queue.backend_options.items())},
        "input_se": list(queue.input_se),
        "output_se": list(queue.output_se),
        "pass_env": list(queue.pass_env),
        "pilot_environment_names": sorted(queue.pilot_environment),
    }
