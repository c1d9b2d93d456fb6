"""Request strategies for the dispatcher's RPCs: the descriptor walker plus realistic hints.

The hints steer part of every field towards values a real client sends (the ``LOCAL`` queue, ids
of jobs that exist, epochs a lease can have, states a pilot reports), so requests get past
validation and reach the store and the hub; the rest stays boundary and hostile values.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st
from protostrategies import HOSTILE_TEXT, Hints, message_class, messages, near_valid

from ailuro.v1 import factory_pb2, job_pb2, pilot_pb2

QUEUE = "LOCAL"

_VALID_JOB_STATES = [v for v in job_pb2.JobStatus.values() if v != job_pb2.JOB_STATUS_UNSPECIFIED]

HINTS = Hints(
    strings={
        "computing_site": st.just(QUEUE),
        "queue": st.just(QUEUE),
        "queues": st.just(QUEUE),
        "transformation": st.sampled_from(["/bin/true", "phast"]),
        "pilot_id": st.sampled_from(["prop-p1", "prop-p2"]),
        "worker_id": st.sampled_from(["prop-w1", "prop-w2", "prop-p1"]),
        "request_id": st.sampled_from(["prop-r1", "prop-r2"]),
        "lfn": st.one_of(st.sampled_from(["in.root", "j.job.log.tgz"]), st.integers(0, 10**6).map("f{}.root".format)),
        "member": st.sampled_from(["payload.stdout", "payload.stderr", "pilot.log"]),
        "backend": st.sampled_from(["local", "slurm", "htcondor", "lsf"]),
        "factory_id": st.just("prop-f1"),
        "owner": st.just("anonymous"),
        "vo": st.just("default"),
        "prod_source_label": st.sampled_from(["user", "managed"]),
        "batch_id": st.sampled_from(["4242", "17.0", "1234_7"]),
        "adler32": st.sampled_from(["0a1b2c3d", "FFFFFFFF"]),
        "job_name": st.sampled_from(["prop.job", "prop.job.1"]),
    },
    ints={
        "panda_id": st.integers(1, 60),
        "panda_ids": st.integers(1, 60),
        "lease_epoch": st.integers(0, 3),
        "n": st.integers(1, 3),
        "page_size": st.integers(0, 10),
        "limit": st.integers(0, 20),
        "cores": st.integers(0, 4),
        "max_attempt": st.integers(0, 4),
        "current_priority": st.integers(0, 10),
        "task_id": st.integers(0, 3),
        "after_event_id": st.integers(0, 50),
        "size": st.integers(0, 10_000),
        "code": st.integers(0, 2000),
        "walltime_left_s": st.integers(0, 3600),
        "max_walltime_s": st.integers(0, 3600),
        "memory_mb": st.integers(0, 4000),
    },
    enums={
        job_pb2.JobStatus.DESCRIPTOR.full_name: st.sampled_from(_VALID_JOB_STATES),
        job_pb2.FileType.DESCRIPTOR.full_name: st.sampled_from([1, 2, 3]),
        job_pb2.ErrorComponent.DESCRIPTOR.full_name: st.sampled_from([1, 2, 3, 4]),
        factory_pb2.WorkerState.DESCRIPTOR.full_name: st.integers(1, 9),
    },
)

# Metadata values must be printable ASCII (gRPC refuses anything else before sending).
_ASCII = st.text(st.sampled_from(string.printable[:95]), max_size=40)
_METADATA_TEXT = st.one_of(
    _ASCII,
    st.sampled_from([t for t in HOSTILE_TEXT if t.isascii() and t.isprintable()]),
    st.just("u" * 1000),
)


def identities() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Identity metadata as callers send it today (trusted, unauthenticated): any printable value."""
    return st.lists(
        st.tuples(st.sampled_from(["ailuro-user", "ailuro-vo", "ailuro-roles"]), _METADATA_TEXT),
        max_size=3,
        unique_by=lambda kv: kv[0],
    )


def requests_for(method: Any) -> st.SearchStrategy[Any]:
    """Requests for ``method`` (a MethodDescriptor): one message, or a list for client streams.

    Half are built field by field from every pool, half are near-valid (one odd field at most). A
    client stream mostly starts with a valid Hello, as pilots do, followed by any messages.
    """
    strategy = st.one_of(messages(method.input_type, hints=HINTS), near_valid(method.input_type, hints=HINTS))
    if not method.client_streaming:
        return strategy
    hello = near_valid(pilot_pb2.Hello.DESCRIPTOR, hints=HINTS).map(lambda h: pilot_pb2.PilotMessage(hello=h))
    first = st.one_of(hello, hello, hello, strategy)
    return st.tuples(first, st.lists(strategy, max_size=6)).map(lambda fr: [fr[0], *fr[1]])


def message_for(descriptor: Any) -> Any:
    """An empty message of ``descriptor``'s type."""
    return message_class(descriptor)()


def pilot_messages() -> st.SearchStrategy[pilot_pb2.PilotMessage]:
    """Pilot messages after the Hello: near-valid reports (odd metrics, files, errors) and anything else."""
    descriptor = pilot_pb2.PilotMessage.DESCRIPTOR
    return st.one_of(
        near_valid(descriptor, hints=HINTS), near_valid(descriptor, hints=HINTS), messages(descriptor, hints=HINTS)
    )


def pilot_reports() -> st.SearchStrategy[pilot_pb2.PilotMessage]:
    """Well-formed final reports and heartbeats carrying any metrics (to be bound to a held job).

    The state is one a pilot may report, files and errors are mostly absent, so the report passes
    validation and its odd metrics (NaN, infinities, negatives, int64 limits) reach the group commit.
    """
    metrics = messages(job_pb2.JobMetrics.DESCRIPTOR, hints=HINTS)
    final_states = st.sampled_from(
        [job_pb2.JOB_STATUS_FINISHED, job_pb2.JOB_STATUS_FAILED, job_pb2.JOB_STATUS_CANCELLED]
    )
    beat_states = st.sampled_from([job_pb2.JOB_STATUS_STARTING, job_pb2.JOB_STATUS_RUNNING, job_pb2.JOB_STATUS_HOLDING])
    final = st.builds(pilot_pb2.JobFinal, status=final_states, metrics=metrics, retryable=st.booleans())
    beat = st.builds(pilot_pb2.Heartbeat, status=beat_states, metrics=metrics)
    return st.one_of(
        final.map(lambda f: pilot_pb2.PilotMessage(final=f)),
        st.lists(beat, min_size=1, max_size=3).map(
            lambda hbs: pilot_pb2.PilotMessage(heartbeats=pilot_pb2.HeartbeatBatch(heartbeats=hbs))
        ),
    )
