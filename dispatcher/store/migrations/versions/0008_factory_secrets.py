"""Factory ownership and queue health: ``factories`` (a hashed secret per factory id) and
``factory_queues`` (each factory's pilot start-failure streak and backoff per queue).

Until real identities exist, a factory proves it owns its workers with a secret it keeps in a
0600 file; the first registration under a factory id fixes the secret's hash.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "factories",
        sa.Column("factory_id", sa.String(length=255), primary_key=True),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
    )
    op.create_table(
        "factory_queues",
        sa.Column("factory_id", sa.String(length=255), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("start_failures", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("backoff_until", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("factory_id", "queue", name="pk_factory_queues"),
    )


def downgrade() -> None:
    op.drop_table("factory_queues")
    op.drop_table("factories")
