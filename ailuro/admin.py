"""Admin calls of the SDK: the audit log and token issuance (``client.admin``; admin role only)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from ailuro.v1 import admin_pb2, admin_pb2_grpc

if TYPE_CHECKING:
    from ailuro.client import Client


def _ts(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


class AdminClient:
    """``AdminService`` on the connection of a :class:`~ailuro.client.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = admin_pb2_grpc.AdminServiceStub(client._channel)

    def audit(
        self,
        *,
        actor: str = "",
        action: str = "",
        vo: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Iterator[admin_pb2.AuditEntry]:
        """Audit entries, newest first, at most ``limit`` in all (fetched page by page)."""
        token, left = "", limit
        while left > 0:
            request = admin_pb2.ListAuditRequest(
                actor=actor, action=action, vo=vo, limit=min(left, 1000), page_token=token
            )
            if since is not None:
                request.since.CopyFrom(_ts(since))
            if until is not None:
                request.until.CopyFrom(_ts(until))
            page = self._client._call(self._stub.ListAudit, request, idempotent=True)
            yield from page.entries
            left -= len(page.entries)
            token = page.next_page_token
            if not token:
                return

    def issue_token(
        self, *, user: str, vo: str, roles: Sequence[str] = (), queues: Sequence[str] = (), lifetime_s: int = 0
    ) -> admin_pb2.IssueTokenResponse:
        """A token signed by the dispatcher's embedded issuer (the issuance is audited)."""
        request = admin_pb2.IssueTokenRequest(user=user, vo=vo, roles=roles, queues=queues, lifetime_s=lifetime_s)
        # not retried on ambiguous failures: each call mints (and records) a new token
        return self._client._call(self._stub.IssueToken, request, idempotent=False)
