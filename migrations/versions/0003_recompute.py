"""Recompute: ledger tables, and a pause flag on T_AGENT.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 23:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xrdagg.db.types import Count, Number, Text, UtcDate

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "t_recompute",
        sa.Column(
            "recompute_id",
            Count().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("created_at", UtcDate(), nullable=False),
        sa.Column("host_name", Text(256), nullable=False),
        sa.Column("day_from", UtcDate(), nullable=False),
        sa.Column("day_to", UtcDate(), nullable=False),
        sa.Column("jobs", Text(1000), nullable=False),
        sa.Column("state", Text(16), nullable=False),
        sa.Column("finished_at", UtcDate(), nullable=True),
        sa.PrimaryKeyConstraint("recompute_id", name=op.f("pk_t_recompute")),
    )
    op.create_table(
        "t_recompute_chunk",
        sa.Column("recompute_id", Count(), nullable=False),
        sa.Column("job_name", Text(64), nullable=False),
        sa.Column("chunk_start", UtcDate(), nullable=False),
        sa.Column("chunk_end", UtcDate(), nullable=False),
        sa.Column("state", Text(16), nullable=False),
        sa.Column("rows_read", Count(), nullable=True),
        sa.Column("duration_s", Number(), nullable=True),
        sa.Column("finished_at", UtcDate(), nullable=True),
        sa.PrimaryKeyConstraint(
            "recompute_id", "job_name", "chunk_start", name=op.f("pk_t_recompute_chunk")
        ),
    )
    with op.batch_alter_table("t_agent") as batch:
        batch.add_column(sa.Column("paused_by", Text(256), nullable=True))
        batch.add_column(sa.Column("paused_since", UtcDate(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("t_agent") as batch:
        batch.drop_column("paused_since")
        batch.drop_column("paused_by")
    op.drop_table("t_recompute_chunk")
    op.drop_table("t_recompute")
