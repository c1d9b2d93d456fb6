"""The one place that reads a caller's credentials: a ``grpc.aio`` server interceptor.

Every RPC but health checks and reflection passes through it. In ``token`` mode it reads
``authorization: Bearer <jwt>``, validates it (:mod:`dispatcher.auth.tokens`) and ends the call
with UNAUTHENTICATED when it is missing or invalid (with ``--gridmap``, a call without a token
acts as its verified client certificate's mapped DN: :mod:`dispatcher.auth.gridmap`); in
``trusted-metadata`` mode (development,
loopback only) it believes ``ailuro-user``/``ailuro-vo``/``ailuro-roles``. Either way the
caller's :class:`Identity` is put in :data:`dispatcher.identity.CURRENT` for the handler, where
``identity_of`` finds it; nothing else reads identity metadata (the PanDA gateway forwards
``authorization`` here too). It then applies the method's rule of :data:`dispatcher.auth.policy.POLICY`
(one dict lookup per call): a caller without the role or scope gets PERMISSION_DENIED naming what
is needed, a caller without valid credentials UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import grpc

from dispatcher.auth import policy
from dispatcher.auth.config import TOKEN_MODE, AuthConfig, IssuerConfig
from dispatcher.auth.issuer import IssuerFiles, ensure
from dispatcher.auth.principal import Principal
from dispatcher.auth.tokens import AuthError, TokenValidator
from dispatcher.identity import CURRENT, Identity, identity_from_metadata

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.")
"""Methods served without credentials: load balancers and tools probe them."""

Authenticate = Callable[[grpc.aio.ServicerContext], Awaitable[Identity]]


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the ``authorization: Bearer <token>`` metadata entry, or None."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


def identity_of_principal(principal: Principal, *, admin_vo: str = "admin") -> Identity:
    """The service layer's view of an authenticated principal.

    A token naming no role is a plain ``user``; an admin of ``admin_vo`` acts on every VO.
    """
    roles = principal.roles or (policy.USER,)
    return Identity(
        name=principal.user,
        vo=principal.vo,
        roles=roles,
        principal=principal,
        all_vos=policy.ADMIN in roles and principal.vo == admin_vo,
    )


class TokenAuthenticator:
    """Validates bearer tokens, remembering valid ones (by digest) until they expire."""

    def __init__(
        self,
        validator: TokenValidator,
        *,
        cache_size: int,
        admin_vo: str = "admin",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._validator = validator
        self._admin_vo = admin_vo
        self._cache: OrderedDict[bytes, Identity] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    async def __call__(self, context: grpc.aio.ServicerContext) -> Identity:
        token = bearer_token(context.invocation_metadata())
        if token is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "authentication required: send 'authorization: Bearer <token>'"
            )
        if not token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization metadata is not 'Bearer <token>'")
        try:
            return await self.identity(token or "")
        except AuthError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authentication failed: {exc.reason}")
        raise AssertionError("context.abort() returned")

    async def identity(self, token: str) -> Identity:
        """The identity ``token`` proves (cached), or :class:`AuthError`."""
        digest = hashlib.sha256(token.encode(errors="replace")).digest()
        cached = self._cache.get(digest)
        if cached is not None and cached.principal is not None and cached.principal.expires > self._clock():
            return cached
        # Off the event loop: a JWKS refresh may wait on the issuer's server.
        principal = await asyncio.to_thread(self._validator.validate, token)
        identity = identity_of_principal(principal, admin_vo=self._admin_vo)
        self._cache[digest] = identity
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return identity


def believed_identity(metadata: Iterable[tuple[str, str | bytes]] | None, *, admin_vo: str = "admin") -> Identity:
    """Development mode's identity: the claimed user, VO and roles, believed.

    A caller claiming no role is the development default (:data:`policy.DEV_DEFAULT_ROLES`, acting
    on every VO's jobs, as every client did before roles existed, but no administration); one
    claiming roles is held to them exactly as a token would be.
    """
    claimed = identity_from_metadata(metadata)
    if not claimed.roles:
        return replace(claimed, roles=policy.DEV_DEFAULT_ROLES, all_vos=True)
    return replace(claimed, all_vos=policy.ADMIN in claimed.roles and (claimed.vo or admin_vo) == admin_vo)


def trusted_metadata(admin_vo: str = "admin") -> Authenticate:
    """Development mode: believe the caller's ``ailuro-user``/``ailuro-vo``/``ailuro-roles``."""

    async def authenticate(context: grpc.aio.ServicerContext) -> Identity:
        return believed_identity(context.invocation_metadata(), admin_vo=admin_vo)

    return authenticate


async def _admit(context: grpc.aio.ServicerContext, authenticate: Authenticate, method: str) -> None:
    """Authenticate the caller, apply ``method``'s rule, and publish the identity for the handler."""
    identity = await authenticate(context)
    denial = policy.method_denial(method, identity)
    if denial is not None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method.rsplit('/', 1)[-1]} {denial}")
    CURRENT.set(identity)


