"""The BrokerageService servicer: wire types at the edge, everything else in services/placement.py."""

from __future__ import annotations

import grpc

from ailuro.v1 import brokerage_pb2, brokerage_pb2_grpc
from dispatcher.api.errors import identity_of, unary
from dispatcher.services.placement import PlacementService
from dispatcher.store.brokerage import StatusChange


def _change(c: StatusChange) -> brokerage_pb2.QueueStatusChange:
    msg = brokerage_pb2.QueueStatusChange(
        queue=c.queue, status=c.status.value, reason=c.reason, changed_by=c.changed_by
    )
    msg.changed_at.FromNanoseconds(int(c.changed_at * 1e9))
    return msg


class BrokerageServicer(brokerage_pb2_grpc.BrokerageServiceServicer):
    """gRPC adapter over :class:`PlacementService`."""

    def __init__(self, service: PlacementService) -> None:
        self.service = service

    @unary
    async def SetQueueStatus(
        self, request: brokerage_pb2.SetQueueStatusRequest, context: grpc.aio.ServicerContext
    ) -> brokerage_pb2.SetQueueStatusResponse:
        change = await self.service.set_queue_status(
            request.queue, request.status, request.reason, identity_of(context)
        )
        return brokerage_pb2.SetQueueStatusResponse(change=_change(change))

    @unary
    async def GetQueueStatusHistory(
        self, request: brokerage_pb2.GetQueueStatusHistoryRequest, context: grpc.aio.ServicerContext
    ) -> brokerage_pb2.GetQueueStatusHistoryResponse:
        identity_of(context)
        changes = await self.service.queue_history(request.queue, request.limit)
        return brokerage_pb2.GetQueueStatusHistoryResponse(changes=[_change(c) for c in changes])

    @unary
    async def GetShares(
        self, request: brokerage_pb2.GetSharesRequest, context: grpc.aio.ServicerContext
    ) -> brokerage_pb2.GetSharesResponse:
        identity_of(context)
        lines = await self.service.shares()
        return brokerage_pb2.GetSharesResponse(
            nodes=[
                brokerage_pb2.ShareNode(
                    path=x.path,
                    weight=x.weight,
                    target=x.target,
                    usage=x.usage,
                    usage_fraction=x.usage_fraction,
                    priority=x.priority,
                )
                for x in lines
            ],
            half_life_s=self.service.policy.base.half_life_s,
        )

    @unary
    async def SetShareWeight(
        self, request: brokerage_pb2.SetShareWeightRequest, context: grpc.aio.ServicerContext
    ) -> brokerage_pb2.SetShareWeightResponse:
        await self.service.set_share_weight(request.path, request.weight, identity_of(context))
        return brokerage_pb2.SetShareWeightResponse()

    @unary
    async def ExplainJob(
        self, request: brokerage_pb2.ExplainJobRequest, context: grpc.aio.ServicerContext
    ) -> brokerage_pb2.ExplainJobResponse:
        why = await self.service.why(request.panda_id, identity_of(context))
        f, e = why.facts, why.explanation
        return brokerage_pb2.ExplainJobResponse(
            panda_id=f.panda_id,
            status=f.state.value,
            computing_site=f.site,
            brokerage_reason=why.row["brokerage_reason"],
            share_leaf=f.leaf_path,
            share_priority=f.leaf_priority if f.leaf_priority != float("inf") else 0.0,
            claim_position=why.position,
            claim_waiting=why.waiting,
            queues=[
                brokerage_pb2.QueueVerdict(queue=v.queue, can_run=v.can_run, reasons=list(v.reasons))
                for v in e.verdicts
            ],
            advice=list(e.advice),
            summary=e.summary,
        )
