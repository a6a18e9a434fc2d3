"""SQLite's two renderings of epoch_seconds (unixepoch() from 3.38, strftime('%s') before) give
the same integer for every text a date column can hold, including the ones a run counts as bad."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import column, create_engine, select

from tests.sqlite_versions import both_renderings, requires_sqlite
from xrdagg.db.dialect.expressions import epoch_seconds

TEXTS = [
    "2024-03-01 12:34:56",
    "2024-03-01 12:34:56.750",  # fractional seconds: both truncate
    "2024-03-01T12:34:56",
    "1969-12-31 23:59:30",  # before 1970: negative
    "1965-06-01 12:00:00",
    "2024-02-30 00:00:00",  # no such day: both roll over to 1 March
    "20240301",  # the format the loader refuses
    "garbage",
    "",
    None,
]


def _epochs() -> tuple[str, list[Any]]:
    """The rendering (compiled afresh) and its value for each of TEXTS."""
    engine = create_engine("sqlite://")
    rendered = str(select(epoch_seconds(column("d"))).compile(dialect=engine.dialect))
    values = " UNION ALL ".join(f"SELECT {i} AS n, ? AS d" for i in range(len(TEXTS)))
    sql = f"{rendered} FROM ({values}) ORDER BY n"
    with engine.connect() as conn:
        return rendered, list(conn.exec_driver_sql(sql, tuple(TEXTS)).scalars())


@requires_sqlite("SQLITE_UNIXEPOCH_VERSION", "unixepoch()")
def test_unixepoch_and_strftime_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    (new_sql, with_unixepoch), (old_sql, with_strftime) = both_renderings(
        monkeypatch, "SQLITE_UNIXEPOCH_VERSION", _epochs
    )
    assert "unixepoch(" in new_sql and "strftime(" in old_sql
    assert with_unixepoch == with_strftime
    assert with_unixepoch[:5] == [1709296496, 1709296496, 1709296496, -30, -144676800]
