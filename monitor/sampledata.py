"""Synthetic dispatcher rows with a realistic spread, for the monitor's tests and its benchmark.

Rows are plain dicts keyed by the column names of ``dispatcher.store.schema``, generated
deterministically from a seed: tests insert a few hundred through SQLAlchemy, the benchmark
streams a million into PostgreSQL with COPY. Nothing here touches a database itself.

The spread: most jobs final (finished, some failed with typed errors, a few cancelled), the rest
queued or on pilots with recent modification times; creation times uniform over ``span_hours``;
sites, owners and transformations drawn with skew (a few big ones, a long tail), as in practice.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ailuro import errorcodes as ec
from ailuro.v1 import job_pb2

JOB_STATES_WEIGHTED: tuple[tuple[str, float], ...] = (
    ("finished", 70),
    ("failed", 12),
    ("cancelled", 2),
    ("activated", 8),
    ("sent", 1),
    ("starting", 1),
    ("running", 5),
    ("transferring", 1),
)
ERRORS = (
    (job_pb2.ERROR_COMPONENT_PAYLOAD, ec.PAYLOAD_FAILED, "payload exited with code {rc}"),
    (job_pb2.ERROR_COMPONENT_DDM, ec.STAGEIN_FAILED, "stage-in of {lfn} failed: no such file"),
    (job_pb2.ERROR_COMPONENT_DDM, ec.STAGEOUT_FAILED, "stage-out of {lfn} failed: connection refused"),
    (job_pb2.ERROR_COMPONENT_PILOT, ec.MEMORY_EXCEEDED, "RSS 4200 MB exceeded the limit of 4000 MB"),
    (job_pb2.ERROR_COMPONENT_PILOT, ec.MAX_WALLTIME, "walltime limit of 3600 s exceeded"),
    (job_pb2.ERROR_COMPONENT_DISPATCHER, ec.LOST_HEARTBEAT, "no heartbeat for 1800 s: pilot lost"),
)
ERROR_WEIGHTS = (50, 12, 10, 12, 8, 8)


@dataclass(frozen=True, kw_only=True)
class SampleSpec:
    """What to generate; ``now`` is the end of the time span (epoch seconds)."""

    n_jobs: int
    now: float
    span_hours: float = 24.0 * 7
    seed: int = 1
    sites: tuple[str, ...] = (
        "CERN-COMPASS",
        "CERN-LXBATCH",
        "BNL",
        "JINR-T2",
        "FZK",
        "PIC",
        "IN2P3",
        "TRIUMF",
        "RAL",
        "NDGF",
        "LOCAL",
    )
    owners: tuple[str, ...] = (*(f"user{i:02d}" for i in range(40)), "compass-prod")
    labels: tuple[str, ...] = ("user", "managed", "test", "ptest")
    transformations: tuple[str, ...] = (
        "coral.exe",
        "phast",
        "megadst_reco.py",
        "runAthena",
        "prun",
        "simu.sh",
        "merge.py",
        "validate.py",
    )
    jobs_per_task: int = 50
    first_panda_id: int = 1
    files: bool = True
    extra_label_weights: tuple[int, ...] = field(default=(60, 30, 6, 4))
    state_weights: tuple[tuple[str, float], ...] = JOB_STATES_WEIGHTED


def _skewed(rng: random.Random, items: tuple[str, ...]) -> str:
    # Zipf-like: item k drawn with weight 1/(k+1)
    weights = [1.0 / (k + 1) for k in range(len(items))]
    return rng.choices(items, weights)[0]


@dataclass
class SampleRows:
    """One job's rows: the job, its files and its state history."""

    job: dict[str, Any]
    files: list[dict[str, Any]]
    events: list[dict[str, Any]]
    errors: list[dict[str, Any]] = field(default_factory=list)
    """``job_errors`` rows."""


_SPEC_BLOB = job_pb2.Job(job_name="sample").SerializeToString()


