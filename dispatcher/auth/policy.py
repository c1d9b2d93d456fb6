"""Authorization: the one table of who may call which RPC, and ``may`` for decisions on one resource.

Two layers, both here and nowhere else:

* :data:`POLICY` maps every RPC (its full gRPC path) to a :class:`Rule`: the roles that may call it
  and the WLCG compute scope it needs. The authentication interceptor looks the method up once per
  call (a dict lookup) and ends a call whose caller lacks the role or scope with
  PERMISSION_DENIED. A method missing from the table is refused (deny by default), and
  ``tests/integration/test_authz_matrix.py`` fails until every RPC of every proto has a row: adding
  an RPC means adding one line below.
* :func:`may` decides on one resource (a job, a task, a DDM request, a pilot queue, a factory's
  workers): owner, VO, ``prod_source_label=managed`` (production), pilot queue binding, factory
  ownership; :func:`may_steer_task` decides who may retry or abort a task. The services call
  them; they are pure (no database, no clock).

Roles (``/<vo>/<role>`` in ``wlcg.groups``; a token naming no role is a plain ``user``):

* ``user``: submit (not ``managed``), kill and retry own jobs, read the VO's jobs, tasks, DDM data
  (the catalog scope named after the VO, :func:`may_scope`).
* ``production``: a user who also submits, kills, retries and reprioritises the VO's ``managed`` jobs.
* ``pilot``: only the pilot service, only for the queues in its token's ``ailuro.queues``.
* ``factory``: only the factory service: its own workers (``factory_id`` = the token's ``sub``) and
  the statistics of its queues (``ailuro.queues``).
* ``admin``: everything. An admin whose VO is the configured admin VO (``AuthConfig.admin_vo``,
  ``admin`` by default: the VO of the embedded issuer's first admin token, ``/admin/admin``) acts
  on every VO; an admin of another VO (``/compass/admin`` from a VO's own issuer) is an admin of
  that VO only, so one VO's identity provider can never grant power over another VO.

Scopes: a token that carries compute scopes (``compute.create|read|modify|cancel``) may call only
the RPCs whose scope it has; a token with no compute scope at all gets its role's default, which is
every RPC its role allows (the scope then adds no restriction). Pilot and factory RPCs need
``compute.modify`` (reports, worker changes) or ``compute.read`` (statistics, worker lists), as the
embedded issuer's pilot and factory tokens carry.

Trusted-metadata mode (development, loopback only): the claimed ``ailuro-roles`` are believed like
a token's; a caller that claims no role at all gets :data:`DEV_DEFAULT_ROLES` and acts on every
VO's and every owner's jobs, which is how every client behaved before roles existed, but it is no
``admin`` (audit log, tokens, queue status and share weights need a claimed ``admin``). Claim
``ailuro-roles: user`` (the pilot and the factory claim ``pilot`` and ``factory``) to be restricted
as in token mode. Such an identity has no token, so no scope and no queue binding applies to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from dispatcher.identity import Identity

USER, PRODUCTION, PILOT, FACTORY, ADMIN = "user", "production", "pilot", "factory", "admin"
CREATE, READ, MODIFY, CANCEL = "compute.create", "compute.read", "compute.modify", "compute.cancel"

DEFAULT_VO = "default"
"""VO of a caller that names none (as ``SubmitJobs`` stores its jobs)."""
MANAGED_LABEL = "managed"
"""``prod_source_label`` of production jobs: submitted and acted on by the ``production`` role."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may call one RPC."""

    roles: frozenset[str]
    """Roles allowed to call it (any one suffices)."""
    scope: str
    """The compute scope it needs when the caller's token carries compute scopes."""

    def denial(self, identity: Identity) -> str | None:
        """Why ``identity`` may not call the method, or None when it may."""
        if self.roles.isdisjoint(identity.roles):
            have = ", ".join(identity.roles) or "none"
            return f"needs the {' or '.join(sorted(self.roles))} role (caller has {have})"
        principal = identity.principal
        if principal is not None and principal.scopes and self.scope not in principal.scopes:
            return f"needs scope {self.scope} (token has {' '.join(principal.scopes)})"
        return None


def _rule(roles: frozenset[str], scope: str) -> Rule:
    return Rule(roles=roles, scope=scope)


DEV_DEFAULT_ROLES = (FACTORY, PILOT, PRODUCTION, USER)
"""Roles of a trusted-metadata caller that claims none (see the module doc)."""

USERS = frozenset({USER, PRODUCTION, ADMIN})
PRODUCERS = frozenset({PRODUCTION, ADMIN})
PILOTS = frozenset({PILOT, ADMIN})
FACTORIES = frozenset({FACTORY, ADMIN})

