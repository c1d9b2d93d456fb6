"""Counting every RPC by method and status code (and timing unary ones) for ``/metrics``.

The interceptor runs outside authentication, so refused calls (UNAUTHENTICATED,
PERMISSION_DENIED) are counted too. The status comes from the call's context once the handler
is done: ``context.abort`` and ``set_code`` leave it there; an exception that escaped the error
mapping is UNKNOWN, a call the client cancelled is CANCELLED. Methods gRPC does not know (no
handler) are not counted, so the ``method`` label only ever takes registered names.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from dispatcher.auth.interceptor import replace_behavior
from dispatcher.services.metrics import DispatcherMetrics


def short_method(full: str) -> str:
    """``PilotService/Connect`` for ``/ailuro.v1.PilotService/Connect`` (the package adds nothing)."""
    service, _, method = full.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


def _code_name(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> str:
    code = context.code()
    if code is None:
        return default.name
    if isinstance(code, grpc.StatusCode):
        return code.name
    try:
        return grpc.StatusCode(code).name  # some grpc versions keep the raw tuple/int
    except ValueError:
        return default.name


def _wrap(behavior: Callable[..., Any], metrics: DispatcherMetrics, method: str) -> Callable[..., Any]:
    counter = metrics.rpcs
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            default = grpc.StatusCode.OK
            try:
                async for item in behavior(request, context):
                    yield item
            except asyncio.CancelledError:
                default = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                default = grpc.StatusCode.UNKNOWN
                raise
            finally:
                counter.labels(method, _code_name(context, default)).inc()

        return stream

    timer = metrics.rpc_duration.labels(method)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        default = grpc.StatusCode.OK
        try:
            return await behavior(request, context)
        except asyncio.CancelledError:
            default = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            default = grpc.StatusCode.UNKNOWN
            raise
        finally:
            timer.observe(time.perf_counter() - started)
            counter.labels(method, _code_name(context, default)).inc()

    return unary


class MeteringInterceptor(grpc.aio.ServerInterceptor):
    """Counts (and times) every call of a registered method; put it first, before authentication."""

    def __init__(self, metrics: DispatcherMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = short_method(handler_call_details.method)
        return replace_behavior(handler, lambda behavior: _wrap(behavior, self._metrics, method))