def generate(spec: SampleSpec) -> Iterator[SampleRows]:
    """Yield ``spec.n_jobs`` jobs (ids from ``spec.first_panda_id``) with files and events."""
    rng = random.Random(spec.seed)
    states = [s for s, _ in spec.state_weights]
    state_weights = [w for _, w in spec.state_weights]
    span = spec.span_hours * 3600.0
    for k in range(spec.n_jobs):
        pid = spec.first_panda_id + k
        status = rng.choices(states, state_weights)[0]
        site = _skewed(rng, spec.sites)
        owner = _skewed(rng, spec.owners)
        label = "managed" if owner == "compass-prod" else rng.choices(spec.labels, spec.extra_label_weights)[0]
        transformation = _skewed(rng, spec.transformations)
        task_id = 1000 + pid // spec.jobs_per_task
        final = status in ("finished", "failed", "cancelled")
        started: float | None
        if final:
            created = spec.now - rng.random() * span
            started = min(spec.now, created + rng.uniform(5, 1800))  # a job created just now started by now
            ended = min(spec.now, started + rng.uniform(60, 7200))
            modified = ended
        else:
            created = spec.now - rng.random() * min(span, 6 * 3600.0)
            started = created + rng.uniform(5, 600) if status in ("starting", "running", "transferring") else None
            started = min(spec.now, started) if started is not None else None
            ended = None
            modified = min(spec.now, (started or created) + rng.uniform(0, 900))
        errors: list[job_pb2.JobError] = []
        exit_code = 0
        lfn_out = f"out.{pid}.root"
        if status == "failed":
            comp, code, diag = rng.choices(ERRORS, ERROR_WEIGHTS)[0]
            exit_code = rng.choice((1, 2, 137)) if comp == job_pb2.ERROR_COMPONENT_PAYLOAD else 0
            errors = [job_pb2.JobError(component=comp, code=code, diag=diag.format(rc=exit_code, lfn=lfn_out))]
        elif status == "cancelled":
            errors = [
                job_pb2.JobError(
                    component=job_pb2.ERROR_COMPONENT_DISPATCHER, code=ec.KILLED_BY_USER, diag="killed by owner"
                )
            ]
        on_pilot = status in ("sent", "starting", "running", "transferring") or (
            final and started is not None and status != "cancelled"
        )
        pilot_id = f"pilot-{site.lower()}-{pid % 997}" if on_pilot else ""
        job = {
            "panda_id": pid,
            "job_name": f"job.{task_id}.{pid}",
            "job_definition_id": task_id * 10,
            "task_id": task_id,
            "vo": "compass",
            "prod_source_label": label,
            "transformation": transformation,
            "job_parameters": f"--events 1000 --seed {pid}",
            "computing_site": site,
            "current_priority": rng.choice((0, 100, 500, 1000)),
            "max_attempt": 3,
            "attempt_nr": 1 if rng.random() < 0.9 else 2,
            "cores": rng.choice((1, 1, 1, 8)),
            "memory_mb": 2000,
            "max_walltime_s": 86400,
            "disk_mb": 0,
            "tags": "",
            "destination_dblock": f"user.{owner}.out.{task_id}",
            "destination_se": "CERN-EOS",
            "processing_type": "reco" if transformation in ("coral.exe", "megadst_reco.py") else "",
            "status": status,
            "creation_time": created,
            "modification_time": modified,
            "start_time": started if status not in ("activated", "sent") else None,
            "end_time": ended,
            "sent_time": created + 2.0 if on_pilot else None,
            "owner": owner,
            "pilot_id": pilot_id,
            "batch_id": str(100000 + pid % 50000) if on_pilot else "",
            "node": f"node{pid % 300:03d}.{site.lower()}" if on_pilot else "",
            "cpu_time_s": (ended - started) * 0.9 if ended and started else 0.0,
            "max_rss_kb": rng.randint(100_000, 4_000_000) if on_pilot else 0,
            "walltime_s": (ended - started) if ended and started else 0.0,
            "exit_code": exit_code,
            "lease_epoch": 1 if on_pilot else 0,
            "lease_expires": modified + 1800 if status in ("sent", "starting", "running", "transferring") else None,
            "kill_requested": status == "cancelled",
            "kill_reason": "killed by owner" if status == "cancelled" else "",
            "brokerage_reason": f"requested site {site}",
            "parent_panda_id": 0,
            "last_final_epoch": 1 if final and on_pilot else 0,
            "last_final_status": status if final and on_pilot else "",
            "spec": _SPEC_BLOB,
        }
        file_rows: list[dict[str, Any]] = []
        if spec.files:
            base = {"panda_id": pid, "scope": f"user.{owner}", "source_se": "", "destination_se": "CERN-EOS", "pfn": ""}
            if pid % 2 == 0:
                file_rows.append(
                    {
                        **base,
                        "lfn": f"in.{task_id}.{pid % spec.jobs_per_task}.raw",
                        "guid": f"g-in-{pid}",
                        "type": "input",
                        "dataset": f"compass.raw.{task_id}",
                        "size": 2_000_000_000 + pid % 1000,
                        "adler32": f"{pid % 0xFFFFFFFF:08x}",
                        "status": "ready",
                    }
                )
            if status == "finished":
                file_rows.append(
                    {
                        **base,
                        "lfn": lfn_out,
                        "guid": f"g-out-{pid}",
                        "type": "output",
                        "dataset": f"user.{owner}.out.{task_id}",
                        "size": 50_000_000 + pid % 9999,
                        "adler32": f"{(pid * 7) % 0xFFFFFFFF:08x}",
                        "status": "transferred",
                    }
                )
            if final and on_pilot:
                file_rows.append(
                    {
                        **base,
                        "lfn": f"{job['job_name']}.job.log.tgz",
                        "guid": f"g-log-{pid}",
                        "type": "log",
                        "dataset": f"user.{owner}.log.{task_id}",
                        "size": 20_000 + pid % 999,
                        "adler32": f"{(pid * 13) % 0xFFFFFFFF:08x}",
                        "status": "transferred",
                    }
                )
        error_rows = [
            {"panda_id": pid, "seq": i, "attempt_nr": job["attempt_nr"], "component": e.component, "code": e.code}
            | {"diag": e.diag}
            for i, e in enumerate(errors)
        ]
        yield SampleRows(job=job, files=file_rows, events=_events(job, owner), errors=error_rows)


