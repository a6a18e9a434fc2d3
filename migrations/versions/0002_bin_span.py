"""Spread transfers over bins with an equality join: t_bin_span replaces t_bin_offset.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 23:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A 7-day transfer touches at most 7*144 + 1 bins: spans 0..1008 (frozen here).
_MAX_SPAN = 7 * 86400 // 600


def _fill(table: str, columns: list[str], source: sa.Select) -> None:
    target = sa.table(table, *(sa.column(c, sa.Integer) for c in columns))
    op.execute(target.insert().from_select(columns, source))


def _allow_series_depth() -> None:
    # MariaDB stops a recursive CTE after max_recursive_iterations rows (1000 on some servers,
    # like MySQL 8's cte_max_recursion_depth); the series below needs 1009. Session only.
    if op.get_context().dialect.name == "mysql":
        op.execute("SET SESSION max_recursive_iterations = 100000")


def _series(name: str, top: int) -> sa.CTE:
    series = sa.select(sa.literal(0, sa.Integer).label("v")).cte(name, recursive=True)
    return series.union_all(sa.select((series.c.v + 1).label("v")).where(series.c.v < top))


def upgrade() -> None:
    op.create_table(
        "t_bin_span",
        sa.Column("span", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("span", "n", name=op.f("pk_t_bin_span")),
    )
    _allow_series_depth()
    spans, offsets = _series("spans", _MAX_SPAN), _series("offsets", _MAX_SPAN)
    _fill(
        "t_bin_span",
        ["span", "n"],
        sa.select(spans.c.v, offsets.c.v).where(offsets.c.v <= spans.c.v),
    )
    op.drop_table("t_bin_offset")


def downgrade() -> None:
    op.create_table(
        "t_bin_offset",
        sa.Column("n", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("n", name=op.f("pk_t_bin_offset")),
    )
    _allow_series_depth()
    offsets = _series("offsets", _MAX_SPAN)
    _fill("t_bin_offset", ["n"], sa.select(offsets.c.v))
    op.drop_table("t_bin_span")
