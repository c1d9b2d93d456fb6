"""The DDM agent: runs transfer, staging and verify requests from the catalog, inside the dispatcher.

``ailuro server --queues FILE`` starts one (:class:`InProcessAgent`) when the file has
``[[storage]]`` tables, on its own threads over the dispatcher's database: the catalog has one
writer, the dispatcher, and clients reach it only through ``DDMService``/``TaskService``.

Each cycle it (1) advances jobs and tasks whose data changed (``dataflow.activate_ready``,
``dataflow.finish_verified``, ``tasks.advance_tasks``), (2) renews the leases of the requests it
runs and stops the ones that were withdrawn, (3) claims due requests while every storage element
involved has a free slot (``max_transfers`` per SE and agent) and runs them on a thread pool.
Several agents can share one database: claims are leased rows, so no request runs twice, and a
dead agent's requests are taken over when their lease expires.

Failures are retried with exponential backoff (:func:`ailuro.backoff.backoff_delay`, capped)
until ``max_attempts``; the last error and its PanDA code stay on the request for the CLI and the
monitor. A source that is missing or corrupted is marked ``bad`` and another replica is used.

Tape (bring-online): a replica on a tape SE is readable only while its ``online_until`` lies in
the future. A transfer from tape first queues a ``stage`` request (and waits behind it). With
``staging = "prepare"`` the stage request asks the tape system to recall the file (XRootD
``prepare -s``; the request id is kept on the row), then polls it (``query prepare``) at growing
intervals (:mod:`ddm.staging`) until the file is online, lost or the wait too long; with
``staging = "delay"`` (tape SEs whose protocol has no bring-online request) the recall is modelled
as ``staging_latency_s``. Either way the staged file's size and adler32 are checked on the tape
server and it is marked online for ``pin_lifetime_s``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ailuro import errorcodes
from ailuro.backoff import backoff_delay
from ailuro.errors import AiluroError
from ailuro.queues import QueueConfig, StorageElementConfig
from ddm import staging
from ddm.protocols import protocol_for
from ddm.storage import se_file_url
from ddm.transfer import Cancelled, Expected, TransferFailure, copy_verified, verify
from dispatcher.config import DispatcherConfig
from dispatcher.store import catalog, dataflow
from dispatcher.store.engine import Database, open_database
from dispatcher.store.schema import ddm_requests, jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """Settings of one DDM agent process."""

    db_url: str
    """The dispatcher's database (the catalog lives there)."""
    storage: tuple[StorageElementConfig, ...]
    """Storage elements (the ``[[storage]]`` tables of the queue file)."""
    agent_id: str = ""
    """Lease owner name; a random one when empty."""
    poll_s: float = 1.0
    """Pause between cycles."""
    lease_s: float = 60.0
    """A claimed request returns to the pool this long after its agent's last renewal."""
    max_workers: int = 8
    """Requests run at once by this agent (each SE also has its own ``max_transfers``)."""
    backoff_base_s: float = 5.0
    """Delay before the first retry; doubled for every further attempt."""
    backoff_max_s: float = 600.0
    """Upper bound of the retry delay."""
    scratch_dir: Path = Path("/tmp/ailuro-ddm")
    """Where files pass through between source and destination."""
    reconcile: bool = True
    """Also advance jobs and tasks (any number of agents may; the updates are conditional)."""
    queues: tuple[QueueConfig, ...] = ()
    """Queues, for placing the jobs tasks create (merge jobs)."""


@dataclass(kw_only=True)
class _Running:
    row: Any
    future: Future[None]
    ses: tuple[str, ...]
    cancel: threading.Event = field(default_factory=threading.Event)


