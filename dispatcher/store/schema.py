"""The database schema (SQLAlchemy Core tables). Alembic migrations in ``migrations/`` create it.

Times are UTC seconds since the epoch stored as DOUBLE PRECISION: lease arithmetic and range
filters then read the same on SQLite and PostgreSQL and cost no conversion on the hot path.
A job's submitted definition is also kept serialized (``spec``) so an assignment is one column
read plus a few overrides rather than a rebuild from dozens of columns.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

PRINCIPAL_CHARS = 520
"""Room for ``<len>:<issuer> <user>`` (``hub.pilot_principal``): each part is at most 255 characters."""

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); PostgreSQL gets BIGINT identity.
IdType = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("panda_id", IdType, primary_key=True, autoincrement=True),
    Column("job_name", String(255), nullable=False, default=""),
    Column("job_definition_id", BigInteger, nullable=False, default=0),
    Column("task_id", BigInteger, nullable=False, default=0),
    Column("vo", String(255), nullable=False),
    Column("prod_source_label", String(255), nullable=False),
    Column("transformation", Text, nullable=False),
    Column("job_parameters", Text, nullable=False, default=""),
    Column("computing_site", String(255), nullable=False),
    Column("current_priority", Integer, nullable=False, default=0),
    Column("max_attempt", Integer, nullable=False, default=3),
    Column("attempt_nr", Integer, nullable=False, default=1),
    Column("cores", Integer, nullable=False, default=1),
    Column("memory_mb", Integer, nullable=False, default=0),
    Column("max_walltime_s", Integer, nullable=False, default=0),
    Column("disk_mb", Integer, nullable=False, default=0),  # 0011: scratch disk the job needs
    Column("tags", String(255), nullable=False, default=""),  # 0011: required worker tags, "a,b"
    Column("destination_dblock", String(255), nullable=False, default=""),
    Column("destination_se", String(255), nullable=False, default=""),
    Column("processing_type", String(255), nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("creation_time", Float, nullable=False),
    Column("modification_time", Float, nullable=False),
    Column("start_time", Float, nullable=True),
    Column("end_time", Float, nullable=True),
    Column("sent_time", Float, nullable=True),
    Column("owner", String(255), nullable=False),
    Column("pilot_id", String(255), nullable=False, default=""),
    Column("batch_id", String(255), nullable=False, default=""),
    Column("node", String(255), nullable=False, default=""),
    Column("cpu_time_s", Float, nullable=False, default=0.0),
    Column("max_rss_kb", BigInteger, nullable=False, default=0),
    Column("walltime_s", Float, nullable=False, default=0.0),
    Column("exit_code", Integer, nullable=False, default=0),
    Column("lease_epoch", BigInteger, nullable=False, default=0),
    Column("lease_expires", Float, nullable=True),
    Column("kill_requested", Boolean, nullable=False, default=False),
    Column("kill_reason", Text, nullable=False, default=""),
    # the kill command went down the pilot's stream: a later "finished" no longer wins (migration 0014)
    Column("kill_delivered", Boolean, nullable=False, default=False, server_default=false()),
    Column("brokerage_reason", Text, nullable=False, default=""),
    Column("parent_panda_id", BigInteger, nullable=False, default=0),
    Column("last_final_epoch", BigInteger, nullable=False, default=0),
    Column("last_final_status", String(16), nullable=False, default=""),
    Column("spec", LargeBinary, nullable=False),
    Index("ix_jobs_status_mtime", "status", "modification_time"),
    Index("ix_jobs_owner", "owner", "panda_id"),
    Index("ix_jobs_task", "task_id", "panda_id"),
    Index("ix_jobs_pilot", "pilot_id"),
    Index("ix_jobs_label", "prod_source_label", "panda_id"),
    Index("ix_jobs_mtime", "modification_time"),
    Index("ix_jobs_lease", "status", "lease_expires"),
    Index("ix_jobs_sent", "status", "sent_time"),
)

# Claims read "activated jobs of this queue by priority (high first), then age (old first)":
# the mixed sort order needs the DESC column in the index for a plain index scan.
Index("ix_jobs_claim", jobs.c.computing_site, jobs.c.status, jobs.c.current_priority.desc(), jobs.c.panda_id)
# 0011: the claim also reads "activated jobs of this queue in one share leaf" (vo, label, owner).
Index(
    "ix_jobs_claim_leaf",
    jobs.c.computing_site,
    jobs.c.status,
    jobs.c.vo,
    jobs.c.prod_source_label,
    jobs.c.owner,
    jobs.c.current_priority.desc(),
    jobs.c.panda_id,
)

files = Table(
    "files",
    metadata,
    Column("file_id", IdType, primary_key=True, autoincrement=True),
    Column("panda_id", BigInteger, nullable=False),
    Column("lfn", String(255), nullable=False),
    Column("guid", String(255), nullable=False),
    Column("type", String(8), nullable=False),  # input | output | log
    Column("dataset", String(255), nullable=False, default=""),
    Column("scope", String(255), nullable=False, default=""),
    Column("size", BigInteger, nullable=False, default=0),
    Column("adler32", String(8), nullable=False, default=""),
    Column("status", String(255), nullable=False, default=""),
    Column("source_se", String(255), nullable=False, default=""),
    Column("destination_se", String(255), nullable=False, default=""),
    Column("pfn", Text, nullable=False, default=""),
    UniqueConstraint("panda_id", "lfn", name="uq_files_job_lfn"),
)

job_errors = Table(
    "job_errors",
    metadata,
    Column("panda_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),  # order within the job's errors, from 0
    Column("attempt_nr", Integer, nullable=False),  # the attempt they were reported for
    Column("component", Integer, nullable=False),  # ailuro.v1.ErrorComponent number
    Column("code", Integer, nullable=False),
    Column("diag", Text, nullable=False, default=""),
    PrimaryKeyConstraint("panda_id", "seq", name="pk_job_errors"),
    Index("ix_job_errors_code", "component", "code"),
)
"""The errors a job carries, those of its last failed attempt (migration 0009; ``store/errors.py``)."""

job_events = Table(
    "job_events",
    metadata,
    Column("event_id", IdType, primary_key=True, autoincrement=True),
    Column("panda_id", BigInteger, nullable=False),
    Column("time", Float, nullable=False),
    Column("from_status", String(16), nullable=False),  # "" for creation
    Column("to_status", String(16), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("attempt_nr", Integer, nullable=False),
    Column("lease_epoch", BigInteger, nullable=False),
    Index("ix_job_events_job", "panda_id", "event_id"),
)

submit_requests = Table(
    "submit_requests",
    metadata,
    Column("owner", String(255), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("panda_ids", Text, nullable=False),  # comma-separated, in request order
    Column("created", Float, nullable=False),
    PrimaryKeyConstraint("owner", "request_id", name="pk_submit_requests"),
)

pilots = Table(
    "pilots",
    metadata,
    Column("pilot_id", String(255), primary_key=True),
    Column("queue", String(255), nullable=False),
    Column("node", String(255), nullable=False, default=""),
    Column("batch_id", String(255), nullable=False, default=""),
    Column("version", String(255), nullable=False, default=""),
    Column("dispatcher_id", String(64), nullable=False, default=""),
    Column("connected", Boolean, nullable=False, default=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("cores", Integer, nullable=False, default=0),  # 0011: what the pilot advertised (0: unknown)
    Column("memory_mb", Integer, nullable=False, default=0),
    Column("disk_mb", Integer, nullable=False, default=0),
    Column("tags", String(255), nullable=False, default=""),
    # who may present this pilot id: "<len>:<issuer> <user>" of its first caller (migration 0014)
    Column("principal", String(PRINCIPAL_CHARS), nullable=False, default="", server_default=""),
    Index("ix_pilots_queue", "queue", "connected"),
    Index("ix_pilots_dispatcher", "dispatcher_id", "connected"),
)

workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(255), primary_key=True),
    Column("queue", String(255), nullable=False),
    Column("backend", String(255), nullable=False, default=""),
    Column("factory_id", String(255), nullable=False, default=""),
    Column("batch_id", String(255), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("diag", Text, nullable=False, default=""),
    Column("submit_time", Float, nullable=False),
    Column("update_time", Float, nullable=False),
    Column("log_path", Text, nullable=False, default=""),
    Index("ix_workers_queue", "queue", "state"),
    Index("ix_workers_factory", "factory_id", "state"),
)

factories = Table(
    "factories",
    metadata,
    Column("factory_id", String(255), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("first_seen", Float, nullable=False),
)
"""Each factory id's secret (hashed), fixed at its first registration: only it may change its workers."""

