"""sum_where and count_where: a FILTER clause on SQLite from 3.30 (and on PostgreSQL), a CASE
before it (and on MySQL/MariaDB and Oracle); both give the same sums and counts, 0 where no row
of a group matches and NULL values skipped."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import column, create_engine, literal_column, select, table

from tests.sqlite_versions import both_renderings, requires_sqlite
from xrdagg.db.dialect.expressions import count_where, sum_where

# (group, flag, value): group 3 has no row with flag = 1, group 4 one NULL value among them.
ROWS = [(1, 1, 2.5), (1, 0, 100.0), (1, 1, 4), (2, 0, 7.0), (2, 1, 0.25), (3, 0, 1.0),
        (3, 0, 2.0), (4, 1, None), (4, 1, 3.0)]  # fmt: skip


def _grouped() -> tuple[str, Any]:
    """The rendering (compiled afresh) and its sums and counts per group of ROWS."""
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


@requires_sqlite("SQLITE_FILTER_VERSION", "aggregate FILTER")
def test_filter_and_case_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    (filtered_sql, filtered), (case_sql, with_case) = both_renderings(
        monkeypatch, "SQLITE_FILTER_VERSION", _grouped
    )
    assert "FILTER (WHERE" in filtered_sql and "FILTER" not in case_sql
    assert filtered == with_case == [(1, 6.5, 2), (2, 0.25, 1), (3, 0, 0), (4, 3.0, 2)]
