"""The pilot hub: the hot path between pilot streams and the database (DESIGN.md section 9).

- Job requests from all streams are claimed together (:class:`GroupCommitter`, one transaction
  per batch: on PostgreSQL one statement awaited on the event loop, ``services/claimpool.py``)
  and answered with assignments or ``NoJob``.
- Heartbeats are coalesced in memory (the latest per job) and flushed in bulk every
  ``heartbeat_flush_s``; their acks go out after the flush commits.
- Final reports are group-committed and acknowledged only after their transaction commits.
- Kill commands are pushed at once to pilots streaming to this process, and picked up from
  ``pilot_commands`` every ``command_poll_s`` when another dispatcher process wrote them
  (:mod:`dispatcher.services.pilot_commands`).
Nothing that matters lives only here: a lost process loses buffered heartbeats (the lease
covers that) and unacknowledged finals (the pilot resends them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ailuro.errors import PermissionDenied, ResourceExhausted, Unavailable
from ailuro.v1 import pilot_pb2
from dispatcher import validation
from dispatcher.identity import Identity
from dispatcher.logsafe import describe
from dispatcher.matching import Offer
from dispatcher.pilot_protocol import welcome
from dispatcher.services.batching import GroupCommitter, run_isolated
from dispatcher.services.claimpool import ClaimPool
from dispatcher.services.parking import Parking
from dispatcher.services.pilot_commands import CommandRelay, command_message
from dispatcher.services.policy import ClaimPolicyCache
from dispatcher.services.presence import PRESENCE_REFRESH_S, Presence
from dispatcher.services.runtime import Runtime
from dispatcher.services.streams import PilotStream
from dispatcher.shares import Leaf
from dispatcher.states import JobState
from dispatcher.store import finals as fstore
from dispatcher.store import pilots as pstore
from dispatcher.store.jobs import KillCommand
from dispatcher.store.leases import check_pilot_owner

log = logging.getLogger(__name__)
POLICY_LOOP_MIN_S = 0.5
"""The policy refresh loop wakes at most this often (``share_refresh_s`` 0 refreshes in every claim)."""

TRUSTED_METADATA = "trusted-metadata"
"""The issuer part of a principal named by trusted metadata (development mode): no token issuer."""


def pilot_principal(identity: Identity) -> str:
    """Who a caller is, as a pilot id is bound to it: ``"<len(issuer)>:<issuer> <user>"``.

    The issuer is the token's ``iss`` (or ``x509:<DN>`` for a mapped certificate); in
    trusted-metadata mode (development) it is :data:`TRUSTED_METADATA` and the claimed name
    stands in for the user. The length prefix keeps the pair unambiguous whatever the two hold
    (a DN has spaces); both parts are at most 255 characters, so it fits ``pilots.principal``.
    """
    p = identity.principal
    issuer, user = (p.issuer, p.user) if p is not None else (TRUSTED_METADATA, identity.name)
    issuer, user = issuer[:255], user[:255]  # already bounded by the validators: a guard, not a rule
    return f"{len(issuer)}:{issuer} {user}"


_STORE_FAILED = "the dispatcher could not store this report ({}); it was not applied"


async def _settled(aw: Any) -> Any:
    """The result of ``aw``, or the (non-cancellation) exception it raised, as a value."""
    try:
        return await aw
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc


def _item_outcome(result: Any) -> tuple[pstore.AckResult, str]:
    """An item's ``(AckResult, message)``: a failure of its own becomes REJECTED, an outage is raised.

    The message names the error's type only: its text may quote the report (SQL parameters).
    """
    if isinstance(result, Unavailable):
        raise result
    if isinstance(result, BaseException):
        return pstore.REJECTED, _STORE_FAILED.format(type(result).__name__)
    return result


def pilot_info(hello: pilot_pb2.Hello) -> pstore.PilotInfo:
    """What a (validated) Hello says about its pilot, resources included."""
    return pstore.PilotInfo(
        pilot_id=hello.pilot_id,
        queue=hello.queue,
        node=hello.node,
        batch_id=hello.batch_id,
        version=hello.version,
        cores=hello.cores,
        memory_mb=hello.memory_mb,
        disk_mb=hello.disk_mb,
        tags=frozenset(hello.tags),
    )


def offer_of(pilot: pstore.PilotInfo, free: pilot_pb2.JobRequest | None) -> Offer:
    """What a pilot can take now: the request's free resources, else what its Hello advertised."""
    return Offer(
        cores=(free.cores_free if free is not None and free.cores_free else pilot.cores),
        memory_mb=(free.memory_mb_free if free is not None and free.memory_mb_free else pilot.memory_mb),
        disk_mb=(free.disk_mb_free if free is not None and free.disk_mb_free else pilot.disk_mb),
        tags=pilot.tags,
    )


