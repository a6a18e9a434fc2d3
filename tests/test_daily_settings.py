"""The daily job groups every 10-minute row of the days it rolls up (a recompute's or a first
catch-up's days by the hundred thousand), so it runs with the session settings bulk aggregation
needs (`dialect.tune_for_aggregation`), as the 10-minute jobs do. At PostgreSQL's default
work_mem (4 MB) its groupings sorted on disk: five days of the benchmark's realistic rows rolled
up in 1.31-1.48 s, and in 0.86-0.98 s with the settings (docs/decisions.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from tests.helpers import Harness, generated_rows
from xrdagg.db.dialect.statements import (
    MYSQL_AGGREGATION_TMP_TABLE_BYTES,
    POSTGRES_AGGREGATION_WORK_MEM,
)

T0 = datetime(2024, 3, 1)

# The daily job's groupings of 10-minute rows, each watched as it runs.
_WATCHED = (
    "INSERT INTO mv_site_stats",
    "INSERT INTO t_site_pair_day",
    "INSERT INTO t_unresolved_day",
)

# What each database says while the settings hold: (the query, the value).
_SETTING = {
    "postgresql": ("SHOW work_mem", POSTGRES_AGGREGATION_WORK_MEM),
    "mysql": ("SELECT @@SESSION.tmp_table_size", str(MYSQL_AGGREGATION_TMP_TABLE_BYTES)),
}


def test_the_daily_roll_up_groups_with_the_bulk_settings(db: Harness) -> None:
    if db.dialect not in _SETTING:
        pytest.skip("SQLite has no memory bound for a grouping to raise")
    query, expected = _SETTING[db.dialect]
    db.insert_raw("fed", generated_rows(2000, start=T0, days=1, seed=71))
    until = T0 + timedelta(days=3)
    db.run("fed10", until)
    # MySQL's setting is per session, and the 10-minute job set it on the pooled connection:
    # the daily job gets a new one, as it does when it runs on its own schedule.
    db.engine.dispose()
    seen: dict[str, str] = {}

    def watch(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        for start in _WATCHED:
            if statement.startswith(start):
                cursor.execute(query)
                seen[start] = str(cursor.fetchone()[0])

    event.listen(db.engine, "before_cursor_execute", watch)
    try:
        db.run("daily", until)
    finally:
        event.remove(db.engine, "before_cursor_execute", watch)
    assert seen == dict.fromkeys(_WATCHED, expected)
    with db.engine.connect() as conn:  # gone with the daily job's transaction (PostgreSQL)
        if db.dialect == "postgresql":
            assert conn.exec_driver_sql(query).scalar() != expected
