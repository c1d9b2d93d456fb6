"""Where jobs meet the DDM catalog: inputs before a job runs, outputs after it ran.

- Submission (:func:`plan_jobs`, :func:`link_jobs`): a job on a queue with ``input_se`` reads its
  inputs from the catalog. Inputs already available on one of the queue's disk SEs get their URL
  (``pfn``) now and the job stays ``activated``; otherwise transfers to the queue's first input SE
  are requested (from a disk replica elsewhere, else from tape, which is staged first) and the
  job waits in ``assigned``. Outputs get their destination URL on the job's ``destination_se``
  (else the queue's first ``output_se``), so pilots need no storage configuration.
- Final report (:func:`verify_sites`, :func:`register_outputs`): a linked job that finished goes
  ``holding -> transferring`` (not ``finished``); its outputs are registered as ``unverified`` replicas with a
  ``verify`` request each, only in the catalog scope of the job's VO (:func:`foreign_output`: a
  report naming another scope is refused whole, Ack REJECTED, and changes nothing).
- The DDM agent then calls :func:`activate_ready` (assigned -> activated once every input is
  available, failed when a transfer failed for good) and :func:`finish_verified`
  (transferring -> finished once every output's checksum matched at its destination).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from ailuro import errorcodes
from ailuro.errors import InvalidArgument
from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro.v1 import job_pb2, pilot_pb2
from ddm.storage import se_file_url
from dispatcher.auth.policy import DEFAULT_VO
from dispatcher.states import JobState
from dispatcher.store import catalog
from dispatcher.store.jobs import chunks, fetch_files
from dispatcher.store.schema import ddm_job_links, jobs
from dispatcher.store.transitions import Change, apply_changes

EC = job_pb2.ErrorComponent
_OUT_TYPES = (job_pb2.FILE_TYPE_OUTPUT, job_pb2.FILE_TYPE_LOG)


@dataclass(kw_only=True)
class JobPlan:
    """What the DDM does for one submitted job."""

    input_se: str = ""
    output_se: str = ""
    missing: list[tuple[int, str]] = field(default_factory=list)
    """``(file_id, source_se)`` of inputs to transfer to ``input_se`` before the job can run."""


def _url(se: StorageElementConfig, scope: str, lfn: str) -> str:
    return se_file_url(se.endpoints[0], scope=scope, lfn=lfn)


def _is_online(replica: Any, se: StorageElementConfig | None, now: float) -> bool:
    if se is None or not se.is_tape:
        return True
    return replica["online_until"] is not None and replica["online_until"] > now


@dataclass(frozen=True, kw_only=True)
class CatalogInputs:
    """The catalog's rows for the inputs of one submission batch, read once (:func:`read_inputs`)."""

    files: Mapping[tuple[str, str], Any]
    """File rows by ``(scope, lfn)``; inputs the catalog does not know are absent."""
    replicas: Mapping[int, list[Any]]
    """Replicas (``se``, ``state``, ``pfn``, ``online_until``) by file id."""


NO_INPUTS = CatalogInputs(files={}, replicas={})


def read_inputs(conn: Connection, specs: Sequence[job_pb2.Job]) -> CatalogInputs:
    """Every input of ``specs`` as the catalog knows it: one query for the whole batch."""
    names = [(f.scope, f.lfn) for spec in specs for f in spec.files if f.type == job_pb2.FILE_TYPE_INPUT]
    if not names:
        return NO_INPUTS
    files, replicas = catalog.files_with_replicas(conn, names)
    return CatalogInputs(files=files, replicas=replicas)


def queues_holding_inputs(
    spec: job_pb2.Job,
    queues: Sequence[QueueConfig],
    storage: Mapping[str, StorageElementConfig],
    inputs: CatalogInputs,
) -> frozenset[str]:
    """Queues whose input SEs already hold every input of ``spec`` (brokerage prefers them)."""
    names = {(f.scope, f.lfn) for f in spec.files if f.type == job_pb2.FILE_TYPE_INPUT}
    if not names or not names <= inputs.files.keys():
        return frozenset()
    ids = [int(inputs.files[n]["file_id"]) for n in names]
    out = set()
    for q in queues:
        disks = [s for s in q.input_se if s in storage and not storage[s].is_tape]
        if disks and all(
            any(r["se"] in disks and r["state"] == catalog.AVAILABLE for r in inputs.replicas.get(fid, []))
            for fid in ids
        ):
            out.add(q.name)
    return frozenset(out)


