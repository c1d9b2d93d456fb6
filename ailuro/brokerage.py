"""Brokerage and fair share from the SDK: queue status, shares, and why a job waits.

Reached as ``Client(...).brokerage``; changing a status or a weight needs the admin role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ailuro.v1 import brokerage_pb2, brokerage_pb2_grpc

if TYPE_CHECKING:
    from ailuro.client import Client

QUEUE_STATUSES = ("online", "offline", "test", "brokeroff")
"""What ``set_queue_status`` accepts."""


class BrokerageClient:
    """The BrokerageService of one dispatcher, on the client's connection."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = brokerage_pb2_grpc.BrokerageServiceStub(client._channel)

    def _call(self, method: Any, request: Any, *, idempotent: bool = True) -> Any:
        return self._client._call(method, request, idempotent=idempotent)

    def set_queue_status(self, queue: str, status: str, reason: str) -> brokerage_pb2.QueueStatusChange:
        """Set ``queue`` online, offline, test or brokeroff (admin); the recorded change."""
        req = brokerage_pb2.SetQueueStatusRequest(queue=queue, status=status, reason=reason)
        return self._call(self._stub.SetQueueStatus, req).change

    def queue_history(self, queue: str, *, limit: int = 0) -> list[brokerage_pb2.QueueStatusChange]:
        """A queue's status changes, newest first."""
        req = brokerage_pb2.GetQueueStatusHistoryRequest(queue=queue, limit=limit)
        return list(self._call(self._stub.GetQueueStatusHistory, req).changes)

    def shares(self) -> brokerage_pb2.GetSharesResponse:
        """The share tree: target, decayed usage and effective priority per node."""
        return self._call(self._stub.GetShares, brokerage_pb2.GetSharesRequest())

    def set_share_weight(self, path: str, weight: float) -> None:
        """Set the weight of ``vo``, ``vo/group`` or ``vo/group/user`` (admin)."""
        self._call(self._stub.SetShareWeight, brokerage_pb2.SetShareWeightRequest(path=path, weight=weight))

    def why(self, panda_id: int) -> brokerage_pb2.ExplainJobResponse:
        """Why a job waits: per queue whether it could run and why not, its place in the claim order."""
        return self._call(self._stub.ExplainJob, brokerage_pb2.ExplainJobRequest(panda_id=panda_id))