def _events(job: dict[str, Any], owner: str) -> list[dict[str, Any]]:
    """The transitions that lead to the job's state, timed between its creation and modification."""
    status = job["status"]
    path = ["defined", "activated"]
    if status in ("sent", "starting", "running", "transferring", "finished", "failed") and job["pilot_id"]:
        path.append("sent")
        if status != "sent":
            path += ["starting", "running"] if status != "starting" else ["starting"]
        if status in ("transferring", "finished"):
            path.append("transferring") if status == "transferring" else path.append("finished")
        elif status == "failed":
            path.append("failed")
    elif status in ("failed", "cancelled"):
        path.append(status)
    start, end = job["creation_time"], job["modification_time"]
    # the job row's own times where it has them, so the page's "Sent"/"Started" match its history
    began = job["start_time"]
    known = {"sent": job["sent_time"], "starting": began, "running": began and min(end, began + 5.0)}
    out = []
    prev = ""
    for i, st in enumerate(path):
        t = start if i < 2 else start + (end - start) * i / (len(path) - 1)
        if i >= 2:
            t = known.get(st) or (end if i == len(path) - 1 else t)
        actor = owner if i < 2 else ("watchdog" if st == "cancelled" else job["pilot_id"] or "dispatcher")
        out.append(
            {
                "panda_id": job["panda_id"],
                "time": t,
                "from_status": prev,
                "to_status": st,
                "actor": actor,
                "reason": "submitted" if i == 0 else "",
                "attempt_nr": job["attempt_nr"],
                "lease_epoch": job["lease_epoch"] if i >= 2 else 0,
            }
        )
        prev = st
    return out


def pilots_and_workers(spec: SampleSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pilot rows (some connected) and batch worker rows per site and backend."""
    rng = random.Random(spec.seed + 1)
    pilots, workers = [], []
    backends = ("slurm", "htcondor", "local")
    for s_i, site in enumerate(spec.sites):
        backend = backends[s_i % len(backends)]
        for k in range(12):
            wid = f"w-{site.lower()}-{k}"
            state = rng.choice(("submitted", "idle", "running", "running", "finished", "failed"))
            t = spec.now - rng.uniform(0, 6 * 3600)
            workers.append(
                {
                    "worker_id": wid,
                    "queue": site,
                    "backend": backend,
                    "factory_id": f"factory-{backend}",
                    "batch_id": str(5000 + s_i * 100 + k),
                    "state": state,
                    "diag": "exit code 1" if state == "failed" else "",
                    "submit_time": t,
                    "update_time": t + 60,
                    "log_path": "",
                }
            )
            if state == "running":
                pilots.append(
                    {
                        "pilot_id": f"pilot-{site.lower()}-{k}",
                        "queue": site,
                        "node": f"node{k:03d}.{site.lower()}",
                        "batch_id": str(5000 + s_i * 100 + k),
                        "version": "0.1",
                        "dispatcher_id": "d1",
                        "connected": True,
                        "first_seen": t + 30,
                        "last_seen": spec.now - rng.uniform(0, 20),  # refreshed within pilot_stale_s: connected
                    }
                )
    return pilots, workers


def load_sample(db_url: str, spec: SampleSpec, *, batch: int = 2000) -> None:
    """Create the schema (the dispatcher's migrations) and insert the sample through SQLAlchemy.

    For tests and demos of a few thousand jobs; the benchmark uses COPY instead.
    """
    from dispatcher.store import counters
    from dispatcher.store.engine import open_database
    from dispatcher.store.schema import files, job_errors, job_events, jobs, pilots, workers

    db = open_database(db_url)
    try:
        job_rows: list[dict[str, Any]] = []
        file_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        error_rows: list[dict[str, Any]] = []

        def flush() -> None:
            with db.write() as conn:
                if job_rows:
                    conn.execute(jobs.insert(), job_rows)
                if file_rows:
                    conn.execute(files.insert(), file_rows)
                if event_rows:
                    conn.execute(job_events.insert(), event_rows)
                if error_rows:
                    conn.execute(job_errors.insert(), error_rows)
            job_rows.clear()
            error_rows.clear()
            file_rows.clear()
            event_rows.clear()

        for rows in generate(spec):
            job_rows.append(rows.job)
            file_rows.extend(rows.files)
            event_rows.extend(rows.events)
            error_rows.extend(rows.errors)
            if len(job_rows) >= batch:
                flush()
        flush()
        pilot_rows, worker_rows = pilots_and_workers(spec)
        with db.write() as conn:
            counters.rebuild(conn)  # the rows bypassed the store, so count them as the migration would
            if pilot_rows:
                conn.execute(pilots.insert(), pilot_rows)
            if worker_rows:
                conn.execute(workers.insert(), worker_rows)
    finally:
        db.dispose()