def plan_jobs(
    specs: Sequence[job_pb2.Job],
    queues: Mapping[str, QueueConfig],
    storage: Mapping[str, StorageElementConfig],
    inputs: CatalogInputs,
    *,
    now: float,
) -> list[JobPlan | None]:
    """Fill input/output URLs of jobs placed on DDM queues (in place); ``None`` for jobs without DDM.

    ``InvalidArgument`` names a job input the catalog does not know or that has no replica.
    """
    plans: list[JobPlan | None] = []
    for i, spec in enumerate(specs):
        q = queues.get(spec.computing_site)
        if q is None or not storage:
            plans.append(None)
            continue
        disks = [s for s in q.input_se if s in storage and not storage[s].is_tape]
        out_name = spec.destination_se if spec.destination_se in storage else (q.output_se[0] if q.output_se else "")
        if not disks and not out_name:
            plans.append(None)
            continue
        plan = JobPlan(input_se=disks[0] if disks else "", output_se=out_name)
        if disks:
            _plan_inputs(spec, plan, disks, storage, inputs, now=now, where=f"jobs[{i}]")
        if out_name:
            spec.destination_se = out_name
            dscope = spec.destination_dblock.partition(":")[0] if ":" in spec.destination_dblock else ""
            for k, f in enumerate(spec.files):
                if f.type in _OUT_TYPES:
                    f.scope = f.scope or dscope or spec.vo
                    _refuse_foreign_scope(f, spec.vo, where=f"jobs[{i}].files[{k}]")
                    f.destination_se = out_name
                    f.pfn = _url(storage[out_name], f.scope, f.lfn)
        plans.append(plan)
    return plans


def _refuse_foreign_scope(f: job_pb2.File, vo: str, *, where: str) -> None:
    """Refuse at submission an output the job's pilot could only register in another VO's scope.

    The finished report would be refused for it (:func:`foreign_output`) and the job would wait
    for its lease to lapse, attempt after attempt; saying so now, naming the field, is kinder.
    """
    own = vo or DEFAULT_VO
    if f.scope != own:
        raise InvalidArgument(
            f"output scope {f.scope!r} is not the scope of the job's VO {own!r}", field=f"{where}.scope"
        )
    ds_scope = f.dataset.rpartition(":")[0]
    if ds_scope and ds_scope != own:
        raise InvalidArgument(
            f"output dataset is in scope {ds_scope!r}, not in the scope of the job's VO {own!r}",
            field=f"{where}.dataset",
        )


def _plan_inputs(
    spec: job_pb2.Job,
    plan: JobPlan,
    disks: list[str],
    storage: Mapping[str, StorageElementConfig],
    inputs: CatalogInputs,
    *,
    now: float,
    where: str,
) -> None:
    for k, f in enumerate(spec.files):
        if f.type != job_pb2.FILE_TYPE_INPUT:
            continue
        row = inputs.files.get((f.scope, f.lfn))
        if row is None:
            if f.pfn:
                continue  # an explicit URL outside the catalog: read as given
            raise InvalidArgument(f"input {f.scope}:{f.lfn} is not in the DDM catalog", field=f"{where}.files[{k}]")
        fid = int(row["file_id"])
        f.size, f.adler32, f.guid = int(row["size"]), row["adler32"], row["guid"]
        good = [r for r in inputs.replicas.get(fid, []) if r["state"] == catalog.AVAILABLE and r["se"] in storage]
        here = [r for r in good if r["se"] in disks]
        if here:
            se = min(here, key=lambda r: disks.index(r["se"]))["se"]
            f.source_se, f.pfn = se, _url(storage[se], f.scope, f.lfn)
            continue
        if not good:
            raise InvalidArgument(f"input {f.scope}:{f.lfn} has no available replica", field=f"{where}.files[{k}]")
        # prefer a disk replica (no staging), then a tape replica already online
        best = min(good, key=lambda r: (storage[r["se"]].is_tape, not _is_online(r, storage[r["se"]], now)))
        plan.missing.append((fid, best["se"]))
        f.source_se, f.pfn = "", ""


def planned_state(plan: JobPlan | None) -> tuple[JobState, str]:
    """The state a job is inserted in, and why it waits: ``assigned`` until its missing inputs arrive."""
    if plan is None or not plan.missing:
        return JobState.ACTIVATED, ""
    return JobState.ASSIGNED, f"{len(plan.missing)} input(s) not on {plan.input_se}: waiting for DDM transfers"


def link_jobs(
    conn: Connection, ids: Sequence[int], specs: Sequence[job_pb2.Job], plans: Sequence[JobPlan | None], *, now: float
) -> None:
    """After insertion: remember DDM jobs and request their missing inputs (they were inserted ``assigned``)."""
    links = []
    for pid, spec, plan in zip(ids, specs, plans, strict=True):
        if plan is None:
            continue
        links.append({"panda_id": pid, "input_se": plan.input_se, "output_se": plan.output_se})
        for fid, source in plan.missing:
            catalog.add_request(
                conn,
                kind="transfer",
                file_id=fid,
                source_se=source,
                dest_se=plan.input_se,
                panda_id=pid,
                task_id=spec.task_id,
                activity="stage-in",
                now=now,
            )
    if links:
        conn.execute(ddm_job_links.insert(), links)


