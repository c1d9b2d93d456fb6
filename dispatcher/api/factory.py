"""gRPC servicer of FactoryService."""

from __future__ import annotations

import grpc

from ailuro.client import FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY
from ailuro.v1 import factory_pb2, factory_pb2_grpc
from dispatcher.api.errors import identity_of, unary
from dispatcher.services.factory import FactoryCaller, FactoryService


def caller_of(context: grpc.aio.ServicerContext) -> FactoryCaller:
    """The factory id and secret from the call's metadata (absent: empty, refused later)."""
    values: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in (FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY):
            values[key] = (value.decode(errors="replace") if isinstance(value, bytes) else value)[:255]
    return FactoryCaller(
        factory_id=values.get(FACTORY_ID_METADATA_KEY, ""), secret=values.get(FACTORY_SECRET_METADATA_KEY, "")
    )


class FactoryServicer(factory_pb2_grpc.FactoryServiceServicer):
    """Thin adapter over :class:`FactoryService`."""

    def __init__(self, service: FactoryService) -> None:
        self.service = service

    @unary
    async def GetQueueStats(
        self, request: factory_pb2.GetQueueStatsRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.GetQueueStatsResponse:
        return factory_pb2.GetQueueStatsResponse(queues=await self.service.queue_stats(request, identity_of(context)))

    @unary
    async def RegisterWorkers(
        self, request: factory_pb2.RegisterWorkersRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.RegisterWorkersResponse:
        await self.service.register_workers(request, caller_of(context))
        return factory_pb2.RegisterWorkersResponse()

    @unary
    async def UpdateWorkers(
        self, request: factory_pb2.UpdateWorkersRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.UpdateWorkersResponse:
        released = await self.service.update_workers(request, caller_of(context))
        return factory_pb2.UpdateWorkersResponse(released_jobs=released)

    @unary
    async def ReportQueueHealth(
        self, request: factory_pb2.ReportQueueHealthRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.ReportQueueHealthResponse:
        await self.service.report_queue_health(request, caller_of(context))
        return factory_pb2.ReportQueueHealthResponse()

    @unary
    async def ListWorkers(
        self, request: factory_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.ListWorkersResponse:
        return factory_pb2.ListWorkersResponse(workers=await self.service.list_workers(request, identity_of(context)))

    @unary
    async def IssuePilotTokens(
        self, request: factory_pb2.IssuePilotTokensRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.IssuePilotTokensResponse:
        return await self.service.issue_pilot_tokens(request, identity_of(context))
