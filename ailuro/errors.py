"""One exception tree for the whole project, and its one mapping to gRPC status codes.

The dispatcher's service layer raises these; the gRPC servicers turn them into status codes
with :func:`status_code_for`; the client SDK turns a failed call back into the same class with
:func:`from_rpc_error`. Users of the SDK therefore catch ``ailuro.errors.InvalidArgument``
whether the mistake was found locally or by the server.
"""

from __future__ import annotations

import grpc

FIELD_METADATA_KEY = "ailuro-field"
"""Trailing-metadata key carrying the offending field path of an ``InvalidArgument``."""


class AiluroError(Exception):
    """Base of every error Ailuro raises on purpose."""

    status_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class InvalidArgument(AiluroError):
    """The request is malformed; ``field`` names the offending field path (``jobs[3].transformation``)."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(AiluroError):
    """An id in the request does not exist (or is not visible to the caller)."""

    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(AiluroError):
    """A client-chosen id was reused for a different request."""

    status_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(AiluroError):
    """The request is well-formed but the system is not in a state that allows it (illegal transition)."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(AiluroError):
    """The caller's identity may not do this."""

    status_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(AiluroError):
    """The call carries no valid identity."""

    status_code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(AiluroError):
    """A limit was hit; retry later."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(AiluroError):
    """A dependency (the database) is down; the call is safe to retry."""

    status_code = grpc.StatusCode.UNAVAILABLE


class Cancelled(AiluroError):
    """The call was cancelled."""

    status_code = grpc.StatusCode.CANCELLED


class DeadlineExceeded(AiluroError):
    """The call did not complete in time; with a request_id it is safe to retry."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(AiluroError):
    """A bug or an unexpected failure on the server."""

    status_code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[AiluroError]] = {
    cls.status_code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
        Cancelled,
        DeadlineExceeded,
        Internal,
    )
}


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code a server returns for ``exc`` (INTERNAL for anything unexpected)."""
    if isinstance(exc, AiluroError):
        return exc.status_code
    return grpc.StatusCode.INTERNAL


def from_rpc_error(err: grpc.RpcError) -> AiluroError:
    """Rebuild the Ailuro exception a server raised from a failed gRPC call."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else None) or str(err)
    field = None
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == FIELD_METADATA_KEY:
            field = value if isinstance(value, str) else value.decode()
    cls = _BY_CODE.get(code, AiluroError)
    exc = cls(details)
    exc.field = field
    exc.status_code = code
    return exc