def _heartbeat_acks(
    chunk: Sequence[tuple[pstore.HeartbeatIn, PilotStream]], results: Sequence[Any]
) -> list[tuple[PilotStream, pilot_pb2.DispatcherMessage]]:
    """One AckBatch message per stream for a flushed chunk (``results`` from :func:`run_isolated`).

    Pure (it reads the streams as keys only), so it runs on a worker thread.
    """
    per_stream: dict[PilotStream, list[pilot_pb2.Ack]] = defaultdict(list)
    for (beat, stream), outcome in zip(chunk, results, strict=True):
        res, msg = _item_outcome(outcome)
        per_stream[stream].append(
            pilot_pb2.Ack(panda_id=beat.panda_id, lease_epoch=beat.epoch, result=res, message=msg)
        )
    return [
        (stream, pilot_pb2.DispatcherMessage(acks=pilot_pb2.AckBatch(acks=acks))) for stream, acks in per_stream.items()
    ]


def spare_after_serving_all(reqs: Sequence[pstore.ClaimRequest]) -> bool:
    """Whether a claim batch left locked candidates in a queue whose requests it served in full.

    Only then does it wake the parked requests: a wake so follows at least one job handed out, so
    parked requests that nothing fits (a job longer than their walltime, say) cannot wake each
    other in a loop. Rows passed over in a queue it left short are not worth a second look.
    """
    short = {r.pilot.queue for r in reqs if len(r.assignments) < r.n}
    return any(r.passed_over and r.pilot.queue not in short for r in reqs)