def _wrap_behavior(behavior: Callable[..., Any], authenticate: Authenticate, method: str) -> Callable[..., Any]:
    # Each RPC runs in its own task, so setting CURRENT here is seen by the handler (and the
    # tasks it starts) and by no other call.
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(context, authenticate, method)
            async for item in behavior(request, context):
                yield item

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _admit(context, authenticate, method)
        return await behavior(request, context)

    return unary


def replace_behavior(
    handler: grpc.RpcMethodHandler, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> grpc.RpcMethodHandler:
    """``handler`` with its one behaviour (whichever of the four call kinds it has) passed through
    ``wrap``; shared by every server interceptor here (authentication, metering)."""
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, kind)
        if behavior is not None:
            return handler._replace(**{kind: wrap(behavior)})
    return handler


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every RPC except :data:`EXEMPT_PREFIXES` with ``authenticate``."""

    def __init__(self, authenticate: Authenticate) -> None:
        self._authenticate = authenticate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(EXEMPT_PREFIXES):
            return handler
        method = handler_call_details.method
        return replace_behavior(handler, lambda behavior: _wrap_behavior(behavior, self._authenticate, method))


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the server to this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_interceptor(auth: AuthConfig, *, host: str) -> AuthInterceptor:
    """The interceptor for ``auth`` (making the embedded issuer's files at first start).

    Raises ValueError for a configuration that must not run: trusted metadata on a non-loopback
    address, or token mode with no issuer to trust.
    """
    if auth.mode != TOKEN_MODE:
        if not is_loopback(host):
            raise ValueError(
                f"auth mode 'trusted-metadata' believes any caller and is allowed on loopback only, not {host!r}; "
                "use token authentication (--auth token)"
            )
        log.warning(
            "!!! INSECURE: auth mode 'trusted-metadata' — any local process may act as any user "
            "(development only; use --auth token) !!!"
        )
        return AuthInterceptor(trusted_metadata(auth.admin_vo))
    if auth.tls_cert is None and not is_loopback(host):
        log.warning("auth mode 'token' without TLS on %s: bearer tokens travel in clear text (use --tls-cert)", host)
    issuers = list(auth.issuers)
    if auth.state_dir is not None:
        files = IssuerFiles(state_dir=auth.state_dir)
        if ensure(files, issuer=auth.embedded_issuer, audience=auth.audience, admin_vo=auth.admin_vo):
            log.warning(
                "embedded issuer: wrote a first admin token to %s (readable by this account only)", files.admin_token
            )
        log.info(
            "embedded issuer %r: admin token in %s, JWKS in %s", auth.embedded_issuer, files.admin_token, files.jwks
        )
        issuers.append(IssuerConfig(issuer=auth.embedded_issuer, jwks=str(files.jwks), audience=auth.audience))
    if not issuers:
        raise ValueError("auth mode 'token' needs a state directory (embedded issuer) or at least one issuer")
    validator = TokenValidator(auth, tuple(issuers))
    tokens = TokenAuthenticator(validator, cache_size=auth.cache_size, admin_vo=auth.admin_vo)
    if auth.gridmap is not None:
        from dispatcher.auth.gridmap import CertificateAuthenticator, load_gridmap

        gridmap = load_gridmap(auth.gridmap)  # GridmapError (a ValueError) names the bad line
        log.info("mTLS: %d DN(s) mapped by %s", len(gridmap), auth.gridmap)
        return AuthInterceptor(CertificateAuthenticator(gridmap, tokens))
    return AuthInterceptor(tokens)
