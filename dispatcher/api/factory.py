"""gRPC servicer of FactoryService."""

from __future__ import annotations

import grpc

from ailuro.client import FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY
from ailuro.v1 import factory_pb2, factory_pb2_grpc
from dispatcher.api.errors import identity_of, unary
from dispatcher.auth.policy import ADMIN
from dispatcher.services.factory import FactoryCaller, FactoryService


def caller_of(context: grpc.aio.ServicerContext) -> FactoryCaller:
    """The calling factory: with a factory token, the token's ``sub`` (no secret needed); an admin
    token acts for the factory its ``ailuro-factory-id`` metadata names (else as itself); in
    trusted-metadata mode, the factory id and secret from the call's metadata (absent: empty,
    refused later)."""
    identity = identity_of(context)
    values: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in (FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY):
            values[key] = (value.decode(errors="replace") if isinstance(value, bytes) else value)[:255]
    if identity.principal is not None:
        named = values.get(FACTORY_ID_METADATA_KEY, "") if ADMIN in identity.roles else ""
        return FactoryCaller(factory_id=named or identity.name, identity=identity)
    return FactoryCaller(
        factory_id=values.get(FACTORY_ID_METADATA_KEY, ""),
        secret=values.get(FACTORY_SECRET_METADATA_KEY, ""),
        identity=identity,
    )


class FactoryServicer(factory_pb2_grpc.FactoryServiceServicer):
    """Thin adapter over :class:`FactoryService`."""

    def __init__(self, service: FactoryService) -> None:
        self.service = service

    @unary
    async def GetQueueStats(
        self, request: factory_pb2.GetQueueStatsRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.GetQueueStatsResponse:
        return factory_pb2.GetQueueStatsResponse(queues=await self.service.queue_stats(request, caller_of(context)))

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
        return factory_pb2.ListWorkersResponse(workers=await self.service.list_workers(request, caller_of(context)))

    @unary
    async def IssuePilotTokens(
        self, request: factory_pb2.IssuePilotTokensRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.IssuePilotTokensResponse:
        return await self.service.issue_pilot_tokens(request, identity_of(context))