class PilotHub:
    """Streams of this process and the batched database work behind them."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        cfg = runtime.config
        self.streams: dict[str, PilotStream] = {}
        self._enabled = {q.name for q in cfg.queues if q.enabled}
        self.policy = ClaimPolicyCache(runtime)
        self.claim_pool = (
            ClaimPool(
                runtime.db,
                max_age_s=cfg.claim_pool_s,
                times=runtime.db_times,
                batches=cfg.claim_batches_in_flight,
                blocking=runtime.db_call_urgent,
                read_ahead=cfg.claim_read_ahead,
            )
            if runtime.db.is_postgres and cfg.claim_pool_s > 0
            else None
        )
        """One-statement claims from candidates read ahead, awaited on the loop (PostgreSQL;
        ``services/claimpool.py``); else the locked claim transaction on a database thread."""
        self._claims: GroupCommitter[pstore.ClaimRequest, list[pilot_pb2.JobAssignment]] = GroupCommitter(
            runtime,
            self._claim_batch if self.claim_pool is None else self._claim_batch_pooled,
            name="claims",
            window_s=cfg.claim_window_ms / 1000,
            max_batch=1000,
            # concurrent claims are disjoint on PostgreSQL (held shelf rows, SKIP LOCKED); SQLite has one writer
            in_flight=cfg.claim_batches_in_flight if runtime.db.is_postgres else 1,
            urgent=True,  # a pilot waits for it: never behind heartbeat flushes and finals
        )
        self._finals: GroupCommitter[fstore.FinalIn, tuple[pstore.AckResult, str]] = GroupCommitter(
            runtime, self._finals_batch, name="finals", window_s=cfg.finals_window_ms / 1000, max_batch=cfg.max_batch
        )
        # keyed by (panda_id, pilot_id): another pilot's beat for a job never displaces its holder's
        self._beats: dict[tuple[int, str], tuple[pstore.HeartbeatIn, PilotStream]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.presence = Presence(runtime)
        self.commands = CommandRelay(runtime, self.streams)
        self.parking = Parking(max_parked=cfg.max_parked_requests, park_s=cfg.no_job_retry_s)
        """Streamed job requests that found no work, woken when jobs are activated (``services/parking.py``)."""

    async def start(self) -> None:
        """Start the batchers and the periodic flush / command-poll tasks."""
        self._claims.start()
        self._finals.start()
        loop = asyncio.get_running_loop()
        self.rt.db.origin = self.rt.dispatcher_id
        self.rt.db.on_activated = lambda: loop.call_soon_threadsafe(self.parking.wake)
        self.commands.start(on_jobs=self.parking.wake)  # its LISTEN connection also hears activations
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="heartbeat-flush"),
            asyncio.create_task(self.commands.run(), name="command-poll"),
            asyncio.create_task(self._policy_loop(), name="claim-policy-refresh"),
        ]

    async def stop(self) -> None:
        """Flush what is buffered, stop background work, close every stream."""
        self.parking.close()
        self.rt.db.on_activated = None
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.commands.stop()
        with contextlib.suppress(Exception):
            await self._flush_heartbeats()
        await self._claims.stop()
        await self._finals.stop()
        if self.claim_pool is not None:
            await self.claim_pool.close()
        for stream in list(self.streams.values()):
            stream.out.put_nowait(None)
            stream.closed = True
        with contextlib.suppress(Exception):
            await self.presence.drain()

    def stream_queues(self) -> list[str]:
        """The queue of every open stream (read by the metrics scrape, from its own thread)."""
        for _ in range(3):
            try:
                return [s.pilot.queue for s in list(self.streams.values())]
            except RuntimeError:  # the table changed under the copy: take it again
                continue
        return []

    # --- stream lifecycle -------------------------------------------------------------------

    async def open_stream(self, hello: pilot_pb2.Hello, principal: str = "") -> PilotStream:
        """Validate a Hello, bind the pilot id to ``principal``, register it connected here, resume its held jobs.

        ``PermissionDenied`` when the id belongs to another principal and is live or holds leases
        (:func:`dispatcher.decisions.judge_pilot_claim`): checked here first for a stream of this
        process (the live stream is left alone), then in the registry for any dispatcher.
        """
        validation.validate_hello(hello, known_queues=self.rt.queue_names, limits=self.rt.config.limits)
        info = pilot_info(hello)
        old = self.streams.get(info.pilot_id)
        if old is not None and old.principal != principal:
            raise PermissionDenied(
                f"pilot id {info.pilot_id!r} belongs to another principal and is connected", field="hello.pilot_id"
            )
        limit = self.rt.config.limits.send_queue_per_stream
        stream = PilotStream(pilot=info, principal=principal, send_limit=limit, reads_batches=hello.reads_batches)
        # Welcome first, queued before the stream is findable (a command could otherwise come first):
        # the pilot learns lease, heartbeat period and limits before anything else.
        hi = welcome(self.rt.config, session_id=stream.session_id, dispatcher_id=self.rt.dispatcher_id)
        stream.send(pilot_pb2.DispatcherMessage(welcome=hi))
        if old is not None:  # the same principal reconnected (before its old stream was noticed closed)
            old.fail(
                ResourceExhausted(
                    f"a newer stream of pilot {info.pilot_id!r} replaced this one (one stream per pilot id)"
                )
            )
            old.closed = True
        self.streams[info.pilot_id] = stream
        cfg = self.rt.config

        def run() -> dict[int, tuple[pstore.AckResult, str, bool]]:
            with self.rt.db.write() as conn:
                now = self.rt.now()
                pstore.register_pilot(
                    conn,
                    info,
                    dispatcher_id=self.rt.dispatcher_id,
                    connected=True,
                    now=now,
                    principal=principal,
                    stale_s=cfg.pilot_stale_s,
                    error_field="hello.pilot_id",
                )
                if not hello.held_jobs:
                    return {}
                return pstore.resume_held(conn, info, list(hello.held_jobs), lease_s=cfg.lease_s, now=now)

        try:
            held = await self.presence.connect(info.pilot_id, run)
        except BaseException:  # dropped during its Hello (or the database failed): not connected
            if self.streams.get(info.pilot_id) is stream:
                del self.streams[info.pilot_id]
                self.presence.disconnect(info.pilot_id)  # runs after the registration, even if that commits
            stream.closed = True
            raise
        epochs = {h.panda_id: h.lease_epoch for h in hello.held_jobs}
        stream.send_acks(
            [
                pilot_pb2.Ack(panda_id=pid, lease_epoch=epochs[pid], result=res, message=msg)
                for pid, (res, msg, _) in held.items()
            ]
        )
        for pid, (_, _, kill) in held.items():
            if kill:
                stream.send(pilot_pb2.DispatcherMessage(command=command_message(pid, "kill", "kill requested")))
        log.info(
            "pilot %s connected (session %s, queue %s, %d held job(s))",
            info.pilot_id,
            stream.session_id,
            info.queue,
            len(held),
        )
        return stream

    async def close_stream(self, stream: PilotStream) -> None:
        """Forget a closed stream and mark the pilot disconnected (unless it already reconnected)."""
        stream.closed = True
        pid = stream.pilot.pilot_id
        if self.streams.get(pid) is stream:
            del self.streams[pid]
            # Shielded: the write completes even when this handler is cancelled again meanwhile.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self.presence.disconnect(pid))
        log.info("pilot %s disconnected", pid)

    # --- claims -----------------------------------------------------------------------------

    def queue_enabled(self, queue: str) -> bool:
        """Whether pilots of ``queue`` may get work (a disabled or offline queue answers every request NoJob)."""
        return queue in self._enabled and not self.policy.offline(queue)

    async def request_jobs(
        self, pilot: pstore.PilotInfo, n: int, *, walltime_left_s: int = 0, free: pilot_pb2.JobRequest | None = None
    ) -> list[pilot_pb2.JobAssignment]:
        """Up to ``n`` assignments for ``pilot`` (claimed together with other pilots' requests).

        ``walltime_left_s`` > 0 keeps jobs whose ``max_walltime_s`` would not fit away from the
        pilot; ``free`` (a JobRequest's ``*_free``) says what the pilot has left, else its Hello's.
        """
        if pilot.queue not in self._enabled or self.policy.offline(pilot.queue):
            return []
        stream = self.streams.get(pilot.pilot_id)
        if stream is not None and stream.pilot is pilot and (stream.closed or stream.backed_up):
            return []  # what it was sent is still unread: hand the work to pilots that read
        arrived = time.perf_counter()
        req = pstore.ClaimRequest(pilot=pilot, n=n, walltime_left_s=walltime_left_s, offer=offer_of(pilot, free))
        outcome = await _settled(self._claims.submit(req))
        if isinstance(outcome, Unavailable):
            raise outcome
        if isinstance(outcome, BaseException):  # this request failed alone (logged): answer NoJob, keep the stream
            return []
        self.rt.metrics.jobs_dispatched(pilot.queue, len(outcome), time.perf_counter() - arrived)
        return outcome

    def _claim_batch(self, reqs: Sequence[pstore.ClaimRequest]) -> list[list[pilot_pb2.JobAssignment]]:
        """The locked claim transaction, on a database thread (SQLite, or ``claim_pool_s`` 0)."""
        cfg = self.rt.config
        for r in reqs:  # this function may be re-run after a transient conflict
            r.assignments.clear()
        # Refreshed by _policy_loop; here only when that fell far behind (or never ran): the refresh
        # counts every waiting job, and a claim batch carrying it made every request behind it wait.
        self.policy.refresh_if_stale(self.rt.db, self.rt.now())  # thread-safe: batches may run at once
        with self.rt.db.write() as conn:
            now = self.rt.now()
            charged = pstore.claim_jobs(conn, reqs, lease_s=cfg.lease_s, now=now, policy=self.policy.policy())
        return self._claimed(reqs, charged)

    async def _claim_batch_pooled(self, reqs: Sequence[pstore.ClaimRequest]) -> list[list[pilot_pb2.JobAssignment]]:
        """The one-statement claim from the shelves, on the event loop (``services/claimpool.py``)."""
        assert self.claim_pool is not None
        for r in reqs:  # a batch split after a failure runs its halves again
            r.assignments.clear()
        if self.policy.stale(self.rt.now()):  # as in _claim_batch, on a thread: it reads every waiting job
            await self.rt.db_call_urgent(self.policy.refresh_if_stale, self.rt.db, self.rt.now())
        lease_s, now = self.rt.config.lease_s, self.rt.now()
        charged = await self.claim_pool.claim(reqs, policy=self.policy.policy(), lease_s=lease_s, now=now)
        return self._claimed(reqs, charged)

    def _claimed(
        self, reqs: Sequence[pstore.ClaimRequest], charged: dict[Leaf, float]
    ) -> list[list[pilot_pb2.JobAssignment]]:
        """After a claim committed: charge the shares (once: a re-run batch is not charged twice),
        wake parked requests if it left rows beside another batch, and the assignments per request."""
        self.policy.charge(charged)
        beside = self.rt.config.claim_batches_in_flight > 1 and self.rt.db.is_postgres  # else none ran beside it
        if beside and spare_after_serving_all(reqs) and self.rt.db.on_activated is not None:
            # Rows this batch locked and left are claimable again: a batch running beside it skipped
            # them and may have parked its requests (seen as +4 % on `sleep 1` jobs in lockstep).
            self.rt.db.on_activated()
        return [r.assignments for r in reqs]

    async def _policy_loop(self) -> None:
        """Refresh the claim policy every ``share_refresh_s`` on the bulk lane, off the claim path."""
        while True:
            await asyncio.sleep(max(self.rt.config.share_refresh_s, POLICY_LOOP_MIN_S))
            try:
                await self.rt.db_call(self.policy.refresh_if_due, self.rt.db, self.rt.now())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round (or a claim, once stale) tries again
                log.warning("claim policy refresh failed: %s", describe(exc))

    # --- heartbeats -------------------------------------------------------------------------

    def session_problem(self, stream: PilotStream) -> str:
        """Why reports on ``stream`` no longer count ("" while it is its pilot's current session)."""
        if self.streams.get(stream.pilot.pilot_id) is stream:
            return ""
        return f"stream session {stream.session_id} of pilot {stream.pilot.pilot_id} was replaced or closed"

    def heartbeat(self, stream: PilotStream, hb: pilot_pb2.Heartbeat) -> str:
        """Buffer a (validated) heartbeat; the latest per job and pilot wins; acked after the next flush.

        Returns why it is refused ("": buffered): only the pilot's current session reports.
        """
        problem = self.session_problem(stream)
        if problem:
            return problem
        key = (hb.panda_id, stream.pilot.pilot_id)
        prev = self._beats.get(key)
        if prev is not None:
            prev[1].buffered -= 1
        stream.buffered += 1
        self._beats[key] = (
            pstore.HeartbeatIn(
                panda_id=hb.panda_id,
                epoch=hb.lease_epoch,
                status=JobState.from_proto(hb.status),
                metrics=hb.metrics,
                pilot_id=stream.pilot.pilot_id,
            ),
            stream,
        )
        return ""

    async def apply_heartbeats_now(self, beats: Sequence[pstore.HeartbeatIn]) -> list[tuple[pstore.AckResult, str]]:
        """Apply heartbeats without buffering (unary UpdateJob); one result per heartbeat.

        A heartbeat the database refuses is answered REJECTED alone; the others are applied.
        ``Unavailable`` (the database is down) is raised: nothing was applied.
        """
        results = await run_isolated(self.rt, self._heartbeat_batch, beats, name="heartbeats")
        return [_item_outcome(r) for r in results]

    def _heartbeat_batch(self, beats: Sequence[pstore.HeartbeatIn]) -> list[tuple[pstore.AckResult, str]]:
        with self.rt.db.write() as conn:
            return pstore.apply_heartbeats(conn, beats, lease_s=self.rt.config.lease_s, now=self.rt.now())

    async def _flush_loop(self) -> None:
        """Flush ``heartbeat_flush_s`` after the last flush ended, however long that one took.

        A pause as long as the last flush (up to 1 s) was tried for #18: near saturation it halved
        the rate at which heartbeats could be acknowledged, and since a job's heartbeats pace it, jobs
        lived longer, more of them beat, and the dispatcher fell behind. At 80 % of the closed-loop
        saturation point (AMD EPYC, 2 cores, one run each): 601 -> 724 jobs/s kept up with the 698-726
        offered, GetJob p99 312 -> 159 ms; at 50 %, where flushes stay under the interval, no change.
        """
        interval = self.rt.config.heartbeat_flush_s
        refreshed = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush_heartbeats()
                # on its own cadence: the flush runs every 0.1 s, the pilots' last_seen needs 1 s
                if (self.streams or self.presence.dirty) and time.monotonic() - refreshed >= PRESENCE_REFRESH_S:
                    refreshed = time.monotonic()
                    await self.rt.db_call(self.presence.refresh, list(self.streams))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("heartbeat flush failed; the batch will be resent by the pilots: %s", describe(exc))

    async def _flush_heartbeats(self) -> None:
        """Write the buffered heartbeats (``heartbeat_flush_rows`` per transaction) and ack each chunk after it commits.

        A heartbeat the database refuses is acked REJECTED alone (see :func:`run_isolated`).
        """
        if not self._beats:
            return
        batch, self._beats = self._beats, {}
        items = list(batch.values())
        for _, stream in items:
            stream.buffered = 0
        step = max(1, min(self.rt.config.heartbeat_flush_rows, self.rt.config.max_batch))
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            self.rt.metrics.batch_size.labels("heartbeats").observe(len(chunk))
            started = time.perf_counter()
            results = await run_isolated(self.rt, self._heartbeat_batch, [b for b, _ in chunk], name="heartbeats")
            # it holds the row of every job it renews: a kill of one of them waits for its commit
            self.rt.db_times.record("heartbeats: flush", time.perf_counter() - started)
            # Building thousands of acks is bulk work: on a thread the GIL's switch interval slices it,
            # so job requests and kills are served in between instead of after it.
            for stream, message in await asyncio.to_thread(_heartbeat_acks, chunk, results):
                stream.send(message)

    # --- finals -----------------------------------------------------------------------------

    async def final(
        self, pilot_id: str, report: pilot_pb2.JobFinal, *, stream: PilotStream | None = None, principal: str = ""
    ) -> pilot_pb2.Ack:
        """Apply a (validated) final report in the next group commit; the Ack reflects the outcome.

        ``stream``: the session it came on (REJECTED unless it is still the pilot's current one);
        ``principal``: its sender, when it came in an UpdateJob call (a stream knows its own).
        """
        problem = self.session_problem(stream) if stream is not None else ""
        if problem:
            return pilot_pb2.Ack(
                panda_id=report.panda_id,
                lease_epoch=report.lease_epoch,
                result=pstore.REJECTED,
                message=problem,
                is_final=True,
            )
        pending = self._beats.get((report.panda_id, pilot_id))
        if pending is not None and pending[0].epoch == report.lease_epoch:
            del self._beats[(report.panda_id, pilot_id)]  # superseded by the final
            pending[1].buffered -= 1
        sender = stream.principal if stream is not None else principal
        item = fstore.FinalIn(report=report, pilot_id=pilot_id, principal=sender)
        outcome = await _settled(self._finals.submit(item))
        # An outage is raised: the stream ends UNAVAILABLE and the pilot resends the report from its spool.
        res, msg = _item_outcome(outcome)
        return pilot_pb2.Ack(
            panda_id=report.panda_id, lease_epoch=report.lease_epoch, result=res, message=msg, is_final=True
        )

    def _finals_batch(self, items: Sequence[fstore.FinalIn]) -> list[tuple[pstore.AckResult, str]]:
        applied: dict[int, str] = {}
        with self.rt.db.write() as conn:
            out = fstore.apply_finals(
                conn, items, now=self.rt.now(), reason_chars=self.rt.config.limits.event_reason_chars, applied=applied
            )
        # counted after the commit (a batch re-run after a conflict counts once)
        self.rt.metrics.finals_applied(applied, {f.report.panda_id: f.report for f in items})
        return out

    # --- unary calls: the pilot id comes from the request, so its owner is checked ----------

    async def register_unary(self, info: pstore.PilotInfo, principal: str) -> None:
        """Register (and bind) a pilot calling GetJob; ``PermissionDenied`` as for a Hello."""
        rt = self.rt

        def run() -> None:
            with rt.db.write() as conn:
                pstore.register_pilot(
                    conn,
                    info,
                    dispatcher_id=rt.dispatcher_id,
                    connected=False,
                    now=rt.now(),
                    principal=principal,
                    stale_s=rt.config.pilot_stale_s,
                    error_field="pilot.pilot_id",
                )

        await rt.db_call(run)

    async def check_owner(self, pilot_id: str, principal: str) -> None:
        """``PermissionDenied`` unless ``principal`` may report as ``pilot_id`` (UpdateJob).

        A pilot streaming here is checked in memory; any other in the registry (one read).
        """
        stream = self.streams.get(pilot_id)
        if stream is not None:
            if stream.principal != principal:
                raise PermissionDenied(
                    f"pilot id {pilot_id!r} belongs to another principal and is connected", field="pilot_id"
                )
            return
        rt = self.rt

        def run() -> None:
            with rt.db.read() as conn:
                check_pilot_owner(conn, pilot_id, principal=principal, now=rt.now(), stale_s=rt.config.pilot_stale_s)

        await rt.db_call(run)

    # --- commands (the relay in pilot_commands.py does the work) --------------------------------

    def streams_here(self, pilot_id: str) -> bool:
        """Whether ``pilot_id`` streams to this process now (read from a database thread too:
        one dict lookup, atomic)."""
        return pilot_id in self.streams

    def deliver_commands(self, rows: Sequence[Any]) -> None:
        """Send commands already taken from ``pilot_commands`` (marked delivered) to their streams."""
        self.commands.deliver(rows)

    async def push_commands(self, commands: Sequence[KillCommand]) -> None:
        """Deliver commands at once to pilots streaming here (others are picked up by their process)."""
        await self.commands.push(commands)

    async def take_commands_for(self, pilot_id: str) -> list[pilot_pb2.Command]:
        """Pending commands of one pilot (unary UpdateJob), marked delivered."""
        return await self.commands.take_for(pilot_id)
