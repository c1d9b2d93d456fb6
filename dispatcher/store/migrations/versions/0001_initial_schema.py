"""Initial schema: jobs, files, job_events, submit_requests, pilots, workers, pilot_commands.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("file_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("panda_id", sa.BigInteger(), nullable=False),
        sa.Column("lfn", sa.String(length=255), nullable=False),
        sa.Column("guid", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("dataset", sa.String(length=255), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("adler32", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=255), nullable=False),
        sa.Column("source_se", sa.String(length=255), nullable=False),
        sa.Column("destination_se", sa.String(length=255), nullable=False),
        sa.Column("pfn", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("file_id"),
        sa.UniqueConstraint("panda_id", "lfn", name="uq_files_job_lfn"),
    )
    op.create_table(
        "job_events",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("panda_id", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=False),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempt_nr", sa.Integer(), nullable=False),
        sa.Column("lease_epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index("ix_job_events_job", ["panda_id", "event_id"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("panda_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_name", sa.String(length=255), nullable=False),
        sa.Column("job_definition_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("vo", sa.String(length=255), nullable=False),
        sa.Column("prod_source_label", sa.String(length=255), nullable=False),
        sa.Column("transformation", sa.Text(), nullable=False),
        sa.Column("job_parameters", sa.Text(), nullable=False),
        sa.Column("computing_site", sa.String(length=255), nullable=False),
        sa.Column("current_priority", sa.Integer(), nullable=False),
        sa.Column("max_attempt", sa.Integer(), nullable=False),
        sa.Column("attempt_nr", sa.Integer(), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("max_walltime_s", sa.Integer(), nullable=False),
        sa.Column("destination_dblock", sa.String(length=255), nullable=False),
        sa.Column("destination_se", sa.String(length=255), nullable=False),
        sa.Column("processing_type", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("creation_time", sa.Float(), nullable=False),
        sa.Column("modification_time", sa.Float(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("sent_time", sa.Float(), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("pilot_id", sa.String(length=255), nullable=False),
        sa.Column("batch_id", sa.String(length=255), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("cpu_time_s", sa.Float(), nullable=False),
        sa.Column("max_rss_kb", sa.BigInteger(), nullable=False),
        sa.Column("walltime_s", sa.Float(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=False),
        sa.Column("errors", sa.LargeBinary(), nullable=True),
        sa.Column("lease_epoch", sa.BigInteger(), nullable=False),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.Column("kill_requested", sa.Boolean(), nullable=False),
        sa.Column("kill_reason", sa.Text(), nullable=False),
        sa.Column("brokerage_reason", sa.Text(), nullable=False),
        sa.Column("parent_panda_id", sa.BigInteger(), nullable=False),
        sa.Column("last_final_epoch", sa.BigInteger(), nullable=False),
        sa.Column("last_final_status", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("panda_id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_claim",
            ["computing_site", "status", sa.text("current_priority DESC"), "panda_id"],
            unique=False,
        )
        batch_op.create_index("ix_jobs_label", ["prod_source_label", "panda_id"], unique=False)
        batch_op.create_index("ix_jobs_mtime", ["modification_time"], unique=False)
        batch_op.create_index("ix_jobs_lease", ["status", "lease_expires"], unique=False)
        batch_op.create_index("ix_jobs_sent", ["status", "sent_time"], unique=False)
        batch_op.create_index("ix_jobs_owner", ["owner", "panda_id"], unique=False)
        batch_op.create_index("ix_jobs_pilot", ["pilot_id"], unique=False)
        batch_op.create_index("ix_jobs_status_mtime", ["status", "modification_time"], unique=False)
        batch_op.create_index("ix_jobs_task", ["task_id", "panda_id"], unique=False)

    op.create_table(
        "pilot_commands",
        sa.Column(
            "command_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("pilot_id", sa.String(length=255), nullable=False),
        sa.Column("panda_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
    )
    with op.batch_alter_table("pilot_commands", schema=None) as batch_op:
        batch_op.create_index("ix_pilot_commands_pending", ["delivered", "pilot_id"], unique=False)

    op.create_table(
        "pilots",
        sa.Column("pilot_id", sa.String(length=255), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("batch_id", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("dispatcher_id", sa.String(length=64), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pilot_id"),
    )
    with op.batch_alter_table("pilots", schema=None) as batch_op:
        batch_op.create_index("ix_pilots_dispatcher", ["dispatcher_id", "connected"], unique=False)
        batch_op.create_index("ix_pilots_queue", ["queue", "connected"], unique=False)

    op.create_table(
        "submit_requests",
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("panda_ids", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "request_id", name="pk_submit_requests"),
    )
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("backend", sa.String(length=255), nullable=False),
        sa.Column("factory_id", sa.String(length=255), nullable=False),
        sa.Column("batch_id", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("diag", sa.Text(), nullable=False),
        sa.Column("submit_time", sa.Float(), nullable=False),
        sa.Column("update_time", sa.Float(), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id"),
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index("ix_workers_factory", ["factory_id", "state"], unique=False)
        batch_op.create_index("ix_workers_queue", ["queue", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index("ix_workers_queue")
        batch_op.drop_index("ix_workers_factory")

    op.drop_table("workers")
    op.drop_table("submit_requests")
    with op.batch_alter_table("pilots", schema=None) as batch_op:
        batch_op.drop_index("ix_pilots_queue")
        batch_op.drop_index("ix_pilots_dispatcher")

    op.drop_table("pilots")
    with op.batch_alter_table("pilot_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_pilot_commands_pending")

    op.drop_table("pilot_commands")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_task")
        batch_op.drop_index("ix_jobs_status_mtime")
        batch_op.drop_index("ix_jobs_pilot")
        batch_op.drop_index("ix_jobs_owner")
        batch_op.drop_index("ix_jobs_mtime")
        batch_op.drop_index("ix_jobs_lease")
        batch_op.drop_index("ix_jobs_sent")
        batch_op.drop_index("ix_jobs_label")
        batch_op.drop_index("ix_jobs_claim")

    op.drop_table("jobs")
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index("ix_job_events_job")

    op.drop_table("job_events")
    op.drop_table("files")
