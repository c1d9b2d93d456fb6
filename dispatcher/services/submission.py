"""The submission service: what users call, independent of gRPC (identity is an argument)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from ailuro.errors import AiluroError, AlreadyExists
from ailuro.v1 import job_pb2, submission_pb2
from dispatcher import jobfields, validation
from dispatcher.auth.policy import Action
from dispatcher.config import DispatcherConfig
from dispatcher.identity import Identity
from dispatcher.services import authz
from dispatcher.services.brokerage import Broker, needs_of_spec
from dispatcher.services.logs import locations_of
from dispatcher.services.runtime import Runtime
from dispatcher.states import status_count_list
from dispatcher.store import audit, dataflow
from dispatcher.store import brokerage as bstore
from dispatcher.store import jobs as store
from dispatcher.store import workers as wstore
from dispatcher.store.schema import jobs as jobs_table
from dispatcher.store.schema import submit_requests

log = logging.getLogger(__name__)

_ID_FIELD = re.compile(r"panda_ids\[(\d+)\]")

DEFAULT_VO = "default"
DEFAULT_LABEL = "user"

# Fields the server owns: cleared from a submitted definition before it is stored.
_SERVER_FIELDS = jobfields.SERVER_PROTO_FIELDS


def normalize(job: job_pb2.Job, identity: Identity) -> job_pb2.Job:
    """A copy of a submitted job with server fields cleared and defaults applied.

    Defaults: ``vo`` from the identity, else ``"default"``; label ``"user"``; ``max_attempt`` 3;
    ``cores`` 1; a random guid for each file without one; adler32 lowercase.
    """
    out = job_pb2.Job()
    out.CopyFrom(job)
    for name in _SERVER_FIELDS:
        out.ClearField(name)
    out.vo = job.vo or identity.vo or DEFAULT_VO
    out.prod_source_label = job.prod_source_label or DEFAULT_LABEL
    out.max_attempt = job.max_attempt or validation.DEFAULT_MAX_ATTEMPT
    out.cores = job.cores or 1
    for f in out.files:
        f.guid = f.guid or str(uuid.uuid4())
        f.adler32 = f.adler32.lower()
    return out


def fingerprint(req: submission_pb2.SubmitJobsRequest) -> str:
    """A stable digest of a request's jobs (deterministic serialization), for idempotency."""
    digest = hashlib.sha256()
    for job in req.jobs:
        blob = job.SerializeToString(deterministic=True)
        digest.update(len(blob).to_bytes(8, "big"))
        digest.update(blob)
    return digest.hexdigest()


def place_and_insert(
    conn: Connection, specs: Sequence[job_pb2.Job], config: DispatcherConfig, *, owner: str, now: float
) -> list[int]:
    """Broker, plan data (DDM) and insert normalized jobs in the caller's transaction; their panda_ids.

    Brokerage prefers queues whose storage already holds a job's inputs. Jobs whose inputs must
    first be transferred or staged from tape are parked in ``assigned`` (see ``dataflow``).
    """
    storage = {se.name: se for se in config.storage}
    statuses = {q: c.status for q, c in bstore.queue_statuses(conn).items()}
    broker = Broker(config.queues, store.active_counts_by_site(conn), statuses)
    inputs = dataflow.read_inputs(conn, specs) if storage else dataflow.NO_INPUTS  # once for the batch
    reasons = []
    for i, spec in enumerate(specs):
        holding = (
            dataflow.queues_holding_inputs(spec, config.queues, storage, inputs)
            if storage and not spec.computing_site
            else frozenset()
        )
        site, reason = broker.place(
            site=spec.computing_site,
            vo=spec.vo,
            label=spec.prod_source_label,
            where=f"jobs[{i}]",
            holding=holding,
            needs=needs_of_spec(spec),
        )
        spec.computing_site = site
        reasons.append(reason)
    plans = dataflow.plan_jobs(specs, {q.name: q for q in config.queues}, storage, inputs, now=now)
    new_jobs = []
    for spec, reason, plan in zip(specs, reasons, plans, strict=True):
        status, waiting = dataflow.planned_state(plan)
        new_jobs.append(store.NewJob(spec=spec, brokerage_reason=reason, status=status, waiting_for=waiting))
    ids = store.insert_jobs(conn, new_jobs, owner=owner, now=now)
    if any(p is not None for p in plans):
        dataflow.link_jobs(conn, ids, specs, plans, now=now)
    return ids


