"""The dispatcher's side of the pilot protocol's answers, as ``pilot.proto`` documents them.

Pure functions from the configuration (and a request) to the wire messages that tell a pilot
what it would otherwise have to guess: :func:`welcome` (the answer to Hello: session, lease,
heartbeat period, limits), :func:`no_more_jobs` (the end of the answer to a JobRequest that got
fewer jobs than asked) and :func:`job_request_problem` (a malformed JobRequest, rejected alone).
"""

from __future__ import annotations

from ailuro.errors import InvalidArgument
from ailuro.v1 import pilot_pb2
from dispatcher import validation
from dispatcher.config import DispatcherConfig

HEARTBEATS_PER_LEASE = 3
"""The heartbeat period told to pilots is at most ``lease_s / HEARTBEATS_PER_LEASE``, so that a
lease survives two lost heartbeats."""


def heartbeat_period_s(config: DispatcherConfig) -> float:
    """How often a pilot must heartbeat each held job (``Welcome.heartbeat_s``)."""
    return min(config.pilot_heartbeat_s, config.lease_s / HEARTBEATS_PER_LEASE)


def pilot_limits(config: DispatcherConfig) -> pilot_pb2.PilotLimits:
    """The bounds this dispatcher applies to what a pilot sends."""
    limits = config.limits
    return pilot_pb2.PilotLimits(
        max_jobs_per_request=validation.MAX_JOBS_PER_REQUEST,
        heartbeats_per_message=min(validation.MAX_BATCH, limits.heartbeats_per_message),
        held_jobs_per_hello=limits.held_jobs_per_hello,
        errors_per_final=limits.errors_per_final,
        files_per_final=limits.files_per_final,
        diag_chars=limits.diag_chars,
        pending_per_stream=limits.pending_per_stream,
        max_message_bytes=limits.max_message_bytes,
        debug_report_bytes=limits.debug_report_bytes,
    )


def welcome(config: DispatcherConfig, *, session_id: str, dispatcher_id: str) -> pilot_pb2.Welcome:
    """The answer to a Hello (``session_id`` empty for unary calls, which have no session)."""
    return pilot_pb2.Welcome(
        session_id=session_id,
        dispatcher_id=dispatcher_id,
        lease_s=max(1, int(config.lease_s)),
        heartbeat_s=heartbeat_period_s(config),
        limits=pilot_limits(config),
    )


def job_request_problem(req: pilot_pb2.JobRequest, where: str = "job_request") -> tuple[str, str] | None:
    """``(field, what is wrong)`` for a malformed JobRequest, or ``None`` when it may be served."""
    if not 1 <= req.n <= validation.MAX_JOBS_PER_REQUEST:
        return f"{where}.n", f"must be 1 to {validation.MAX_JOBS_PER_REQUEST}, got {req.n}"
    try:
        validation.validate_free(req, where)  # walltime_left_s and the free cores, memory, disk
    except InvalidArgument as exc:
        return exc.field or where, exc.message
    if req.request_id < 0:
        return f"{where}.request_id", f"must not be negative, got {req.request_id}"
    return None


def no_more_jobs(
    req: pilot_pb2.JobRequest, *, n_given: int, retry_after_s: float, reason: str, invalid_field: str = ""
) -> pilot_pb2.DispatcherMessage:
    """The NoJob that ends the answer to ``req`` after ``n_given`` assignments."""
    return pilot_pb2.DispatcherMessage(
        no_job=pilot_pb2.NoJob(
            retry_after_s=retry_after_s,
            request_id=req.request_id,
            n_requested=req.n,
            n_given=n_given,
            reason=reason,
            invalid_field=invalid_field,
        )
    )