factory_queues = Table(
    "factory_queues",
    metadata,
    Column("factory_id", String(255), nullable=False),
    Column("queue", String(255), nullable=False),
    Column("start_failures", Integer, nullable=False, default=0),
    Column("flagged", Boolean, nullable=False, default=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("backoff_until", Float, nullable=False, default=0.0),
    Column("updated", Float, nullable=False),
    PrimaryKeyConstraint("factory_id", "queue", name="pk_factory_queues"),
)
"""Per factory and queue: pilots that failed at start in a row, and the factory's backoff."""

pilot_commands = Table(
    "pilot_commands",
    metadata,
    Column("command_id", IdType, primary_key=True, autoincrement=True),
    Column("pilot_id", String(255), nullable=False),
    Column("panda_id", BigInteger, nullable=False),
    Column("type", String(16), nullable=False),  # kill | debug
    Column("reason", Text, nullable=False, default=""),
    Column("created", Float, nullable=False),
    Column("delivered", Boolean, nullable=False, default=False),
    Index("ix_pilot_commands_pending", "delivered", "pilot_id"),
)

pilot_debug_reports = Table(
    "pilot_debug_reports",
    metadata,
    Column("command_id", BigInteger, primary_key=True, autoincrement=False),
    Column("panda_id", BigInteger, nullable=False),
    Column("pilot_id", String(255), nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("created", Float, nullable=False),
)
"""Answers to DEBUG commands (migration 0013), read by the DebugJob call that sent the command
(possibly in another dispatcher process); deleted with their command (``command_retention_s``)."""

# --- DDM catalog (migration 0003): Rucio-like scopes/datasets/files/replicas, transfer and
# staging requests, and the tasks that chain process -> merge -> archive. ---------------------

ddm_scopes = Table(
    "ddm_scopes",
    metadata,
    Column("scope", String(255), primary_key=True),
    Column("created", Float, nullable=False),
)

ddm_datasets = Table(
    "ddm_datasets",
    metadata,
    Column("dataset_id", IdType, primary_key=True, autoincrement=True),
    Column("scope", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created", Float, nullable=False),
    UniqueConstraint("scope", "name", name="uq_ddm_datasets_name"),
)

ddm_files = Table(
    "ddm_files",
    metadata,
    Column("file_id", IdType, primary_key=True, autoincrement=True),
    Column("scope", String(255), nullable=False),
    Column("lfn", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("adler32", String(8), nullable=False),
    Column("guid", String(255), nullable=False),
    Column("created", Float, nullable=False),
    UniqueConstraint("scope", "lfn", name="uq_ddm_files_name"),
)

ddm_dataset_files = Table(
    "ddm_dataset_files",
    metadata,
    Column("dataset_id", BigInteger, nullable=False),
    Column("file_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("dataset_id", "file_id", name="pk_ddm_dataset_files"),
)

ddm_replicas = Table(
    "ddm_replicas",
    metadata,
    Column("replica_id", IdType, primary_key=True, autoincrement=True),
    Column("file_id", BigInteger, nullable=False),
    Column("se", String(255), nullable=False),
    # copying: a transfer is writing it; unverified: written, checksum not yet compared;
    # available: checksum matched the catalog; bad: mismatch or lost (a transfer may repair it)
    Column("state", String(16), nullable=False),
    Column("pfn", Text, nullable=False, default=""),
    Column("online_until", Float, nullable=True),  # tape: staged (readable) until then
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    UniqueConstraint("file_id", "se", name="uq_ddm_replicas_file_se"),
    Index("ix_ddm_replicas_se", "se", "state"),
)

ddm_requests = Table(
    "ddm_requests",
    metadata,
    Column("request_id", IdType, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # transfer | stage | verify
    Column("file_id", BigInteger, nullable=False),
    Column("source_se", String(255), nullable=False, default=""),
    Column("dest_se", String(255), nullable=False),
    Column("state", String(16), nullable=False),  # queued | active | done | failed | cancelled
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=5),
    Column("next_attempt", Float, nullable=False),
    Column("lease_owner", String(255), nullable=False, default=""),
    Column("lease_expires", Float, nullable=True),
    Column("last_error", Text, nullable=False, default=""),
    Column("error_code", Integer, nullable=False, default=0),
    Column("panda_id", BigInteger, nullable=False, default=0),  # the job waiting for it (0: none)
    Column("task_id", BigInteger, nullable=False, default=0),
    Column("activity", String(64), nullable=False, default=""),  # e.g. "stage-in", "archive"
    # stage requests: the storage's bring-online request id and when it was made (migration 0015)
    Column("external_id", String(255), nullable=False, default="", server_default=""),
    Column("external_since", Float, nullable=True),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Index("ix_ddm_requests_claim", "state", "next_attempt"),
    Index("ix_ddm_requests_file", "file_id", "dest_se", "state"),
    Index("ix_ddm_requests_job", "panda_id"),
)

ddm_job_links = Table(
    "ddm_job_links",
    metadata,
    Column("panda_id", BigInteger, primary_key=True),
    Column("input_se", String(255), nullable=False, default=""),  # where the pilot reads inputs
    Column("output_se", String(255), nullable=False, default=""),  # where outputs must end up
)
"""Jobs whose data the DDM manages (inputs from the catalog, outputs registered and verified)."""

ddm_tasks = Table(
    "ddm_tasks",
    metadata,
    Column("task_id", IdType, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("vo", String(255), nullable=False),
    Column("state", String(16), nullable=False),  # submitted | processing | merging | archiving | done | failed
    Column("spec", Text, nullable=False),  # the task file, as JSON
    Column("diag", Text, nullable=False, default=""),
    Column("merge_panda_id", BigInteger, nullable=False, default=0),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Index("ix_ddm_tasks_state", "state"),
)

# Monitor indexes (migration 0002): the plots and metrics read events by time, the pilots and
# workers pages read the most recently seen rows.
Index("ix_job_events_time", job_events.c.time)
Index("ix_pilots_last_seen", pilots.c.last_seen)
Index("ix_workers_update", workers.c.update_time)

# --- Job counters (migration 0004), maintained by ``dispatcher/store/counters.py`` on every job
# insert and state change, so the monitor counts jobs by summing a few rows. ------------------

job_counts = Table(
    "job_counts",
    metadata,
    # computingsite | prodsourcelabel | produsername | transformation | taskid (stock counts),
    # or "transition" (flow counts: value = target state, status = '')
    Column("facet", String(16), nullable=False),
    Column("width", Integer, nullable=False),  # bucket width in hours; 0: jobs not final yet
    Column("bucket", BigInteger, nullable=False),  # first epoch hour of the bucket (0 when width is 0)
    Column("value", Text, nullable=False),  # Text: transformation is unbounded
    Column("status", String(16), nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("last", Float, nullable=False),  # time of the latest change counted in this row
    # the counted jobs' VO (migration 0016), so a VO member's pages sum their VOs' rows; '' for flows
    Column("vo", String(255), nullable=False, server_default=""),
    PrimaryKeyConstraint("facet", "width", "bucket", "value", "status", "vo", name="pk_job_counts"),
    # one value's rows of a window (the tasks of one /tasks/ page), migration 0017
    Index("ix_job_counts_value", "facet", "value", "width", "bucket"),
)

job_error_counts = Table(
    "job_error_counts",
    metadata,
    Column("facet", String(16), nullable=False),  # computingsite | produsername
    Column("width", Integer, nullable=False),  # 1 (hour) or 24 (day) in which the jobs became final
    Column("bucket", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # the final state (failed, cancelled, ...)
    Column("component", Integer, nullable=False),  # ErrorComponent number (0: no error recorded)
    Column("code", Integer, nullable=False),
    Column("value", Text, nullable=False),  # Text: transformation is unbounded
    Column("n", BigInteger, nullable=False),
    Column("example", BigInteger, nullable=False),  # the newest panda_id counted here
    Column("vo", String(255), nullable=False, server_default=""),  # the counted jobs' VO (migration 0016)
    PrimaryKeyConstraint(
        "facet", "width", "bucket", "status", "component", "code", "value", "vo", name="pk_job_error_counts"
    ),
)

# --- Pending counter deltas (migration 0005): writers append, the dispatcher's folder moves them
# into job_counts / job_error_counts about once a second. Append-only, so concurrent transactions
# never wait for each other on a shared counter row; readers add the not-yet-folded rows. ------

job_count_deltas = Table(
    "job_count_deltas",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("facet", String(16), nullable=False),
    Column("width", Integer, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("value", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("last", Float, nullable=False),
    Column("vo", String(255), nullable=False, server_default=""),
)

# --- Per-task summary of the task counters (migration 0017), kept by the same fold: the monitor's
# /tasks/ ranks tasks by one index range here instead of summing every task's counter rows. -----

task_summaries = Table(
    "task_summaries",
    metadata,
    Column("task_id", BigInteger, nullable=False),
    Column("vo", String(255), nullable=False),
    Column("active", BigInteger, nullable=False),  # its jobs not final yet (width-0 taskid rows summed)
    # latest change counted in its width-0 rows that still hold jobs (0 when none)
    Column("active_last", Float, nullable=False),
    Column("final_last", Float, nullable=False),  # latest time one of its jobs became final (0: none)
    Column("last", Float, nullable=False),  # the larger of the two: its latest change
    PrimaryKeyConstraint("task_id", "vo", name="pk_task_summaries"),
    Index("ix_task_summaries_last", "last", "task_id"),
    Index("ix_task_summaries_vo_last", "vo", "last", "task_id"),
)

job_error_count_deltas = Table(
    "job_error_count_deltas",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("facet", String(16), nullable=False),
    Column("width", Integer, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("component", Integer, nullable=False),
    Column("code", Integer, nullable=False),
    Column("value", Text, nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("example", BigInteger, nullable=False),
    Column("vo", String(255), nullable=False, server_default=""),
)

# Monitor window indexes (migration 0006): owner-filtered views and ``sort=created`` read the
# window (non-final jobs + jobs final since T) as index ranges, not a scan of ``jobs``.
_ACTIVE_JOB_STATES = jobs.c.status.in_(
    ["defined", "assigned", "activated", "sent", "starting", "running", "holding", "transferring"]
)
Index("ix_jobs_owner_window", jobs.c.owner, jobs.c.status, jobs.c.modification_time)
# The monitor's VO visibility (migration 0012): a viewer's window inside their VOs as index ranges.
Index("ix_jobs_vo_window", jobs.c.vo, jobs.c.status, jobs.c.modification_time)
Index("ix_jobs_final_created", jobs.c.status, jobs.c.modification_time, jobs.c.creation_time, jobs.c.panda_id)
Index(
    "ix_jobs_active_created",
    jobs.c.creation_time,
    jobs.c.panda_id,
    postgresql_where=_ACTIVE_JOB_STATES,
    sqlite_where=_ACTIVE_JOB_STATES,
)

# Monitor data management indexes (migration 0007): the transfers page reads each request state's
# window newest first and counts by state and kind from one index; a task's requests by task id;
# DDM tasks that ended in the window by their last change.
Index(
    "ix_ddm_requests_window",
    ddm_requests.c.state,
    ddm_requests.c.updated,
    ddm_requests.c.kind,
    ddm_requests.c.error_code,
)
Index("ix_ddm_requests_task", ddm_requests.c.task_id, ddm_requests.c.state)
Index("ix_ddm_tasks_updated", ddm_tasks.c.updated)

# --- Audit log (migration 0010): who did what, written in the transaction of the action itself,
# so an action and its record commit or roll back together (see ``store/audit.py``). ------------

audit = Table(
    "audit",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("actor", String(255), nullable=False),  # the authenticated name (token sub, mapped DN user)
    Column("vo", String(255), nullable=False),
    Column("action", String(64), nullable=False),  # jobs.submit, jobs.kill, token.issue ... (AUDIT_ACTIONS)
    Column("target", Text, nullable=False),  # what it acted on, bounded (ids, a user, a queue)
    Column("detail", Text, nullable=False),  # a bounded JSON object with the rest
)
Index("ix_audit_time", audit.c.time, audit.c.id)
Index("ix_audit_actor", audit.c.actor, audit.c.id)
Index("ix_audit_action", audit.c.action, audit.c.id)


# --- brokerage (0011): queue status with its history, live share weights, decayed share usage ---

queue_status = Table(
    "queue_status",
    metadata,
    Column("queue", String(255), primary_key=True),
    Column("status", String(16), nullable=False),  # online | offline | test | brokeroff
    Column("reason", Text, nullable=False, default=""),
    Column("changed_by", String(255), nullable=False),
    Column("changed_at", Float, nullable=False),
)
"""A queue's current status; a queue without a row is online."""

queue_status_history = Table(
    "queue_status_history",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("queue", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("changed_by", String(255), nullable=False),
    Column("changed_at", Float, nullable=False),
    Index("ix_queue_status_history", "queue", "id"),
)
"""Every status change: who, when, why."""

share_weights = Table(
    "share_weights",
    metadata,
    Column("path", String(255), primary_key=True),  # vo | vo/group | vo/group/user
    Column("weight", Float, nullable=False),
    Column("changed_by", String(255), nullable=False),
    Column("changed_at", Float, nullable=False),
)
"""Share weights set by admins at run time; they override the queue file's."""

share_usage = Table(
    "share_usage",
    metadata,
    Column("vo", String(255), nullable=False),
    Column("grp", String(255), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("usage", Float, nullable=False),  # core-seconds as of ``updated`` (decays on read)
    Column("updated", Float, nullable=False),
    PrimaryKeyConstraint("vo", "grp", "owner", name="pk_share_usage"),
)
"""Decayed usage per share leaf."""