_SUB = "/ailuro.v1.SubmissionService/"
_PIL = "/ailuro.v1.PilotService/"
_FAC = "/ailuro.v1.FactoryService/"
_DDM = "/ailuro.v1.DDMService/"
_TSK = "/ailuro.v1.TaskService/"
_ADM = "/ailuro.v1.AdminService/"
_BRK = "/ailuro.v1.BrokerageService/"
ADMINS = frozenset({ADMIN})

POLICY: Mapping[str, Rule] = {
    # --- jobs: users and production; resource checks (owner, VO, managed) in the services -------
    _SUB + "SubmitJobs": _rule(USERS, CREATE),
    _SUB + "KillJobs": _rule(USERS, CANCEL),
    _SUB + "RetryJobs": _rule(USERS, MODIFY),
    _SUB + "GetJobs": _rule(USERS, READ),
    _SUB + "ListJobs": _rule(USERS, READ),
    _SUB + "WatchJobs": _rule(USERS, READ),
    _SUB + "GetJobEvents": _rule(USERS, READ),
    _SUB + "ListQueues": _rule(USERS | FACTORIES, READ),
    _SUB + "GetJobLog": _rule(USERS, READ),
    _SUB + "DebugJob": _rule(USERS, READ),  # the owner or an admin of every VO (services/debug.py)
    # --- pilots: only these three, only for the queues of the token ----------------------------
    _PIL + "Connect": _rule(PILOTS, MODIFY),
    _PIL + "GetJob": _rule(PILOTS, MODIFY),
    _PIL + "UpdateJob": _rule(PILOTS, MODIFY),
    # --- factories: their own workers, the statistics of their queues --------------------------
    _FAC + "GetQueueStats": _rule(FACTORIES, READ),
    _FAC + "RegisterWorkers": _rule(FACTORIES, MODIFY),
    _FAC + "UpdateWorkers": _rule(FACTORIES, MODIFY),
    _FAC + "ReportQueueHealth": _rule(FACTORIES, MODIFY),
    _FAC + "ListWorkers": _rule(FACTORIES, READ),
    # only a factory token, for the queues it names (services/pilot_tokens.py): admins mint pilot
    # tokens with IssueToken, where the audit row says who asked
    _FAC + "IssuePilotTokens": _rule(frozenset({FACTORY}), MODIFY),
    # --- data management: the VO's catalog and requests ----------------------------------------
    _DDM + "ListStorageElements": _rule(USERS, READ),
    _DDM + "GetStorageElement": _rule(USERS, READ),
    _DDM + "CreateDataset": _rule(USERS, CREATE),
    _DDM + "ListDatasets": _rule(USERS, READ),
    _DDM + "GetDataset": _rule(USERS, READ),
    _DDM + "RegisterFiles": _rule(USERS, CREATE),
    _DDM + "ListReplicas": _rule(USERS, READ),
    _DDM + "RequestTransfers": _rule(USERS, CREATE),
    _DDM + "ListTransfers": _rule(USERS, READ),
    _DDM + "CancelTransfers": _rule(USERS, CANCEL),
    # --- production tasks (a task's jobs are managed unless its label says otherwise) ----------
    _TSK + "SubmitTask": _rule(USERS, CREATE),
    _TSK + "ListTasks": _rule(USERS, READ),
    _TSK + "GetTask": _rule(USERS, READ),
    _TSK + "RetryTask": _rule(USERS, MODIFY),
    _TSK + "AbortTask": _rule(USERS, CANCEL),
    # --- brokerage: queues and shares are shared by all VOs; changing them is an admin's -------
    _BRK + "SetQueueStatus": _rule(ADMINS, MODIFY),
    _BRK + "GetQueueStatusHistory": _rule(USERS | FACTORIES, READ),
    _BRK + "GetShares": _rule(USERS, READ),
    _BRK + "SetShareWeight": _rule(ADMINS, MODIFY),
    _BRK + "ExplainJob": _rule(USERS, READ),
    # --- administration: admins of every VO (the service checks ``all_vos`` too) ---------------
    _ADM + "ListAudit": _rule(ADMINS, READ),
    _ADM + "IssueToken": _rule(ADMINS, CREATE),
}
"""Every RPC → :class:`Rule`. Health checks and reflection are served without credentials and are
not listed (``interceptor.EXEMPT_PREFIXES``)."""


def method_denial(method: str, identity: Identity) -> str | None:
    """Why ``identity`` may not call ``method`` (a full gRPC path), or None when it may."""
    rule = POLICY.get(method)
    if rule is None:
        return "this method has no authorization rule; it is refused"
    return rule.denial(identity)


