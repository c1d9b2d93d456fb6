"""DDM catalog: scopes, datasets, files, replicas, transfer/staging/verify requests, job links, tasks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ddm_dataset_files",
        sa.Column("dataset_id", sa.BigInteger(), nullable=False),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "file_id", name="pk_ddm_dataset_files"),
    )
    op.create_table(
        "ddm_datasets",
        sa.Column(
            "dataset_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id"),
        sa.UniqueConstraint("scope", "name", name="uq_ddm_datasets_name"),
    )
    op.create_table(
        "ddm_files",
        sa.Column("file_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("lfn", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("adler32", sa.String(length=8), nullable=False),
        sa.Column("guid", sa.String(length=255), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("file_id"),
        sa.UniqueConstraint("scope", "lfn", name="uq_ddm_files_name"),
    )
    op.create_table(
        "ddm_job_links",
        sa.Column("panda_id", sa.BigInteger(), nullable=False),
        sa.Column("input_se", sa.String(length=255), nullable=False),
        sa.Column("output_se", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("panda_id"),
    )
    op.create_table(
        "ddm_replicas",
        sa.Column(
            "replica_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("se", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("pfn", sa.Text(), nullable=False),
        sa.Column("online_until", sa.Float(), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("replica_id"),
        sa.UniqueConstraint("file_id", "se", name="uq_ddm_replicas_file_se"),
    )
    op.create_index("ix_ddm_replicas_se", "ddm_replicas", ["se", "state"], unique=False)
    op.create_table(
        "ddm_requests",
        sa.Column(
            "request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("source_se", sa.String(length=255), nullable=False),
        sa.Column("dest_se", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=False),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=False),
        sa.Column("panda_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("activity", sa.String(length=64), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_ddm_requests_claim", "ddm_requests", ["state", "next_attempt"], unique=False)
    op.create_index("ix_ddm_requests_file", "ddm_requests", ["file_id", "dest_se", "state"], unique=False)
    op.create_index("ix_ddm_requests_job", "ddm_requests", ["panda_id"], unique=False)
    op.create_table(
        "ddm_scopes",
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "ddm_tasks",
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("vo", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("diag", sa.Text(), nullable=False),
        sa.Column("merge_panda_id", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_ddm_tasks_state", "ddm_tasks", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ddm_tasks_state", table_name="ddm_tasks")
    op.drop_table("ddm_tasks")
    op.drop_table("ddm_scopes")
    op.drop_index("ix_ddm_requests_job", table_name="ddm_requests")
    op.drop_index("ix_ddm_requests_file", table_name="ddm_requests")
    op.drop_index("ix_ddm_requests_claim", table_name="ddm_requests")
    op.drop_table("ddm_requests")
    op.drop_index("ix_ddm_replicas_se", table_name="ddm_replicas")
    op.drop_table("ddm_replicas")
    op.drop_table("ddm_job_links")
    op.drop_table("ddm_files")
    op.drop_table("ddm_datasets")
    op.drop_table("ddm_dataset_files")