def _distinct(ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """The distinct ids in order of first appearance, and the request index of each."""
    first: dict[int, int] = {}
    for i, pid in enumerate(ids):
        first.setdefault(pid, i)
    return list(first), list(first.values())


@contextlib.contextmanager
def _request_indexes(positions: Sequence[int]) -> Iterator[None]:
    """Re-point a ``panda_ids[i]`` field of an error about the distinct ids at the request's index."""
    try:
        yield
    except AiluroError as exc:
        match = _ID_FIELD.fullmatch(exc.field or "")
        if match is None:
            raise
        raise type(exc)(exc.message, field=f"panda_ids[{positions[int(match.group(1))]}]") from None


def _audit_submit(
    conn: Connection,
    identity: Identity,
    ids: Sequence[int],
    specs: Sequence[job_pb2.Job],
    *,
    request_id: str,
    now: float,
) -> None:
    """One audit row for a whole submitted batch (the submit path is hot: never one per job)."""
    sites: dict[str, int] = {}
    labels: set[str] = set()
    for spec in specs:
        sites[spec.computing_site] = sites.get(spec.computing_site, 0) + 1
        labels.add(spec.prod_source_label)
    audit.record(
        conn,
        actor=identity.name,
        vo=identity.vo,
        action=audit.JOBS_SUBMIT,
        target=audit.ids_text(ids),
        detail={
            "jobs": len(ids),
            "sites": dict(sorted(sites.items())[:20]),
            "labels": sorted(labels)[:20],
            "vos": sorted({s.vo for s in specs})[:20],
            "request_id": request_id,
        },
        now=now,
    )


class SubmissionService:
    """Submit, kill, retry, get, list jobs; the gRPC layer and tests call this."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.locations = locations_of(runtime)

    # --- submit -----------------------------------------------------------------------------

    async def submit(self, req: submission_pb2.SubmitJobsRequest, identity: Identity) -> tuple[list[int], bool]:
        """Validate, broker and store a batch, all or nothing; ``(panda_ids, replayed)``.

        All of it runs on a database thread, validation included: checking and normalising a
        5,000-job batch is tens of milliseconds of CPU that would otherwise hold the event loop
        (and the job requests and kills waiting on it) in one piece; on a thread the GIL's switch
        interval slices it.
        """
        return await self.rt.db_call(self._validate_and_submit, req, identity)

    def _validate_and_submit(self, req: submission_pb2.SubmitJobsRequest, identity: Identity) -> tuple[list[int], bool]:
        validation.validate_submit(req, known_sites=self.rt.queue_names)
        validation.validate_output_locations(req, self.locations)
        specs = [normalize(j, identity) for j in req.jobs]
        authz.check_submit(identity, specs)
        fp = fingerprint(req) if req.request_id else ""
        return self._submit_sync(req.request_id, fp, specs, identity)

    @staticmethod
    def _replayed(conn: Connection, request_id: str, fp: str, owner: str) -> list[int] | None:
        """The panda_ids of an earlier identical request, ``None`` if new; ``AlreadyExists`` if it differed."""
        row = conn.execute(
            select(submit_requests.c.fingerprint, submit_requests.c.panda_ids).where(
                submit_requests.c.owner == owner, submit_requests.c.request_id == request_id
            )
        ).first()
        if row is None:
            return None
        if row.fingerprint != fp:
            raise AlreadyExists(
                f"request_id {request_id!r} was already used for a different batch of jobs", field="request_id"
            )
        return [int(x) for x in row.panda_ids.split(",") if x]

    def _submit_sync(
        self, request_id: str, fp: str, specs: Sequence[job_pb2.Job], identity: Identity
    ) -> tuple[list[int], bool]:
        db = self.rt.db
        if request_id:
            with db.read() as conn:
                ids = self._replayed(conn, request_id, fp, identity.name)
            if ids is not None:
                return ids, True
        now = self.rt.now()
        try:
            with db.write() as conn:
                if request_id:
                    # Claim the request id first: a concurrent twin blocks here (PostgreSQL) or
                    # fails the unique constraint, then reads the winner's ids below.
                    conn.execute(
                        submit_requests.insert().values(
                            owner=identity.name, request_id=request_id, fingerprint=fp, panda_ids="", created=now
                        )
                    )
                ids = place_and_insert(conn, specs, self.rt.config, owner=identity.name, now=now)
                _audit_submit(conn, identity, ids, specs, request_id=request_id, now=now)
                if request_id:
                    conn.execute(
                        submit_requests.update()
                        .where(submit_requests.c.owner == identity.name, submit_requests.c.request_id == request_id)
                        .values(panda_ids=",".join(map(str, ids)))
                    )
        except IntegrityError:
            if not request_id:
                raise
            with db.read() as conn:
                replay = self._replayed(conn, request_id, fp, identity.name)
            if replay is None:
                raise
            return replay, True
        log.info("%s submitted %d job(s) %d..%d", identity.name, len(ids), ids[0], ids[-1])
        return ids, False

    # --- reads ------------------------------------------------------------------------------

    async def get_jobs(self, req: submission_pb2.GetJobsRequest, identity: Identity) -> list[job_pb2.Job]:
        """Jobs by id with files, each once, in order of first appearance (``NotFound`` names an unknown id).

        Duplicates are dropped before anything is read: ten copies of one big job must not cost ten
        times its size in memory and on the wire.
        """
        validation.validate_ids(req.panda_ids)
        ids, positions = _distinct(req.panda_ids)

        def run() -> list[job_pb2.Job]:
            with self.rt.db.read() as conn:
                authz.require_jobs(conn, ids, identity, Action.READ)
                return [authz.hide_secrets(j, identity) for j in store.get_jobs(conn, ids)]

        with _request_indexes(positions):
            return await self.rt.db_call(run)

    async def list_jobs(
        self, req: submission_pb2.ListJobsRequest, identity: Identity
    ) -> submission_pb2.ListJobsResponse:
        """One page of matching jobs, newest first, plus per-state totals."""
        page_size, after = validation.validate_list(req)

        def run() -> submission_pb2.ListJobsResponse:
            with self.rt.db.read() as conn:
                page, last, counts = store.list_jobs(
                    conn, req, page_size=page_size, after=after, where=authz.vo_filter(identity, jobs_table.c.vo)
                )
            page = [authz.hide_secrets(j, identity) for j in page]
            resp = submission_pb2.ListJobsResponse(
                jobs=page, status_counts=counts, state_counts=status_count_list(counts), total=sum(counts.values())
            )
            if last is not None:
                resp.next_page_token = validation.encode_page_token(last)
            return resp

        return await self.rt.db_call(run)

    async def job_events(self, req: submission_pb2.GetJobEventsRequest, identity: Identity) -> list[job_pb2.JobEvent]:
        """A job's history, oldest first."""
        validation.validate_job_events(req)

        def run() -> list[job_pb2.JobEvent]:
            with self.rt.db.read() as conn:
                authz.require_jobs(conn, [req.panda_id], identity, Action.READ, field="panda_id")
                return store.get_events(conn, req.panda_id)

        return await self.rt.db_call(run)

    async def list_queues(self, identity: Identity) -> list[submission_pb2.QueueInfo]:
        """Configured queues with their non-final job counts (of the caller's VO; every VO's for a
        caller acting on all VOs) and connected pilots."""
        now = self.rt.now()

        def run() -> tuple[dict[str, dict[str, int]], dict[str, tuple[int, int]], dict[str, bstore.StatusChange]]:
            with self.rt.db.read() as conn:
                return (
                    store.active_counts_by_site(conn, authz.vo_filter(identity, jobs_table.c.vo)),
                    wstore.connected_pilots(conn, now=now, stale_s=self.rt.config.pilot_stale_s),
                    bstore.queue_statuses(conn),
                )

        counts, connected, statuses = await self.rt.db_call(run)
        return [
            submission_pb2.QueueInfo(
                name=q.name,
                vos=q.vos,
                labels=q.labels,
                backend=q.backend,
                enabled=q.enabled,
                status_counts=counts.get(q.name, {}),
                state_counts=status_count_list(counts.get(q.name, {})),
                connected_pilots=connected.get(q.name, (0, 0))[0],
                max_running=q.max_running,
                status=statuses[q.name].status.value if q.name in statuses else "online",
                status_reason=statuses[q.name].reason if q.name in statuses else "",
            )
            for q in self.rt.config.queues
        ]

    # --- kill / retry -----------------------------------------------------------------------

    async def kill(
        self, req: submission_pb2.KillJobsRequest, identity: Identity, *, local: Callable[[str], bool] | None = None
    ) -> tuple[list[submission_pb2.KillResult], list[store.KillCommand], list[Any]]:
        """Cancel queued jobs now; flag jobs on pilots and return the kill commands to push.

        ``local(pilot_id)``: whether the pilot streams to this process; its commands are written
        delivered by the killing statements themselves (``store.kill_jobs``) and returned as rows to
        deliver at once (third item); the rest are returned to push.
        """
        validation.validate_kill(req)

        def run() -> tuple[list[submission_pb2.KillResult], list[store.KillCommand], list[Any]]:
            with self.rt.db.write() as conn:
                authz.require_jobs(conn, list(req.panda_ids), identity, Action.KILL)
                now = self.rt.now()
                results, commands = store.kill_jobs(
                    conn, list(req.panda_ids), who=identity.name, reason=req.reason, now=now, here=local
                )
                accepted = [r.panda_id for r in results if r.accepted]
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.JOBS_KILL,
                    target=audit.ids_text(list(req.panda_ids)),
                    detail={"jobs": len(results), "accepted": len(accepted), "reason": req.reason[:200]},
                    now=now,
                )
                taken = [c.row() for c in commands if c.delivered]
                return results, [c for c in commands if not c.delivered], taken

        started = time.perf_counter()
        results, commands, taken = await self.rt.db_call_urgent(run)  # a person waits for the kill
        self.rt.db_times.record("kills: transaction", time.perf_counter() - started)
        n = len(commands) + len(taken)
        log.info("%s killed %d job(s): %d command(s) for pilots", identity.name, len(results), n)
        return results, commands, taken

    async def retry(self, req: submission_pb2.RetryJobsRequest, identity: Identity) -> list[int]:
        """Resubmit final failed/cancelled/closed jobs as new jobs; their new panda_ids in request order.

        A job named twice is retried once (both positions get its one new id): a repeated id must
        not make the same work run twice.
        """
        validation.validate_ids(req.panda_ids)
        unique, positions = _distinct(req.panda_ids)

        def run() -> list[int]:
            with self.rt.db.write() as conn:
                authz.require_jobs(conn, unique, identity, Action.RETRY)
                new_jobs, owners = store.retry_jobs(conn, unique)
                now = self.rt.now()
                # The original owner keeps owning the retried job: insert per owner, keep request order.
                by_owner: dict[str, list[int]] = {}
                for i, owner in enumerate(owners):
                    by_owner.setdefault(owner, []).append(i)
                out = [0] * len(new_jobs)
                for owner, idx in by_owner.items():
                    ids = store.insert_jobs(conn, [new_jobs[i] for i in idx], owner=owner, now=now)
                    for i, pid in zip(idx, ids, strict=True):
                        out[i] = pid
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.JOBS_RETRY,
                    target=audit.ids_text(unique),
                    detail={"jobs": len(unique), "new_ids": audit.ids_text(out), "owners": sorted(by_owner)[:20]},
                    now=now,
                )
                return out

        with _request_indexes(positions):
            new_ids = dict(zip(unique, await self.rt.db_call(run), strict=True))
        return [new_ids[pid] for pid in req.panda_ids]