def _links(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for part in chunks(sorted(set(ids))):
        for row in conn.execute(select(ddm_job_links).where(ddm_job_links.c.panda_id.in_(list(part)))).mappings():
            out[int(row["panda_id"])] = row
    return out


def verify_sites(conn: Connection, panda_ids: Sequence[int]) -> dict[int, Any]:
    """The DDM links of those jobs whose outputs are verified before they finish (an ``output_se``).

    A finished report of such a job ends in ``transferring`` (decided when the change is built,
    see ``store/pilots.py``), and the links go on to :func:`register_outputs`.
    """
    if not panda_ids:
        return {}
    return {pid: link for pid, link in _links(conn, panda_ids).items() if link["output_se"]}


def _registers(f: job_pb2.File, link: Any) -> bool:
    """Whether :func:`register_outputs` registers file ``f`` of a finished job linked by ``link``."""
    return f.type in _OUT_TYPES and bool(f.pfn) and f.destination_se == link["output_se"]


def foreign_output(rep: pilot_pb2.JobFinal, link: Any | None, vo: str) -> str | None:
    """Why this final report would register an output outside its job's VO, or ``None``.

    A VO owns the catalog scope named after it (``dispatcher.auth.policy.may_scope``); the scopes
    a pilot reports are its word only, so an output (or the dataset it joins) in another scope is
    refused here, before anything is registered, naming the field. Reports that register nothing
    (not finished, no ``output_se``) are not judged.
    """
    if link is None or not link["output_se"] or rep.status != job_pb2.JOB_STATUS_FINISHED:
        return None
    own = vo or DEFAULT_VO
    for j, f in enumerate(rep.files):
        if not _registers(f, link):
            continue
        if f.scope != own:
            return f"files[{j}].scope {f.scope!r} is not the scope of the job's VO {own!r}"
        ds_scope = f.dataset.rpartition(":")[0]
        if ds_scope and ds_scope != own:
            return f"files[{j}].dataset is in scope {ds_scope!r}, not in the scope of the job's VO {own!r}"
    return None


def register_outputs(
    conn: Connection, reports: Sequence[pilot_pb2.JobFinal], *, now: float, links: Mapping[int, Any] | None = None
) -> None:
    """Register the stored outputs of DDM jobs that went to ``transferring``, and ask for their verification.

    ``links``: what :func:`verify_sites` returned for these reports (else they are read here).
    """
    linked = _links(conn, [r.panda_id for r in reports]) if links is None else links
    for rep in reports:
        link = linked.get(rep.panda_id)
        if link is None or not link["output_se"] or JobState.from_proto(rep.status) != JobState.FINISHED:
            continue
        for f in rep.files:
            if not _registers(f, link):
                continue
            scope = f.scope
            ds_scope, _, ds_name = f.dataset.rpartition(":")
            dataset_id = catalog.ensure_dataset(conn, ds_scope or scope, ds_name, now=now) if ds_name else None
            entry = catalog.FileEntry(lfn=f.lfn, size=f.size, adler32=f.adler32.lower(), guid=f.guid)
            fid = catalog.add_files(conn, scope, [entry], dataset_id=dataset_id, now=now)[f.lfn]
            catalog.set_replica(conn, fid, link["output_se"], state=catalog.UNVERIFIED, pfn=f.pfn, now=now)
            catalog.add_request(
                conn, kind="verify", file_id=fid, dest_se=link["output_se"], panda_id=rep.panda_id, now=now
            )


def _error(code: int, diag: str) -> list[job_pb2.JobError]:
    return [job_pb2.JobError(component=EC.ERROR_COMPONENT_DDM, code=code, diag=diag[:1000])]


def activate_ready(
    conn: Connection, storage: Mapping[str, StorageElementConfig], *, now: float, limit: int = 500
) -> list[int]:
    """``assigned`` DDM jobs whose inputs all arrived -> ``activated`` (with URLs); failed transfers -> ``failed``."""
    stmt = (
        select(jobs.c.panda_id, jobs.c.lease_epoch, jobs.c.attempt_nr, jobs.c.spec, ddm_job_links.c.input_se)
        .select_from(jobs.join(ddm_job_links, ddm_job_links.c.panda_id == jobs.c.panda_id))
        .where(jobs.c.status == JobState.ASSIGNED.value)
        .limit(limit)
    )
    rows = list(conn.execute(stmt).mappings())
    if not rows:
        return []
    requests = catalog.requests_of_jobs(conn, [r["panda_id"] for r in rows])
    changes = []
    waiting: list[tuple[Any, dict[str, Any], job_pb2.Job, list[Any]]] = []
    for row in rows:
        pid = int(row["panda_id"])
        base = {"panda_id": pid, "from_status": JobState.ASSIGNED, "epoch": row["lease_epoch"], "actor": "ddm"}
        base["attempt_nr"] = row["attempt_nr"]
        failed = [r for r in requests.get(pid, []) if r["state"] in (catalog.FAILED, catalog.CANCELLED)]
        if failed:
            diag = f"input transfer {failed[0]['request_id']} {failed[0]['state']}: {failed[0]['last_error']}"
            lost = failed[0]["error_code"] == errorcodes.FILE_LOST  # keep "lost" visible on the job
            code = errorcodes.FILE_LOST if lost else errorcodes.STAGEIN_FAILED
            values = {"errors": _error(code, diag), "end_time": now}
            changes.append(Change(**base, to_status=JobState.FAILED, values=values, reason=diag[:500]))
            continue
        spec = job_pb2.Job.FromString(row["spec"])
        inputs = [f for f in spec.files if f.type == job_pb2.FILE_TYPE_INPUT and not f.pfn]
        waiting.append((row, base, spec, inputs))
    # the catalog rows of every waiting job's inputs at once (not two queries per job and cycle)
    known, reps = catalog.files_with_replicas(conn, [(f.scope, f.lfn) for *_, inputs in waiting for f in inputs])
    for row, base, spec, inputs in waiting:
        se_name = row["input_se"]
        if not all(_available_on(known, reps, se_name, f.scope, f.lfn) for f in inputs):
            continue
        for f in inputs:
            f.source_se, f.pfn = se_name, _url(storage[se_name], f.scope, f.lfn)
        reason = f"all inputs available on {se_name}"
        changes.append(
            Change(**base, to_status=JobState.ACTIVATED, values={"spec": spec.SerializeToString()}, reason=reason)
        )
    return sorted(apply_changes(conn, changes, now=now))


def _available_on(
    known: Mapping[tuple[str, str], Any], reps: Mapping[int, list[Any]], se_name: str, scope: str, lfn: str
) -> bool:
    """Whether the catalog has an ``available`` replica of ``scope:lfn`` on ``se_name``."""
    row = known.get((scope, lfn))
    return row is not None and any(
        r["se"] == se_name and r["state"] == catalog.AVAILABLE for r in reps.get(int(row["file_id"]), [])
    )


def finish_verified(conn: Connection, *, now: float, limit: int = 500) -> list[int]:
    """``transferring`` DDM jobs whose outputs are all verified at their destination -> ``finished``."""
    stmt = (
        select(jobs.c.panda_id, jobs.c.lease_epoch, jobs.c.attempt_nr, ddm_job_links.c.output_se)
        .select_from(jobs.join(ddm_job_links, ddm_job_links.c.panda_id == jobs.c.panda_id))
        .where(jobs.c.status == JobState.TRANSFERRING.value)
        .limit(limit)
    )
    rows = list(conn.execute(stmt).mappings())
    if not rows:
        return []
    file_rows = fetch_files(conn, [int(r["panda_id"]) for r in rows])
    requests = catalog.requests_of_jobs(conn, [int(r["panda_id"]) for r in rows])
    outs_of = {
        int(r["panda_id"]): [
            f
            for f in file_rows.get(int(r["panda_id"]), [])
            if f["type"] in ("output", "log") and f["destination_se"] == r["output_se"]
        ]
        for r in rows
    }
    # the catalog rows of every job's outputs at once (not two queries per job and cycle)
    known, reps = catalog.files_with_replicas(conn, [(f["scope"], f["lfn"]) for outs in outs_of.values() for f in outs])
    changes = []
    for row in rows:
        pid, se_name = int(row["panda_id"]), row["output_se"]
        base = {"panda_id": pid, "from_status": JobState.TRANSFERRING, "epoch": row["lease_epoch"], "actor": "ddm"}
        base["attempt_nr"] = row["attempt_nr"]
        failed = [r for r in requests.get(pid, []) if r["kind"] == "verify" and r["state"] == catalog.FAILED]
        if failed:
            diag = f"output verification failed: {failed[0]['last_error']}"
            values = {"errors": _error(errorcodes.CHECKSUM_MISMATCH_STAGEOUT, diag), "end_time": now}
            changes.append(Change(**base, to_status=JobState.FAILED, values=values, reason=diag[:500]))
            continue
        outs = outs_of[pid]
        if all(_available_on(known, reps, se_name, f["scope"], f["lfn"]) for f in outs):
            reason = f"{len(outs)} output(s) verified on {se_name}"
            changes.append(Change(**base, to_status=JobState.FINISHED, values={"end_time": now}, reason=reason))
    return sorted(apply_changes(conn, changes, now=now))
