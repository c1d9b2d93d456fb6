"""Tasks: the COMPASS chain "process these files -> merge the outputs -> archive to tape" as one unit.

A task file (YAML) names an input dataset, a processing step (one job per input file), a merge
step (one job over all processing outputs, run where they sit on disk) and an archive SE (tape).
:func:`submit_task` stores the task and its processing jobs in one transaction (jobs carry the
``task_id``); the DDM agent calls :func:`advance_tasks` every cycle:

``processing`` -> (every processing job finished) -> ``merging`` -> (merge job finished, output
verified) -> ``archiving`` (transfer to the archive SE) -> ``done`` once the tape replica's
checksum matched; any step that fails for good makes the task ``failed`` with the reason in ``diag``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, true, update

from ailuro import names
from ailuro.errors import AiluroError, InvalidArgument, NotFound, PermissionDenied
from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro.v1 import ddm_pb2, job_pb2
from dispatcher import ddm_validation, validation
from dispatcher.auth.policy import DEFAULT_VO, MANAGED_LABEL, Action, Resource, may, same_vo, vo_of
from dispatcher.config import DispatcherConfig
from dispatcher.identity import Identity
from dispatcher.services import authz
from dispatcher.services import task_steering as steering
from dispatcher.services.authz import vo_filter
from dispatcher.services.runtime import Runtime
from dispatcher.services.submission import normalize, place_and_insert
from dispatcher.store import audit, catalog
from dispatcher.store.schema import ddm_replicas, ddm_tasks, files, jobs

_STEP_KEYS = {"transformation", "parameters", "output", "output_dataset", "site", "max_walltime_s", "memory_mb"}
_TOP_KEYS = {"name", "vo", "label", "input_dataset", "process", "merge", "archive_se", "priority", "lost_inputs"}
ACTIVE_STATES = ("processing", "merging", "archiving")
log = logging.getLogger(__name__)


def parse_task(data: Any, *, base_dir: Path | None) -> dict[str, Any]:
    """Validate a task file's content; relative script paths become absolute (from ``base_dir``, if given)."""
    if not isinstance(data, dict):
        raise InvalidArgument("a task file is a mapping", field="task")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise InvalidArgument(f"unknown key(s) {sorted(unknown)}", field="task")
    for key in ("name", "input_dataset", "archive_se"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InvalidArgument("must be a non-empty string", field=f"task.{key}")
    catalog.split_did(data["input_dataset"], field="task.input_dataset")
    names.check_dataset(data["input_dataset"], "task.input_dataset")
    names.check_identifier(data["archive_se"], "task.archive_se")
    if data.get("lost_inputs", "fail") not in steering.LOST_POLICIES:
        raise InvalidArgument(f"must be one of {list(steering.LOST_POLICIES)}", field="task.lost_inputs")
    out = dict(data)
    for step in ("process", "merge"):
        raw = data.get(step)
        if not isinstance(raw, dict) or set(raw) - _STEP_KEYS:
            raise InvalidArgument(f"must be a mapping with keys from {sorted(_STEP_KEYS)}", field=f"task.{step}")
        for key in ("transformation", "output", "output_dataset"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise InvalidArgument("must be a non-empty string", field=f"task.{step}.{key}")
        catalog.split_did(raw["output_dataset"], field=f"task.{step}.output_dataset")
        names.check_dataset(raw["output_dataset"], f"task.{step}.output_dataset")
        step_out = dict(raw)
        script = Path(raw["transformation"])
        if base_dir is not None and not script.is_absolute() and (base_dir / script).is_file():
            step_out["transformation"] = str((base_dir / script).resolve())
        out[step] = step_out
    return out


def _job(
    task: Mapping[str, Any],
    task_id: int,
    step: str,
    *,
    name: str,
    inputs: Sequence[tuple[str, str]],
    output: str,
    params: str,
) -> job_pb2.Job:
    s = task[step]
    ds_scope, _ = catalog.split_did(s["output_dataset"])
    job = job_pb2.Job(
        job_name=name,
        task_id=task_id,
        vo=task.get("vo", ""),
        prod_source_label=task.get("label", "managed"),
        transformation=s["transformation"],
        job_parameters=params,
        computing_site=s.get("site", ""),
        current_priority=int(task.get("priority", 0)),
        max_walltime_s=int(s.get("max_walltime_s", 0)),
        memory_mb=int(s.get("memory_mb", 0)),
        destination_dblock=s["output_dataset"],
    )
    for scope, lfn in inputs:
        job.files.add(lfn=lfn, scope=scope, type=job_pb2.FILE_TYPE_INPUT)
    job.files.add(lfn=output, scope=ds_scope, type=job_pb2.FILE_TYPE_OUTPUT, dataset=s["output_dataset"])
    return job


def _check_scopes(task: Mapping[str, Any], identity: Identity) -> None:
    """A task reads only a dataset of the caller's VO scope (another VO's reads as unknown) and
    writes its outputs only into that scope (:func:`dispatcher.auth.policy.may_scope`)."""
    scope, name = catalog.split_did(task["input_dataset"], field="task.input_dataset")
    authz.visible_scope(identity, scope, f"no dataset {scope}:{name}", "task.input_dataset")
    for step in ("process", "merge"):
        out_scope, _ = catalog.split_did(task[step]["output_dataset"], field=f"task.{step}.output_dataset")
        authz.require_scope(identity, out_scope, f"task.{step}.output_dataset")


def submit_task(
    conn: Connection, task: Mapping[str, Any], config: DispatcherConfig, *, owner: str, now: float
) -> tuple[int, list[int]]:
    """Store a parsed task and its processing jobs; ``(task_id, panda_ids)``."""
    if task["archive_se"] not in {se.name for se in config.storage}:
        raise InvalidArgument(f"unknown storage element {task['archive_se']!r}", field="task.archive_se")
    scope, name = catalog.split_did(task["input_dataset"], field="task.input_dataset")
    try:
        inputs = catalog.dataset_files(conn, scope, name)
    except NotFound:
        raise NotFound(f"no dataset {scope}:{name}", field="task.input_dataset") from None
    if not inputs:
        raise InvalidArgument(f"dataset {scope}:{name} is empty", field="task.input_dataset")
    res = conn.execute(
        ddm_tasks.insert().values(
            name=task["name"],
            owner=owner,
            vo=task.get("vo", ""),
            state="processing",
            spec=json.dumps(task, sort_keys=True),
            diag="",
            merge_panda_id=0,
            created=now,
            updated=now,
        )
    )
    task_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    identity = Identity(name=owner, vo=task.get("vo", ""))
    # the jobs a task creates pass the same checks as SubmitJobs: the batch limit, every job field,
    # and the merge job it will create later (over the outputs these jobs will produce)
    validation._batch(len(inputs), "task.input_dataset")
    sites = {q.name for q in config.queues}
    raw, outputs = [], []
    for f in inputs:
        stem = f["lfn"].rsplit(".", 1)[0]
        output = task["process"]["output"].format(stem=stem, lfn=f["lfn"])
        params = task["process"].get("parameters", "{input} {output}").format(input=f["lfn"], output=output)
        job = _job(
            task,
            task_id,
            "process",
            name=f"{task['name']}.process.{stem}",
            inputs=[(scope, f["lfn"])],
            output=output,
            params=params,
        )
        validation.validate_job(job, f"task.process.jobs[{len(raw)}]", known_sites=sites)
        raw.append(job)
        outputs.append((job.files[-1].scope, output))
    validation.validate_job(_merge_job(task, task_id, outputs), "task.merge.job", known_sites=sites)
    ids = place_and_insert(conn, [normalize(j, identity) for j in raw], config, owner=owner, now=now)
    return task_id, ids


def _merge_job(task: Mapping[str, Any], task_id: int, inputs: Sequence[tuple[str, str]]) -> job_pb2.Job:
    """The merge job over ``inputs`` (the processing outputs)."""
    output = task["merge"]["output"]
    params = (
        task["merge"]
        .get("parameters", "{output} {inputs}")
        .format(output=output, inputs=" ".join(lfn for _, lfn in inputs))
    )
    return _job(task, task_id, "merge", name=f"{task['name']}.merge", inputs=inputs, output=output, params=params)


def _set(conn: Connection, task_id: int, *, now: float, **values: Any) -> None:
    conn.execute(update(ddm_tasks).where(ddm_tasks.c.task_id == task_id).values(updated=now, **values))


def advance_tasks(
    conn: Connection, *, queues: Sequence[QueueConfig], storage: Sequence[StorageElementConfig], now: float
) -> None:
    """Move every active task as far as its jobs and transfers allow."""
    rows = list(conn.execute(select(ddm_tasks).where(ddm_tasks.c.state.in_(ACTIVE_STATES))).mappings())
    for row in rows:
        task = json.loads(row["spec"])
        tid = int(row["task_id"])
        merge_id = int(row["merge_panda_id"])
        proc, merge_status = steering.current_jobs(conn, tid, merge_id)
        if row["state"] == "processing":
            _advance_processing(conn, row, task, proc, queues, storage, now=now)
        elif row["state"] == "merging":
            if merge_status == "finished":
                _start_archive(conn, task, tid, merge_id, now=now)
            elif merge_status in ("failed", "cancelled", "closed"):
                _set(conn, tid, now=now, state="failed", diag=f"merge job {merge_id} {merge_status}")
        elif row["state"] == "archiving":
            _advance_archiving(conn, task, tid, now=now)


def _advance_processing(
    conn: Connection,
    row: Any,
    task: Mapping[str, Any],
    proc: list[tuple[int, str]],
    queues: Sequence[QueueConfig],
    storage: Sequence[StorageElementConfig],
    *,
    now: float,
) -> None:
    """``processing`` -> ``merging`` once every processing job ended well (or lost its input, when partial)."""
    tid = int(row["task_id"])
    bad = [pid for pid, st in proc if st in steering.RETRYABLE_JOB_STATES]
    lost_jobs = steering.jobs_with_lost_inputs(conn, tid, bad)
    partial = task.get("lost_inputs") == "partial"
    failed = [pid for pid in bad if not (partial and pid in lost_jobs)]
    if failed:
        lost = steering.lost_files(conn, tid, failed)
        why = f"input(s) lost: {', '.join(lost[:20])}; " if lost else ""
        _set(conn, tid, now=now, state="failed", diag=f"{why}processing job(s) {failed} did not finish"[:1000])
        return
    done = [pid for pid, st in proc if st == "finished"]
    if len(done) + len(bad) < len(proc):
        return  # jobs still queued or running
    if not done:
        _set(conn, tid, now=now, state="failed", diag="every input was lost")
        return
    _start_merge(conn, task, tid, done, queues, storage, owner=row["owner"], now=now)


def _advance_archiving(conn: Connection, task: Mapping[str, Any], tid: int, *, now: float) -> None:
    """``archiving`` -> ``done`` (or ``partial`` when inputs were lost) once the archive copy is verified."""
    reqs = catalog.list_requests(conn, task_id=tid, kind="transfer")
    archive = [r for r in reqs if r["activity"] == "archive"]
    if archive and archive[0]["state"] == catalog.DONE:
        lost = steering.lost_files(conn, tid)
        if lost:
            diag = f"merged file archived on {task['archive_se']} without {len(lost)} lost input(s): {', '.join(lost)}"
            _set(conn, tid, now=now, state="partial", diag=diag[:1000])
        else:
            _set(conn, tid, now=now, state="done", diag=f"merged file archived on {task['archive_se']}")
    elif archive and archive[0]["state"] in (catalog.FAILED, catalog.CANCELLED):
        _set(conn, tid, now=now, state="failed", diag=f"archive transfer: {archive[0]['last_error']}"[:1000])


def _start_merge(
    conn: Connection,
    task: Mapping[str, Any],
    tid: int,
    proc_ids: list[int],
    queues: Sequence[QueueConfig],
    storage: Sequence[StorageElementConfig],
    *,
    owner: str,
    now: float,
) -> None:
    outs = conn.execute(
        select(files.c.scope, files.c.lfn)
        .where(files.c.panda_id.in_(proc_ids), files.c.type == "output")
        .order_by(files.c.lfn)
    ).all()
    job = _merge_job(task, tid, [(r[0], r[1]) for r in outs])
    # claim the step first: another dispatcher's agent advancing the same task then does nothing
    claimed = conn.execute(
        update(ddm_tasks)
        .where(ddm_tasks.c.task_id == tid, ddm_tasks.c.state == "processing")
        .values(state="merging", updated=now)
    )
    if claimed.rowcount != 1:
        return
    config = DispatcherConfig(queues=tuple(queues), storage=tuple(storage))
    try:
        validation.validate_job(job, "task.merge.job", known_sites={q.name for q in queues})
        spec = normalize(job, Identity(name=owner, vo=task.get("vo", "")))
        # brokerage and data planning refuse before anything is written, so the task alone fails
        (merge_id,) = place_and_insert(conn, [spec], config, owner=owner, now=now)
    except AiluroError as exc:
        _set(conn, tid, now=now, state="failed", diag=f"merge job refused: {exc}"[:1000])
        return
    _set(conn, tid, now=now, merge_panda_id=merge_id)


def _start_archive(conn: Connection, task: Mapping[str, Any], tid: int, merge_id: int, *, now: float) -> None:
    scope, _ = catalog.split_did(task["merge"]["output_dataset"])
    known = catalog.lookup_files(conn, [(scope, task["merge"]["output"])])
    row = known.get((scope, task["merge"]["output"]))
    if row is None:
        _set(conn, tid, now=now, state="failed", diag=f"merge job {merge_id} output is not in the catalog")
        return
    fid = int(row["file_id"])
    have = conn.execute(
        select(ddm_replicas.c.se).where(ddm_replicas.c.file_id == fid, ddm_replicas.c.state == catalog.AVAILABLE)
    ).all()
    source = have[0][0] if have else ""
    catalog.add_request(
        conn,
        kind="transfer",
        file_id=fid,
        source_se=source,
        dest_se=task["archive_se"],
        task_id=tid,
        activity="archive",
        now=now,
    )
    _set(conn, tid, now=now, state="archiving")


def get_task(conn: Connection, task_id: int) -> dict[str, Any]:
    """A task with its jobs' states and its requests (``NotFound`` when unknown)."""
    row = conn.execute(select(ddm_tasks).where(ddm_tasks.c.task_id == task_id)).mappings().first()
    if row is None:
        raise NotFound(f"no task {task_id}", field="task_id")
    job_rows = conn.execute(
        select(jobs.c.panda_id, jobs.c.job_name, jobs.c.status, jobs.c.computing_site)
        .where(jobs.c.task_id == task_id)
        .order_by(jobs.c.panda_id)
    ).mappings()
    return {
        "task_id": task_id,
        "name": row["name"],
        "owner": row["owner"],
        "state": row["state"],
        "diag": row["diag"],
        "merge_panda_id": row["merge_panda_id"],
        "row": row,
        "jobs": [dict(j) for j in job_rows],
        "requests": [
            {k: r[k] for k in ("request_id", "kind", "lfn", "source_se", "dest_se", "state", "attempts", "last_error")}
            for r in catalog.list_requests(conn, task_id=task_id)
        ],
        "request_rows": catalog.list_requests(conn, task_id=task_id, limit=5000),
        "lost_files": steering.lost_files(conn, task_id),
    }


def list_tasks(
    conn: Connection, *, states: Sequence[str] = (), owner: str = "", limit: int = 200, where: Sequence[Any] = ()
) -> list[Any]:
    """Task rows, newest first (``where``: the caller's authorization conditions, e.g. its VO)."""
    stmt = select(ddm_tasks).where(true(), *where).order_by(ddm_tasks.c.task_id.desc()).limit(limit)
    if states:
        stmt = stmt.where(ddm_tasks.c.state.in_(list(states)))
    if owner:
        stmt = stmt.where(ddm_tasks.c.owner == owner)
    return list(conn.execute(stmt).mappings())


class TaskService:
    """Submit, list and show tasks; what ``TaskService`` (gRPC) calls, identity as an argument."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def submit(self, spec: ddm_pb2.TaskSpec, identity: Identity) -> tuple[int, list[int]]:
        """Validate the spec and every job it makes, store the task and its processing jobs."""
        task = parse_task(ddm_validation.task_spec(spec), base_dir=None)
        task["vo"] = task.get("vo") or identity.vo or DEFAULT_VO
        label = task.get("label") or MANAGED_LABEL
        if not same_vo(identity, task["vo"]):
            raise PermissionDenied(f"{identity.name!r} acts for VO {vo_of(identity)!r}", field="task.vo")
        if not may(identity, Action.SUBMIT, Resource(vo=task["vo"], owner=identity.name, label=label)):
            raise PermissionDenied(f"a task of {label!r} jobs needs role production", field="task.label")
        _check_scopes(task, identity)

        def run() -> tuple[int, list[int]]:
            with self.rt.db.write() as conn:
                now = self.rt.now()
                task_id, ids = submit_task(conn, task, self.rt.config, owner=identity.name, now=now)
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.TASK_SUBMIT,
                    target=f"task {task_id}",
                    detail={"name": str(task["name"])[:255], "jobs": len(ids), "job_ids": audit.ids_text(ids)},
                    now=now,
                )
                return task_id, ids

        task_id, ids = await self.rt.db_call(run)
        log.info("%s submitted task %d (%s) with %d processing job(s)", identity.name, task_id, task["name"], len(ids))
        return task_id, ids

    async def list(self, req: ddm_pb2.ListTasksRequest, identity: Identity) -> list[Any]:
        """The caller's VO's task rows, newest first."""
        states = ddm_validation.task_states(req.states)
        ddm_validation.text(req.owner, "owner")
        n = ddm_validation.limit(req.limit, "limit", default=200)

        def run() -> list[Any]:
            with self.rt.db.read() as conn:
                return list_tasks(
                    conn, states=states, owner=req.owner, limit=n, where=vo_filter(identity, ddm_tasks.c.vo)
                )

        return await self.rt.db_call(run)

    async def get(self, task_id: int, identity: Identity) -> dict[str, Any]:
        """:func:`get_task` of one task (``NotFound`` when unknown or another VO's)."""
        ddm_validation.positive_id(task_id, "task_id")

        def run() -> dict[str, Any]:
            with self.rt.db.read() as conn:
                info = get_task(conn, task_id)
            row = info["row"]
            if not may(identity, Action.READ, Resource(vo=row["vo"] or DEFAULT_VO, owner=row["owner"])):
                raise NotFound(f"no task {task_id}", field="task_id")
            return info

        return await self.rt.db_call(run)

    async def retry(self, task_id: int, identity: Identity) -> steering.RetryOutcome:
        """Resubmit the failed jobs of a task's current step (or its failed archive transfer); audited."""
        ddm_validation.positive_id(task_id, "task_id")

        def run() -> steering.RetryOutcome:
            with self.rt.db.write() as conn:
                now = self.rt.now()
                steering.may_steer(identity, steering.task_row(conn, task_id))
                out = steering.retry_task(conn, task_id, self.rt.config, now=now)
                detail = {"retried": audit.ids_text(out.retried), "new_ids": audit.ids_text(out.new_ids)}
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.TASK_RETRY,
                    target=f"task {task_id}",
                    detail={**detail, "requeued_requests": out.requeued_requests},
                    now=now,
                )
                return out

        out = await self.rt.db_call(run)
        log.info("%s retried task %d: jobs %s -> %s", identity.name, task_id, out.retried, out.new_ids)
        return out

    async def abort(self, task_id: int, reason: str, identity: Identity) -> steering.AbortOutcome:
        """Abort a task (jobs killed, requests withdrawn, no new job); audited. Kill commands are returned."""
        ddm_validation.positive_id(task_id, "task_id")
        ddm_validation.text(reason, "reason", limit=1000)

        def run() -> steering.AbortOutcome:
            with self.rt.db.write() as conn:
                now = self.rt.now()
                steering.may_steer(identity, steering.task_row(conn, task_id))
                out = steering.abort_task(conn, task_id, who=identity.name, reason=reason, now=now)
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.TASK_ABORT,
                    target=f"task {task_id}",
                    detail={"killed": out.killed, "cancelled_requests": out.cancelled_requests, "reason": reason[:200]},
                    now=now,
                )
                return out

        out = await self.rt.db_call(run)
        log.info("%s aborted task %d: %d job(s) killed", identity.name, task_id, out.killed)
        return out
