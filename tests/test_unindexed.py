"""`unindexed(column)`: on SQLite a range on it is read by scanning the table, not through the
column's index, and it selects exactly the rows the bare column does; elsewhere it is the column.
A topology apply and a recompute chunk read so where `prefers_scan` says a scan is cheaper."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    and_,
    bindparam,
    create_engine,
    select,
)
from sqlalchemy.dialects import mysql, oracle, postgresql

from xrdagg.db.dialect import prefers_scan, unindexed
from xrdagg.db.dialect.expressions import SCAN_ABOVE_SHARE
from xrdagg.db.types import UtcDate
from xrdagg.jobs.stage import share_of_span

metadata = MetaData()
t = Table(
    "t",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("n", Integer),
    Column("end_date", UtcDate()),
)
Index("ix_t_n", t.c.n)
T0 = datetime(2024, 3, 1)


def _plan_and_rows(conn, condition) -> tuple[str, list[int]]:  # type: ignore[no-untyped-def]
    query = select(t.c.id).where(condition).order_by(t.c.id)
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    positional = [params[name] for name in compiled.positiontup]  # integers: no processing
    driver = conn.connection.driver_connection
    rows = driver.execute(f"EXPLAIN QUERY PLAN {compiled}", positional).fetchall()
    return " ".join(str(row[-1]) for row in rows), list(conn.execute(query).scalars())


def test_a_range_on_an_unindexed_column_scans_the_table_and_keeps_the_same_rows() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"n": (i * 37) % 1000} for i in range(1000)] + [{"n": None}])
        by_index = _plan_and_rows(conn, and_(t.c.n >= 100, t.c.n < 700))
        by_scan = _plan_and_rows(conn, and_(unindexed(t.c.n) >= 100, unindexed(t.c.n) < 700))
    assert "INDEX ix_t_n" in by_index[0], by_index[0]
    assert "INDEX" not in by_scan[0] and "SCAN t" in by_scan[0], by_scan[0]
    assert by_scan[1] == by_index[1] and len(by_index[1]) == 600


@pytest.mark.parametrize(
    "dialect", [postgresql.dialect(), mysql.dialect(), oracle.dialect()], ids=lambda d: d.name
)
def test_elsewhere_unindexed_is_the_bare_column(dialect) -> None:  # type: ignore[no-untyped-def]
    lo = bindparam("lo", type_=UtcDate())
    bare = str(select(t.c.id).where(t.c.end_date >= lo).compile(dialect=dialect))
    hinted = str(select(t.c.id).where(unindexed(t.c.end_date) >= lo).compile(dialect=dialect))
    assert hinted == bare


def test_the_share_of_the_span_that_ranges_cover() -> None:
    span = (T0, T0 + timedelta(days=10))
    day = timedelta(days=1)
    assert share_of_span(span, [(T0 - 3 * day, T0 + 11 * day)]) == 1.0
    assert share_of_span(span, [(T0 + 2 * day, T0 + 7 * day)]) == 0.5
    assert share_of_span(span, [(T0, T0 + 3 * day), (T0 + 8 * day, T0 + 10 * day)]) == 0.5
    assert share_of_span(span, [(T0 + 20 * day, T0 + 30 * day), (T0, T0 + day)]) == 0.1
    assert share_of_span(span, []) == 0.0
    assert share_of_span(None, [(T0, T0 + day)]) == 0.0
    assert share_of_span((T0, T0), [(T0, T0 + day)]) == 1.0


def test_sqlite_and_mysql_prefer_a_scan_for_a_large_share_only() -> None:
    for dialect in ("sqlite", "mysql"):
        share = SCAN_ABOVE_SHARE[dialect]
        assert prefers_scan(dialect, 0.5) and prefers_scan(dialect, share + 0.01)
        assert not prefers_scan(dialect, share)
    assert not any(prefers_scan(d, 1.0) for d in ("postgresql", "oracle"))
