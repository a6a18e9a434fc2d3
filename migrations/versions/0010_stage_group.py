"""Oracle: the staging table holds groups of rows, not rows (`t_stage_group` replaces
`t_stage_norm`).

Each rebuild now stages its raw rows grouped by every statistics key, with the partial sums the
statistics need (`xrdagg.jobs.stage`). As before, PostgreSQL and SQLite create the table per
session; Oracle's global temporary table is part of the schema, its rows private to each session
and gone at every commit.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xrdagg.db.types import Number, RawNumber, Text

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _is_oracle() -> bool:
    return op.get_context().dialect.name == "oracle"


_SUMS = (
    "read_b", "write_b",
    "read_first", "read_mid", "read_last",
    "write_first", "write_mid", "write_last",
    "active_first", "active_last",
    "file_size", "read_single_bytes", "read_single_ops",
    "read_vector_bytes", "read_vector_ops", "write_ops",
)  # fmt: skip


def _sum(name: str) -> sa.Column:
    return sa.Column(name, Number(), nullable=False)


def upgrade() -> None:
    if not _is_oracle():
        return
    op.drop_table("t_stage_norm")
    op.create_table(
        "t_stage_group",
        sa.Column("start_bin", sa.BigInteger(), nullable=False),
        sa.Column("end_bin", sa.BigInteger(), nullable=False),
        sa.Column("insert_bin", sa.BigInteger(), nullable=False),
        # NULL while a side's (host, domain) pair is not cached yet: staged again once it is.
        sa.Column("src_site", Text(256)),
        sa.Column("src_domain", Text(255)),
        sa.Column("dst_site", Text(256)),
        sa.Column("dst_domain", Text(255)),
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("user_dn", Text(512), nullable=False),
        sa.Column("fraction_read", sa.SmallInteger(), nullable=False),
        sa.Column("n_rows", sa.BigInteger(), nullable=False),
        *(_sum(name) for name in _SUMS),
        sa.Column("read_min", RawNumber()),
        sa.Column("read_max", RawNumber()),
        _sum("delay_seconds"),
        _sum("max_delay_seconds"),
        sa.Column("odd_rows", sa.BigInteger(), nullable=False),
        prefixes=["GLOBAL TEMPORARY"],
        oracle_on_commit="DELETE ROWS",
    )


def downgrade() -> None:
    if not _is_oracle():
        return
    op.drop_table("t_stage_group")
    op.create_table(
        "t_stage_norm",
        sa.Column("insert_s", sa.BigInteger(), nullable=False),
        sa.Column("end_s", sa.BigInteger(), nullable=False),
        sa.Column("start_given", sa.BigInteger()),
        sa.Column("read_b", Number(), nullable=False),
        sa.Column("write_b", Number(), nullable=False),
        sa.Column("src_site", Text(256)),
        sa.Column("src_domain", Text(255)),
        sa.Column("dst_site", Text(256)),
        sa.Column("dst_domain", Text(255)),
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("user_dn", Text(512), nullable=False),
        sa.Column("file_size", RawNumber()),
        sa.Column("read_single_bytes", Number(), nullable=False),
        sa.Column("read_single_ops", Number(), nullable=False),
        sa.Column("read_vector_bytes", Number(), nullable=False),
        sa.Column("read_vector_ops", Number(), nullable=False),
        sa.Column("write_ops", Number(), nullable=False),
        sa.Column("read_min", RawNumber()),
        sa.Column("read_max", RawNumber()),
        prefixes=["GLOBAL TEMPORARY"],
        oracle_on_commit="DELETE ROWS",
    )
