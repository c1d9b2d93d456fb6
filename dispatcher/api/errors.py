"""The one mapping from exceptions to gRPC status codes, for unary and streaming handlers.

``ailuro.errors`` exceptions become their status code with the message as details and the
offending field in trailing metadata (``ailuro-field``); database outages become UNAVAILABLE;
anything else is a bug: INTERNAL, logged as one bounded line (type, first line of the message,
the innermost code locations; never the request's data).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from ailuro.errors import FIELD_METADATA_KEY, AiluroError, status_code_for
from dispatcher.identity import ANONYMOUS, CURRENT, Identity
from dispatcher.logsafe import describe, where
from dispatcher.store.engine import is_unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> NoReturn:
    """End the call with the status that ``exc`` maps to."""
    if isinstance(exc, AiluroError):
        code = status_code_for(exc)
        metadata = ((FIELD_METADATA_KEY, exc.field),) if exc.field else ()
        await context.abort(code, str(exc), metadata)
    if is_unavailable(exc):
        log.warning("%s: database unavailable: %s", method, type(exc).__name__)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable; retry later")
    # Bounded and payload-free: the exception's text may quote the request (SQL parameters).
    log.error("%s failed unexpectedly: %s (at %s)", method, describe(exc), where(exc))
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
    raise AssertionError("context.abort() returned")  # it always raises


def identity_of(context: grpc.aio.ServicerContext) -> Identity:
    """The caller's identity, as the authentication interceptor established it.

    ``context`` is unused: the interceptor is the one place that reads credentials, so no
    handler can fall back to believing metadata.
    """
    del context
    current = CURRENT.get()
    return current if current is not None else ANONYMOUS


def unary(fn: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wrap a unary handler with the error mapping."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await abort_with(context, exc, fn.__qualname__)

    return wrapper


def streaming(
    fn: Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """Wrap a server-streaming (or bidirectional) handler with the error mapping."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
        try:
            async for item in fn(self, request, context):
                yield item
        except Exception as exc:
            if _is_abort(exc):
                raise
            await abort_with(context, exc, fn.__qualname__)

    return wrapper


def _is_abort(exc: BaseException) -> bool:
    # grpc.aio signals context.abort() with an internal exception type; let it through untouched.
    return type(exc).__name__ == "AbortError"
