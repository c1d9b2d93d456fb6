"""Resource-level authorization for the services: :func:`dispatcher.auth.policy.may` applied to rows.

The method-level rule ran in the interceptor already; these helpers decide on the jobs, tasks and
requests a call names, and give the SQL condition that keeps a list or watch inside the caller's
VO (filtered in the query, never after fetching). A job of another VO is answered exactly like an
unknown id (NOT_FOUND): its existence does not leak across VOs. A job of the caller's VO that the
caller may not act on is PERMISSION_DENIED naming the id's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from ailuro.errors import NotFound, PermissionDenied
from ailuro.v1 import job_pb2
from dispatcher.auth.policy import (
    HIDDEN_VALUE,
    MANAGED_LABEL,
    PRODUCERS,
    Action,
    Resource,
    is_secret_name,
    may,
    may_scope,
    same_vo,
    vo_of,
)
from dispatcher.identity import Identity
from dispatcher.store.jobs import chunks
from dispatcher.store.schema import ddm_files, ddm_requests, ddm_tasks, jobs

_VERB = {Action.KILL: "kill", Action.RETRY: "retry", Action.PRIORITY: "reprioritise", Action.READ: "read"}


def job_resource(vo: str, owner: str, label: str) -> Resource:
    """A job as :func:`may` sees it."""
    return Resource(vo=vo, owner=owner, label=label)


def job_access(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
    """``{panda_id: (vo, owner, prod_source_label)}`` of the existing ids (these never change)."""
    out: dict[int, tuple[str, str, str]] = {}
    cols = (jobs.c.panda_id, jobs.c.vo, jobs.c.owner, jobs.c.prod_source_label)
    for part in chunks(sorted(set(ids))):
        for pid, vo, owner, label in conn.execute(select(*cols).where(jobs.c.panda_id.in_(part))):
            out[int(pid)] = (vo, owner, label)
    return out


def require_jobs(
    conn: Connection, ids: Sequence[int], identity: Identity, action: Action, *, field: str = "panda_ids"
) -> None:
    """Refuse the call unless ``identity`` may do ``action`` to every job of ``ids``.

    An unknown id and another VO's job are both NOT_FOUND (``field[i]``); a visible job the caller
    may not act on is PERMISSION_DENIED (``field[i]``). Nothing is written before this passes.
    """
    access = job_access(conn, ids)
    for i, pid in enumerate(ids):
        where = f"{field}[{i}]" if field == "panda_ids" else field
        row = access.get(pid)
        if row is None or not same_vo(identity, row[0]):
            raise NotFound(f"no job with panda_id {pid}", field=where)
        if not may(identity, action, job_resource(*row)):
            raise PermissionDenied(_why(identity, action, pid, row), field=where)


def _why(identity: Identity, action: Action, pid: int, row: tuple[str, str, str]) -> str:
    verb = _VERB.get(action, str(action))
    if row[2] == MANAGED_LABEL:
        return f"job {pid} is a managed (production) job: to {verb} it needs role production"
    return f"job {pid} belongs to {row[1]!r}: {identity.name!r} may {verb} only their own jobs"


def vo_filter(identity: Identity, column: Any) -> list[Any]:
    """SQL conditions keeping rows of ``column`` (a VO column) in the caller's VO ([] for all-VO admins)."""
    return [] if identity.all_vos else [column == vo_of(identity)]


def check_submit(identity: Identity, specs: Sequence[job_pb2.Job], *, field: str = "jobs") -> None:
    """Refuse jobs for another VO, and managed jobs from a caller without the production role."""
    for i, spec in enumerate(specs):
        resource = job_resource(spec.vo, identity.name, spec.prod_source_label)
        if not same_vo(identity, spec.vo):
            raise PermissionDenied(
                f"{identity.name!r} acts for VO {vo_of(identity)!r}, not {spec.vo!r}", field=f"{field}[{i}].vo"
            )
        if not may(identity, Action.SUBMIT, resource):
            raise PermissionDenied(
                f"submitting {spec.prod_source_label!r} jobs needs role production",
                field=f"{field}[{i}].prod_source_label",
            )


def hide_secrets(job: job_pb2.Job, identity: Identity) -> job_pb2.Job:
    """``job`` with its secret environment values replaced unless the caller owns it (in place)."""
    if not job.environment or may(identity, Action.SECRETS, job_resource(job.vo, job.owner, job.prod_source_label)):
        return job
    for name in list(job.environment):
        if is_secret_name(name):
            job.environment[name] = HIDDEN_VALUE
    return job


def scope_filter(identity: Identity, column: Any) -> list[Any]:
    """SQL conditions keeping catalog rows of ``column`` (a ``scope`` column) in the caller's VO
    scope (:func:`may_scope`; [] for callers acting on every VO)."""
    return [] if identity.all_vos else [column == vo_of(identity)]


def require_scope(identity: Identity, scope: str, field: str) -> None:
    """Refuse writing into another VO's catalog scope (PERMISSION_DENIED naming ``field``)."""
    if not may_scope(identity, scope):
        raise PermissionDenied(
            f"{identity.name!r} acts for VO {vo_of(identity)!r} and writes only scope {vo_of(identity)!r}, "
            f"not {scope!r}",
            field=field,
        )


def visible_scope(identity: Identity, scope: str, unknown: str, field: str) -> None:
    """Another VO's catalog scope reads exactly like an unknown name: NOT_FOUND with the message
    ``unknown`` that the unknown name gets, naming ``field``."""
    if not may_scope(identity, scope):
        raise NotFound(unknown, field=field)


def request_filter(identity: Identity) -> list[Any]:
    """SQL conditions keeping DDM requests visible to the caller: those of its VO's jobs and tasks,
    and catalog-level requests (tied to no job or task) on files of its VO's scope."""
    if identity.all_vos:
        return []
    vo = vo_of(identity)
    r = ddm_requests
    return [
        or_(
            r.c.panda_id.in_(select(jobs.c.panda_id).where(jobs.c.vo == vo)),
            r.c.task_id.in_(select(ddm_tasks.c.task_id).where(ddm_tasks.c.vo == vo)),
            and_(
                r.c.panda_id == 0,
                r.c.task_id == 0,
                r.c.file_id.in_(select(ddm_files.c.file_id).where(*scope_filter(identity, ddm_files.c.scope))),
            ),
        )
    ]


def cancellable_requests(conn: Connection, ids: Sequence[int], identity: Identity) -> list[int]:
    """The ids among ``ids`` the caller may withdraw: its VO's requests; catalog-level ones (no job,
    no task) only with the production or admin role. Others are treated like unknown ids."""
    conds = request_filter(identity)
    if PRODUCERS.isdisjoint(identity.roles):
        conds.append(or_(ddm_requests.c.panda_id != 0, ddm_requests.c.task_id != 0))
    out: list[int] = []
    for part in chunks(sorted(set(ids))):
        stmt = select(ddm_requests.c.request_id).where(ddm_requests.c.request_id.in_(part), *conds)
        out.extend(int(r[0]) for r in conn.execute(stmt))
    return out