class Action(StrEnum):
    """What a caller wants to do to a resource."""

    READ = "read"
    """See it: get, list, watch, its events and log."""
    SUBMIT = "submit"
    """Create it (a job with its VO and label)."""
    KILL = "kill"
    RETRY = "retry"
    PRIORITY = "priority"
    """Change its priority."""
    SECRETS = "secrets"
    """See its secret environment values."""
    SERVE = "serve"
    """Serve a queue as a pilot (Connect, GetJob)."""
    WORKERS = "workers"
    """Register or change a factory's workers, list them."""
    QUEUE_STATS = "queue_stats"
    """Read a queue's factory statistics."""


@dataclass(frozen=True, kw_only=True)
class Resource:
    """What an action is about; fields that do not apply stay empty."""

    vo: str = ""
    """The VO it belongs to (jobs, tasks, DDM requests of them); empty: no VO."""
    owner: str = ""
    """Who created it (a job's or task's owner)."""
    label: str = ""
    """A job's ``prod_source_label`` (``managed``: production's)."""
    queue: str = ""
    """A queue (pilot service, factory statistics)."""
    factory: str = ""
    """A factory id (workers)."""


def vo_of(identity: Identity) -> str:
    """The VO a caller acts for (``default`` when it names none, as its jobs are stored)."""
    return identity.vo or DEFAULT_VO


def same_vo(identity: Identity, vo: str) -> bool:
    """Whether ``vo`` is the caller's VO, or the caller acts on every VO."""
    return identity.all_vos or (vo or DEFAULT_VO) == vo_of(identity)


def may_scope(identity: Identity, scope: str) -> bool:
    """Whether the caller may see and act on DDM catalog scope ``scope`` (its datasets, files,
    replicas and the requests on them). Rucio-like: a VO owns the scope named after it; a caller
    acting on every VO (an admin of the admin VO, the development default) owns every scope."""
    return identity.all_vos or scope == vo_of(identity)


def _acts_on_jobs(identity: Identity, resource: Resource) -> bool:
    """Kill, retry, priority: the owner; production for managed jobs; an admin of the VO (or of
    every VO, or the development default, both ``all_vos``)."""
    roles = identity.roles
    if ADMIN in roles or identity.all_vos:
        return True
    if resource.label == MANAGED_LABEL:
        return PRODUCTION in roles
    return resource.owner == identity.name and (USER in roles or PRODUCTION in roles)


def may(identity: Identity, action: Action, resource: Resource) -> bool:
    """Whether ``identity`` may do ``action`` to ``resource`` (pure; the method rule is checked already)."""
    roles = identity.roles
    if action is Action.SERVE:
        return ADMIN in roles or (PILOT in roles and _bound_to(identity, resource.queue))
    if action is Action.QUEUE_STATS:
        return ADMIN in roles or (FACTORY in roles and _bound_to(identity, resource.queue))
    if action is Action.WORKERS:
        return ADMIN in roles or (FACTORY in roles and resource.factory == identity.name)
    if not same_vo(identity, resource.vo):
        return False
    if action is Action.READ:
        return not USERS.isdisjoint(roles)
    if action is Action.SUBMIT:
        if resource.label == MANAGED_LABEL:
            return not PRODUCERS.isdisjoint(roles)
        return not USERS.isdisjoint(roles)
    if action is Action.SECRETS:
        return resource.owner == identity.name
    if action is Action.PRIORITY:
        return ADMIN in roles or identity.all_vos or (PRODUCTION in roles and resource.label == MANAGED_LABEL)
    return _acts_on_jobs(identity, resource)


def may_steer_task(identity: Identity, task: Resource) -> bool:
    """Whether ``identity`` may steer (retry, abort) a running task (pure).

    ``task`` carries the task's ``vo`` and ``owner``. Within the task's VO (or acting on every VO):
    its owner, an admin, or the production role of that very VO (production may steer any task of
    its VO, not only its own). An admin of another VO may not: VOs are isolated.
    """
    if not same_vo(identity, task.vo):
        return False
    if identity.name == task.owner or ADMIN in identity.roles:
        return True
    return PRODUCTION in identity.roles and (not task.vo or identity.vo == task.vo)


def _bound_to(identity: Identity, queue: str) -> bool:
    """A token names the queues it serves; a trusted-metadata identity has no token and no binding."""
    principal = identity.principal
    return principal is None or queue in principal.queues


_SECRET_WORDS = frozenset({"SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIALS", "PRIVATE"})
_WORD = re.compile(r"[^A-Z0-9]+")
HIDDEN_VALUE = "<hidden>"
"""What a secret environment value reads as for anyone but the owner and the pilot holding the job."""


def is_secret_name(name: str) -> bool:
    """Whether an environment variable is secret: one of its ``_``-separated words is SECRET,
    TOKEN, PASSWORD, PASSWD, KEY, CREDENTIALS or PRIVATE (``AWS_SECRET_ACCESS_KEY``,
    ``GITHUB_TOKEN``, ``DB_PASSWORD``), case-insensitively."""
    return not _SECRET_WORDS.isdisjoint(_WORD.split(name.upper()))
