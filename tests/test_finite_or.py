"""SQLite's rendering of finite_or keeps exactly the finite numbers within ±1e18, whatever a value's
storage class and whatever the affinity of the column that holds it (a raw table an operator made
may declare its numbers as TEXT, or with no type at all); beyond_measure, the staging's test for
a row's odd numbers, flags exactly the values finite_or replaces."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import column, create_engine, literal, select

from xrdagg.db.dialect.expressions import MAX_RAW_MEASURE, beyond_measure, finite_or

VALUES: list[Any] = [
    0, 5, -5, 0.5, 1e18, -1e18, 10**18 + 1, 2e18, -2e18, math.inf, -math.inf,
    "0.5", " 12 ", "12", "NaN", "abc", "", b"\x01", None,
]  # fmt: skip
DECLARED = ["NUMERIC", "REAL", "INTEGER", "TEXT", ""]  # "": no type, so no affinity
REPLACEMENT = -1


def _expected(stored: Any) -> Any:
    """The rule: NULL stays NULL; a number (as SQLite stored it) within the bound is kept; any
    other value, text and blob included, is replaced."""
    if stored is None:
        return None
    bound = float(MAX_RAW_MEASURE)
    if isinstance(stored, int | float) and -bound <= stored <= bound:
        return stored
    return REPLACEMENT


@pytest.mark.parametrize("declared", DECLARED)
def test_finite_or_keeps_only_finite_numbers_in_every_affinity(declared: str) -> None:
    engine = create_engine("sqlite://")
    rendered = select(
        finite_or(column("v"), literal(REPLACEMENT, literal_execute=True)),
        beyond_measure(column("v")),
    )
    sql = str(rendered.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(f"CREATE TABLE t (n INTEGER PRIMARY KEY, v {declared})")
        raw.executemany("INSERT INTO t (n, v) VALUES (?, ?)", list(enumerate(VALUES)))
        stored = [row[0] for row in raw.execute("SELECT v FROM t ORDER BY n")]
        results = raw.execute(f"{sql} FROM t ORDER BY n").fetchall()
    got = [row[0] for row in results]
    assert got == [_expected(s) for s in stored], list(zip(VALUES, stored, got, strict=True))
    # NULL is no odd number (the test is NULL, so an OR of them stays false); the rest are odd
    # exactly when replaced.
    flagged = [row[1] for row in results]
    expected_flags = [None if s is None else int(_expected(s) == REPLACEMENT) for s in stored]
    assert flagged == expected_flags, list(zip(VALUES, stored, flagged, strict=True))
    # Not vacuous: every affinity stores values to replace, and all but TEXT (which stores every
    # value as text, '0.5' included: the case a bare range test gets wrong) numbers to keep.
    assert REPLACEMENT in got
    assert declared == "TEXT" or any(g not in (REPLACEMENT, None) for g in got)
