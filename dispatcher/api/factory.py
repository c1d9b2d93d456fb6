"""gRPC servicer of FactoryService."""

from __future__ import annotations

import grpc

from ailuro.v1 import factory_pb2, factory_pb2_grpc
from dispatcher.api.errors import identity_of, unary
from dispatcher.services.factory import FactoryService


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
        await self.service.register_workers(request, identity_of(context))
        return factory_pb2.RegisterWorkersResponse()

    @unary
    async def UpdateWorkers(
        self, request: factory_pb2.UpdateWorkersRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.UpdateWorkersResponse:
        await self.service.update_workers(request, identity_of(context))
        return factory_pb2.UpdateWorkersResponse()

    @unary
    async def ListWorkers(
        self, request: factory_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> factory_pb2.ListWorkersResponse:
        return factory_pb2.ListWorkersResponse(workers=await self.service.list_workers(request, identity_of(context)))
