"""gRPC servicer of AdminService (audit log, token issuance); admin only, checked in the service."""

from __future__ import annotations

import grpc

from ailuro.v1 import admin_pb2, admin_pb2_grpc
from dispatcher.api.errors import identity_of, unary
from dispatcher.services.admin import AdminService


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Thin adapter over :class:`AdminService`."""

    def __init__(self, service: AdminService) -> None:
        self.service = service

    @unary
    async def ListAudit(
        self, request: admin_pb2.ListAuditRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListAuditResponse:
        return await self.service.list_audit(request, identity_of(context))

    @unary
    async def IssueToken(
        self, request: admin_pb2.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.IssueTokenResponse:
        return await self.service.issue_token(request, identity_of(context))
