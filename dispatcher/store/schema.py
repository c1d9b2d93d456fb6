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
)

metadata = MetaData()

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
    Column("errors", LargeBinary, nullable=True),  # serialized JobError list (one Job message)
    Column("lease_epoch", BigInteger, nullable=False, default=0),
    Column("lease_expires", Float, nullable=True),
    Column("kill_requested", Boolean, nullable=False, default=False),
    Column("kill_reason", Text, nullable=False, default=""),
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
