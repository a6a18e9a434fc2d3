"""Oracle: the global temporary table each rebuild stages its normalised rows in.

PostgreSQL and SQLite create `t_stage_norm` as a TEMPORARY table per session when a job first
needs it (`xrdagg.jobs.stage`); Oracle has no per-session DDL of that kind, so its global
temporary table is part of the schema: the definition is shared, the rows are private to each
session and gone at every commit (ON COMMIT DELETE ROWS), and they generate no redo for the data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xrdagg.db.types import Number, RawNumber, Text

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _is_oracle() -> bool:
    return op.get_context().dialect.name == "oracle"


def upgrade() -> None:
    if not _is_oracle():
        return
    op.create_table(
        "t_stage_norm",
        sa.Column("insert_s", sa.BigInteger(), nullable=False),
        sa.Column("end_s", sa.BigInteger(), nullable=False),
        sa.Column("start_given", sa.BigInteger()),
        sa.Column("read_b", Number(), nullable=False),
        sa.Column("write_b", Number(), nullable=False),
        # NULL while a side's (host, domain) pair is not cached yet: staged again once it is.
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


def downgrade() -> None:
    if _is_oracle():
        op.drop_table("t_stage_norm")