class DDMAgent:
    """One agent; :meth:`cycle` does one pass, :meth:`run` loops until stopped."""

    def __init__(self, config: AgentConfig, *, db: Database | None = None) -> None:
        self.config = config
        self.agent_id = config.agent_id or f"ddm-{uuid.uuid4().hex[:8]}"
        self.db = db or open_database(config.db_url, pool_size=config.max_workers + 2)
        self.storage: dict[str, StorageElementConfig] = {se.name: se for se in config.storage}
        self.pool = ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="ddm-xfer")
        self.running: dict[int, _Running] = {}
        self._lock = threading.Lock()

    # --- loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Cycle until ``stop`` is set, then wait for running requests."""
        log.info("DDM agent %s started (%d storage elements)", self.agent_id, len(self.storage))
        while not stop.is_set():
            try:
                self.cycle()
            except Exception:  # keep the agent alive through a database outage
                log.exception("DDM agent cycle failed")
            stop.wait(self.config.poll_s)
        self.close()

    def close(self) -> None:
        """Stop running requests (they are withdrawn from this agent and retried by another)."""
        for r in self.running.values():
            r.cancel.set()
        self.pool.shutdown(wait=True)

    def cycle(self) -> int:
        """One pass; returns how many requests were started."""
        now = time.time()
        if self.config.reconcile:
            from dispatcher.services import tasks

            with self.db.write() as conn:
                _withdraw_for_cancelled_jobs(conn, now=now)
                activated = dataflow.activate_ready(conn, self.storage, now=now)
                finished = dataflow.finish_verified(conn, now=now)
                tasks.advance_tasks(conn, queues=self.config.queues, storage=self.config.storage, now=now)
            if activated or finished:
                log.info("jobs activated %s, finished %s", activated, finished)
        self._watch_running(now)
        return self._claim_and_start(now)

    def drain(self, timeout_s: float = 60.0) -> None:
        """Cycle until nothing runs or is due (tests and one-shot use)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            started = self.cycle()
            if not started and not self.running:
                return
            time.sleep(0.05)

    def _watch_running(self, now: float) -> None:
        with self._lock:
            done = [rid for rid, r in self.running.items() if r.future.done()]
            for rid in done:
                del self.running[rid]
            ids = list(self.running)
        if not ids:
            return
        with self.db.write() as conn:
            held = catalog.held_requests(conn, ids, owner=self.agent_id)
            catalog.renew_leases(conn, sorted(held), owner=self.agent_id, lease_s=self.config.lease_s, now=now)
        for rid in ids:
            if rid not in held:
                log.info("request %d was withdrawn: stopping it", rid)
                self.running[rid].cancel.set()

    def _ses_of(self, row: Any) -> tuple[str, ...]:
        return tuple(s for s in (row["source_se"], row["dest_se"]) if s)

    def _claim_and_start(self, now: float) -> int:
        free = self.config.max_workers - len(self.running)
        if free <= 0:
            return 0
        busy = Counter(se for r in self.running.values() for se in r.ses)

        def fits(row: Any) -> bool:
            ses = self._ses_of(row)
            if any(busy[s] >= self.storage[s].max_transfers for s in ses if s in self.storage):
                return False
            busy.update(ses)
            return True

        with self.db.write() as conn:
            rows = catalog.claim_requests(
                conn, owner=self.agent_id, limit=free, lease_s=self.config.lease_s, now=now, fits=fits
            )
        for row in rows:
            log.info(
                "request %d (%s %s -> %s): active, attempt %d of %d",
                row["request_id"],
                row["kind"],
                row["source_se"] or "best replica",
                row["dest_se"],
                int(row["attempts"]) + 1,
                int(row["max_attempts"]),
            )
            running = _Running(row=row, future=Future(), ses=self._ses_of(row))
            running.future = self.pool.submit(self._execute, row, running.cancel)
            with self._lock:
                self.running[int(row["request_id"])] = running
        return len(rows)

    # --- one request ------------------------------------------------------------------------

    def _execute(self, row: Any, cancel: threading.Event) -> None:
        rid = int(row["request_id"])
        try:
            with self.db.read() as conn:
                file = catalog.files_by_id(conn, [int(row["file_id"])])[int(row["file_id"])]
                replicas = catalog.replicas_of(conn, [int(row["file_id"])]).get(int(row["file_id"]), [])
            expected = Expected(size=int(file["size"]), adler32=file["adler32"])
            if row["kind"] == "transfer":
                self._transfer(row, file, replicas, expected, cancel)
            elif row["kind"] == "stage":
                self._stage(row, file, expected)
            elif row["kind"] == "delete":
                self._delete(row, file, replicas)
            else:
                self._verify(row, file, replicas, expected)
        except Cancelled as exc:
            log.info("request %d: %s", rid, exc)
        except TransferFailure as exc:
            self._record_failure(row, exc)
        except Exception as exc:  # an agent bug: keep the error on the request, retry later
            log.exception("request %d failed unexpectedly", rid)
            self._record_failure(row, TransferFailure(errorcodes.STAGEIN_FAILED, f"agent error: {exc}"))

    def _record_failure(self, row: Any, exc: TransferFailure) -> None:
        """Record a failed attempt; if even that fails, log it and record a plain message instead.

        A worker thread's exception is seen by nobody: without this, a failure the database
        refused to store left its request active, with no attempt counted, for ever.
        """
        try:
            self._failed(row, exc)
        except Exception as err:
            log.exception("request %d: recording its failure failed; recording a plain message", row["request_id"])
            self._failed(
                row, TransferFailure(exc.code, f"{type(exc).__name__} (its text could not be stored: {err!r})"[:500])
            )

    def _url(self, se: str, file: Any) -> str:
        return se_file_url(self.storage[se].endpoints[0], scope=file["scope"], lfn=file["lfn"])

    def _pick_source(self, row: Any, replicas: list[Any]) -> Any | None:
        good = [
            r
            for r in replicas
            if r["state"] == catalog.AVAILABLE and r["se"] != row["dest_se"] and r["se"] in self.storage
        ]
        if row["source_se"]:
            good = [r for r in good if r["se"] == row["source_se"]] or good
        if not good:
            return None
        return min(good, key=lambda r: (r["se"] != row["source_se"], self.storage[r["se"]].is_tape))

    def _transfer(self, row: Any, file: Any, replicas: list[Any], expected: Expected, cancel: threading.Event) -> None:
        now = time.time()
        source = self._pick_source(row, replicas)
        if source is None:
            with self.db.read() as conn:  # declared lost while this copy ran: say so (110), not 1099
                lost = [
                    r
                    for r in catalog.requests_of_file(conn, int(file["file_id"]))
                    if r["kind"] == "stage" and r["error_code"] == errorcodes.FILE_LOST
                ]
            if lost:
                raise TransferFailure(errorcodes.FILE_LOST, lost[0]["last_error"], retryable=False)
            raise TransferFailure(
                errorcodes.STAGEIN_FAILED,
                f"no available replica of {file['scope']}:{file['lfn']} to copy from",
                retryable=False,
            )
        se = self.storage[source["se"]]
        if se.is_tape and not (source["online_until"] and source["online_until"] > now):
            with self.db.write() as conn:
                sid = catalog.add_request(
                    conn,
                    kind="stage",
                    file_id=int(file["file_id"]),
                    dest_se=se.name,
                    task_id=int(row["task_id"]),
                    activity="bring-online",
                    now=now,
                    not_before=now if se.stages_by_prepare else now + se.staging_latency_s,
                )
                stage = conn.execute(ddm_requests.select().where(ddm_requests.c.request_id == sid)).mappings().first()
                ready = max(float(stage["next_attempt"]), now) + min(self.config.poll_s, 1.0) if stage else now + 1
                note = f"waiting for tape staging (request {sid}) of {file['lfn']} on {se.name}"
                catalog.finish_request(
                    conn,
                    int(row["request_id"]),
                    owner=self.agent_id,
                    state=catalog.QUEUED,
                    now=now,
                    error=note,
                    next_attempt=ready,
                    count_attempt=False,
                )
            log.info("request %d: queued, %s", row["request_id"], note)
            return
        dest = row["dest_se"]
        src_url, dst_url = self._url(source["se"], file), self._url(dest, file)
        scratch = self.config.scratch_dir / self.agent_id
        try:
            copied = copy_verified(src_url, dst_url, expected, scratch=scratch, cancelled=cancel.is_set)
        except TransferFailure as exc:
            if exc.missing and se.stages_by_prepare:  # evicted from the disk buffer: recall it again
                with self.db.write() as conn:
                    catalog.set_online(conn, int(file["file_id"]), se.name, until=time.time(), now=time.time())
                raise
            if exc.source_bad and exc.code != errorcodes.CHECKSUM_MISMATCH_STAGEOUT:
                with self.db.write() as conn:
                    catalog.set_replica_state(conn, int(file["file_id"]), source["se"], catalog.BAD, now=time.time())
                exc.retryable = True  # another replica may do
            raise
        now = time.time()
        with self.db.write() as conn:
            ok = catalog.finish_request(conn, int(row["request_id"]), owner=self.agent_id, state=catalog.DONE, now=now)
            if ok:
                online = now + self.storage[dest].pin_lifetime_s if self.storage[dest].is_tape else None
                catalog.set_replica(
                    conn, int(file["file_id"]), dest, state=catalog.AVAILABLE, pfn=dst_url, now=now, online_until=online
                )
        if ok:
            how = "third-party copy" if copied.third_party else "through the agent"
            log.info(
                "request %d: %s -> %s (%s): done, adler32 %s",
                row["request_id"],
                src_url,
                dst_url,
                how,
                expected.adler32,
            )

    def _stage(self, row: Any, file: Any, expected: Expected) -> None:
        se = self.storage[row["dest_se"]]
        if se.stages_by_prepare and not self._recalled(row, file, se):
            return
        try:
            verify(self._url(se.name, file), expected, code=errorcodes.CHECKSUM_MISMATCH_STAGEIN)
        except TransferFailure as exc:
            if not exc.missing or se.stages_by_prepare:  # online then gone: evicted, recall again
                raise
            self._declare_lost(row, file, se.name, exc.message)
            return
        now = time.time()
        with self.db.write() as conn:
            if catalog.finish_request(conn, int(row["request_id"]), owner=self.agent_id, state=catalog.DONE, now=now):
                catalog.set_online(conn, int(file["file_id"]), se.name, until=now + se.pin_lifetime_s, now=now)
        log.info("request %d: %s staged on %s: done", row["request_id"], file["lfn"], se.name)

    def _recalled(self, row: Any, file: Any, se: StorageElementConfig) -> bool:
        """One step of a recall through the tape system's bring-online request: request it (first
        run), or poll it. True once the file is online; otherwise the request was requeued for the
        next poll or declared lost. Failures raise ``TransferFailure`` (a new recall next attempt)."""
        url, now = self._url(se.name, file), time.time()
        protocol = protocol_for(url)
        if not protocol.can_prepare:
            raise TransferFailure(
                errorcodes.STAGEIN_FAILED,
                f"{url}: {se.name} has staging = prepare but no bring-online protocol",
                retryable=False,
            )
        try:
            if not row["external_id"]:
                external = (protocol.prepare(url), now)
                self._requeue(
                    row, f"recall requested from {se.name} (request {external[0]})", now + se.staging_poll_s, external
                )
                return False
            status = protocol.stage_status(url, row["external_id"])
        except AiluroError as exc:
            raise TransferFailure(errorcodes.STAGEIN_FAILED, f"bring-online of {url} failed: {exc}") from exc
        since = float(row["external_since"] or now)
        decision = staging.judge_stage(
            status, waited_s=now - since, timeout_s=se.staging_timeout_s, first_poll_s=se.staging_poll_s
        )
        if decision.action == staging.LOST:
            self._declare_lost(row, file, se.name, decision.message)
            return False
        if decision.action == staging.FAILED:
            raise TransferFailure(
                errorcodes.STAGEIN_FAILED, f"{url} (request {row['external_id']}): {decision.message}"
            )
        if decision.action == staging.POLL:
            self._requeue(
                row, f"{decision.message} (request {row['external_id']} on {se.name})", now + decision.delay_s
            )
            return False
        return True

    def _requeue(self, row: Any, note: str, when: float, external: tuple[str, float | None] | None = None) -> None:
        """Put a held request back in the queue until ``when`` without counting an attempt."""
        with self.db.write() as conn:
            catalog.finish_request(
                conn,
                int(row["request_id"]),
                owner=self.agent_id,
                state=catalog.QUEUED,
                now=time.time(),
                error=note,
                next_attempt=when,
                count_attempt=False,
                external=external,
            )
        log.info("request %d: queued, %s", row["request_id"], note)

    def _delete(self, row: Any, file: Any, replicas: list[Any]) -> None:
        """Delete a replica at its SE and from the catalog; never the last available one."""
        se, rid, now = row["dest_se"], int(row["request_id"]), time.time()
        with self.db.read() as conn:
            copying = [
                r
                for r in catalog.requests_of_file(conn, int(file["file_id"]))
                if r["kind"] == "transfer" and r["dest_se"] == se and r["state"] in catalog.OPEN_REQUEST_STATES
            ]
        if copying:  # an expiry due before its copy arrived: wait for the copy
            with self.db.write() as conn:
                note = f"waiting for transfer {copying[0]['request_id']} to {se} before deleting"
                catalog.finish_request(
                    conn,
                    rid,
                    owner=self.agent_id,
                    state=catalog.QUEUED,
                    now=now,
                    error=note,
                    next_attempt=now + 30,
                    count_attempt=False,
                )
            log.info("request %d: queued, %s", rid, note)
            return
        if not any(r["state"] == catalog.AVAILABLE and r["se"] != se for r in replicas):
            raise TransferFailure(
                errorcodes.STAGEOUT_FAILED, f"refusing to delete the only available replica (on {se})", retryable=False
            )
        url = self._url(se, file)
        try:
            protocol_for(url).delete(url)  # a missing file is fine: the goal is that it is gone
        except AiluroError as exc:
            raise TransferFailure(errorcodes.STAGEOUT_FAILED, f"deleting {url} failed: {exc}") from exc
        with self.db.write() as conn:
            if catalog.finish_request(conn, rid, owner=self.agent_id, state=catalog.DONE, now=time.time()):
                catalog.remove_replica(conn, int(file["file_id"]), se)
        log.info("request %d: %s deleted from %s (%s): done", rid, file["lfn"], se, row["activity"] or "delete")

    def _declare_lost(self, row: Any, file: Any, se: str, why: str) -> None:
        """The SE says the file is not there: the replica is bad, the recall and the copies waiting
        for it fail with FILE_LOST at once (retrying cannot bring a file back)."""
        now = time.time()
        error = f"{file['scope']}:{file['lfn']} is lost on {se}: {why}"
        with self.db.write() as conn:
            catalog.set_replica_state(conn, int(file["file_id"]), se, catalog.BAD, now=now)
            catalog.finish_request(
                conn,
                int(row["request_id"]),
                owner=self.agent_id,
                state=catalog.FAILED,
                now=now,
                error=error,
                code=errorcodes.FILE_LOST,
            )
            waiting = catalog.fail_open_requests(
                conn, int(file["file_id"]), kind="transfer", now=now, code=errorcodes.FILE_LOST, error=error
            )
        rid = row["request_id"]
        log.warning("request %d: %s declared LOST (%d waiting transfer(s) failed)", rid, error, len(waiting))

    def _verify(self, row: Any, file: Any, replicas: list[Any], expected: Expected) -> None:
        se = row["dest_se"]
        tape = self.storage.get(se)
        if tape is not None and tape.stages_by_prepare and not self._recalled(row, file, tape):
            return  # a file on tape is checked once it is back on the disk buffer
        try:
            verify(self._url(se, file), expected)
        except TransferFailure as exc:
            if not exc.source_bad or (exc.missing and tape is not None and tape.stages_by_prepare):
                raise  # could not reach the SE, or evicted again since the recall: retry later
            now = time.time()
            with self.db.write() as conn:
                catalog.set_replica_state(conn, int(file["file_id"]), se, catalog.BAD, now=now)
                catalog.finish_request(
                    conn,
                    int(row["request_id"]),
                    owner=self.agent_id,
                    state=catalog.FAILED,
                    now=now,
                    error=exc.message,
                    code=exc.code,
                )
                others = [r for r in replicas if r["se"] != se and r["state"] == catalog.AVAILABLE]
                if others:  # repair: copy a good replica over the bad one
                    rid = catalog.add_request(
                        conn,
                        kind="transfer",
                        file_id=int(file["file_id"]),
                        dest_se=se,
                        panda_id=int(row["panda_id"]),
                        task_id=int(row["task_id"]),
                        activity="repair",
                        now=now,
                    )
                    log.warning(
                        "replica of %s on %s is bad (%s): repair transfer %d", file["lfn"], se, exc.message, rid
                    )
            return
        now = time.time()
        with self.db.write() as conn:
            if catalog.finish_request(conn, int(row["request_id"]), owner=self.agent_id, state=catalog.DONE, now=now):
                catalog.set_replica_state(conn, int(file["file_id"]), se, catalog.AVAILABLE, now=now)
        log.info("request %d: %s verified on %s: done", row["request_id"], file["lfn"], se)

    def _failed(self, row: Any, exc: TransferFailure) -> None:
        now = time.time()
        attempt = int(row["attempts"]) + 1
        final = not exc.retryable or attempt >= int(row["max_attempts"])
        delay = backoff_delay(attempt, base_s=self.config.backoff_base_s, max_s=self.config.backoff_max_s)
        with self.db.write() as conn:
            catalog.finish_request(
                conn,
                int(row["request_id"]),
                owner=self.agent_id,
                state=catalog.FAILED if final else catalog.QUEUED,
                now=now,
                error=f"attempt {attempt}: {exc.message}",
                code=exc.code,
                next_attempt=None if final else now + delay,
                external=("", None) if row["kind"] in ("stage", "verify") else None,  # the next attempt recalls anew
            )
            if final and row["kind"] == "stage":  # copies waiting for this recall would wait for ever
                waiting = catalog.fail_open_requests(
                    conn,
                    int(row["file_id"]),
                    kind="transfer",
                    source_se=row["dest_se"],
                    now=now,
                    code=exc.code,
                    error=f"the recall from {row['dest_se']} failed (request {row['request_id']}): {exc.message}",
                )
                if waiting:
                    log.warning("request %d: transfers %s waiting for it failed", row["request_id"], waiting)
        how = "failed, giving up" if final else f"queued, retry in {delay:.1f} s"
        log.warning("request %d attempt %d failed (%d): %s; %s", row["request_id"], attempt, exc.code, exc.message, how)


class InProcessAgent:
    """The DDM agent of a dispatcher process (started by the server when storage is configured).

    It runs on its own thread over the dispatcher's database, so the catalog has one writer: the
    dispatcher. Several dispatchers on one PostgreSQL database each run one; request leases keep
    them from running a request twice.
    """

    def __init__(self, agent: DDMAgent) -> None:
        self.agent = agent
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=agent.run, args=(self.stop_event,), name="ddm-agent", daemon=True)

    @classmethod
    def start(cls, config: DispatcherConfig, db: Database) -> InProcessAgent:
        """Start an agent for a ``DispatcherConfig`` over its open database."""
        agent_config = AgentConfig(
            db_url=config.db_url,
            storage=config.storage,
            queues=config.queues,
            max_workers=config.ddm_workers,
            poll_s=config.ddm_poll_s,
            backoff_base_s=config.ddm_backoff_base_s,
            scratch_dir=Path(config.ddm_scratch_dir),
        )
        runner = cls(DDMAgent(agent_config, db=db))
        runner.thread.start()
        return runner

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop cycling; running requests are cancelled (their leases lapse and they are retried)."""
        self.stop_event.set()
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            log.warning("DDM agent %s did not stop within %.0f s", self.agent.agent_id, timeout_s)


def _withdraw_for_cancelled_jobs(conn: Any, *, now: float) -> None:
    """Stage-in requests made for jobs that were cancelled are withdrawn."""
    from sqlalchemy import select

    r = ddm_requests
    stmt = (
        select(r.c.request_id)
        .select_from(r.join(jobs, jobs.c.panda_id == r.c.panda_id))
        .where(r.c.state.in_(catalog.OPEN_REQUEST_STATES), r.c.kind == "transfer", jobs.c.status == "cancelled")
    )
    ids = [int(x[0]) for x in conn.execute(stmt)]
    if ids:
        catalog.cancel_requests(conn, ids, now=now, reason="the job that needed it was cancelled")
