"""Pauses with owners and leases: T_JOB_PAUSE replaces T_AGENT.PAUSED_BY / PAUSED_SINCE; the
run log counts rows with NaN, infinite and out-of-range numbers.

One row per paused job and holding process (owner, host, pid, reason, the days it rebuilds, a
heartbeat and a lease), so that several owners can pause one job, each lifts only its own pause,
and a pause whose holder died expires instead of stopping the job for ever.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-23 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xrdagg.db.types import Count, Text, UtcDate

_ODD_NUMBER_COUNTS = ("rows_bad_nan", "rows_bad_infinite", "rows_bad_range")

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "t_job_pause",
        sa.Column("job_name", Text(64), nullable=False),
        sa.Column("owner", Text(128), nullable=False),
        sa.Column("host_name", Text(256), nullable=False),
        sa.Column("process_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("reason", Text(256), nullable=True),
        sa.Column("day_from", UtcDate(), nullable=True),
        sa.Column("day_to", UtcDate(), nullable=True),
        sa.Column("paused_since", UtcDate(), nullable=False),
        sa.Column("heartbeat_at", UtcDate(), nullable=False),
        sa.Column("lease_seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "job_name", "owner", "host_name", "process_id", name=op.f("pk_t_job_pause")
        ),
    )
    # A pause left by the old flag has no holder to renew it: it is dropped with the columns
    # (the rebuild that set it is either finished or dead; `recompute --resume` pauses again).
    with op.batch_alter_table("t_agent") as batch:
        batch.drop_column("paused_since")
        batch.drop_column("paused_by")
    with op.batch_alter_table("t_job_run") as batch:
        for name in _ODD_NUMBER_COUNTS:
            batch.add_column(sa.Column(name, Count(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("t_job_run") as batch:
        for name in _ODD_NUMBER_COUNTS:
            batch.drop_column(name)
    with op.batch_alter_table("t_agent") as batch:
        batch.add_column(sa.Column("paused_by", Text(256), nullable=True))
        batch.add_column(sa.Column("paused_since", UtcDate(), nullable=True))
    op.drop_table("t_job_pause")
