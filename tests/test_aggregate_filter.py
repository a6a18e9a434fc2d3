"""sum_where and count_where: a FILTER clause on SQLite from 3.30 (and on PostgreSQL), a CASE
before it (and on MySQL/MariaDB and Oracle); both give the same sums and counts, 0 where no row
of a group matches and NULL values skipped."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import column, create_engine, literal_column, select, table

from xrdagg.db.dialect import expressions
from xrdagg.db.dialect.expressions import count_where, sum_where

# (group, flag, value): group 3 has no row with flag = 1, group 4 one NULL value among them.
ROWS = [(1, 1, 2.5), (1, 0, 100.0), (1, 1, 4), (2, 0, 7.0), (2, 1, 0.25), (3, 0, 1.0),
        (3, 0, 2.0), (4, 1, None), (4, 1, 3.0)]  # fmt: skip


def _grouped(
    monkeypatch: pytest.MonkeyPatch, first_filter: tuple[int, int, int]
) -> tuple[str, Any]:
    monkeypatch.setattr(expressions, "SQLITE_FILTER_VERSION", first_filter)
    rows = table("t", column("g"), column("flag"), column("v"))
    flagged = rows.c.flag == literal_column("1")
    query = (
        select(rows.c.g, sum_where(flagged, rows.c.v), count_where(flagged))
        .group_by(rows.c.g)
        .order_by(rows.c.g)
    )
    engine = create_engine("sqlite://")
    rendered = str(query.compile(dialect=engine.dialect))
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("CREATE TABLE t (g INTEGER, flag INTEGER, v REAL)")
        raw.executemany("INSERT INTO t VALUES (?, ?, ?)", ROWS)
        return rendered, raw.execute(rendered).fetchall()


@pytest.mark.skipif(
    sqlite3.sqlite_version_info < expressions.SQLITE_FILTER_VERSION,
    reason=f"SQLite {sqlite3.sqlite_version} has no aggregate FILTER to compare CASE with",
)
def test_filter_and_case_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    filtered_sql, filtered = _grouped(monkeypatch, expressions.SQLITE_FILTER_VERSION)
    case_sql, with_case = _grouped(monkeypatch, (99, 0, 0))
    assert "FILTER (WHERE" in filtered_sql and "FILTER" not in case_sql
    assert filtered == with_case == [(1, 6.5, 2), (2, 0.25, 1), (3, 0, 0), (4, 3.0, 2)]
