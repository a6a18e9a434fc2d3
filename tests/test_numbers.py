"""Finite numbers only (issue 9): NaN, ±infinity and out-of-range raw values count like negative
ones (0; a size or a min/max: unknown), on every path, and are counted per reason."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from tests.helpers import Harness, check_invariant, generated_rows
from xrdagg.db.tables import t_job_run
from xrdagg.jobs.numbers import REASONS

T0 = datetime(2024, 3, 1)

# (column, SQL value per dialect, reason, what the reference reads instead). MySQL's DECIMAL
# holds neither NaN nor infinities, only values beyond the bound (up to 1e28 in DECIMAL(38,10)).
ODD = [
    ("read_bytes_at_close", {"postgresql": "'NaN'", "sqlite": "'NaN'"}, "NaN", -1),
    ("read_bytes", {"postgresql": "'Infinity'", "sqlite": "9e999"}, "infinite", -1),
    ("write_bytes_at_close", {"postgresql": "'-Infinity'", "sqlite": "-9e999"}, "infinite", -1),
    (
        "read_single_bytes",
        {"postgresql": "1e400", "sqlite": "1e300", "mysql": "1e27"},
        "out of range",
        -1,
    ),
    (
        "file_size",
        {"postgresql": "1e400", "sqlite": "1e300", "mysql": "-1e27"},
        "out of range",
        None,
    ),
    ("read_min", {"postgresql": "'NaN'", "sqlite": "'NaN'"}, "NaN", None),
]


def test_nan_inf_and_huge_numbers_count_as_zero_everywhere(db: Harness, cli) -> None:
    rows = generated_rows(600, start=T0, days=2, seed=31)
    db.insert_raw("fed", rows)
    # Poison some rows by SQL, as a collector would (the loader never writes such values).
    odd = [(i, entry) for i, entry in enumerate(ODD) if db.dialect in entry[1]]
    with db.engine.begin() as conn:
        for i, (column, values, _reason, _ref) in odd:
            for row in rows[i * 7 : i * 7 + 3]:
                conn.execute(
                    text(
                        f"UPDATE t_raw_fed SET {column} = {values[db.dialect]} WHERE unique_id = :u"
                    ),
                    {"u": row["unique_id"]},
                )
    expected_rows = [dict(r) for r in rows]
    for i, (column, _values, _reason, ref) in odd:
        for row in expected_rows[i * 7 : i * 7 + 3]:
            row[column] = ref
    first = db.run("fed10", T0 + timedelta(days=1))
    second = db.run("fed10", T0 + timedelta(days=5))
    assert first.outcome == second.outcome == "OK"
    seen: dict[str, int] = {}
    for report in (first, second):
        for reason, n in report.odd_numbers.items():
            seen[reason] = seen.get(reason, 0) + n
    expected: dict[str, int] = dict.fromkeys(REASONS, 0)
    for i, (_column, _values, reason, _ref) in odd:
        valid = [r for r in rows[i * 7 : i * 7 + 3] if _valid(r)]
        expected[reason] = expected.get(reason, 0) + len(valid)
    found = {reason: n for reason, n in expected.items() if n}
    assert seen == found and sum(found.values()) >= 2 * len(odd), (seen, expected)
    assert "numbers counted as 0" in first.summary() + second.summary()
    assert db.run("daily").outcome == "OK"  # the daily roll-up of NaN-free sums
    check_invariant(db, [("fed", r) for r in expected_rows])
    with db.engine.connect() as conn:
        logged = conn.execute(
            select(
                t_job_run.c.rows_bad_nan, t_job_run.c.rows_bad_infinite, t_job_run.c.rows_bad_range
            ).where(t_job_run.c.job_name == "fed10")
        ).all()
    assert [sum(r[i] or 0 for r in logged) for i in range(3)] == [
        expected["NaN"],
        expected["infinite"],
        expected["out of range"],
    ]
    checked = cli("check")
    assert checked.exit_code == 0, checked.output
    for reason, n in found.items():
        assert re.search(rf"FED\s+{reason}\s+{n}\n", checked.output), checked.output
    # A recompute reads the same rows the same way.
    assert cli("recompute", "--from", "2024-02-28", "--to", "2024-03-04").exit_code == 0
    check_invariant(db, [("fed", r) for r in expected_rows])


def _valid(row: dict[str, Any]) -> bool:
    """SPEC §6 validity, as the runs apply it."""
    insert = row["insert_date"]
    return insert is not None and row["end_date"] <= insert + timedelta(days=1)


def test_rows_before_1970_bin_at_the_floor(db: Harness) -> None:
    from tests.helpers import fed

    # 23:45..23:55 on 1969-12-31 spreads over the 23:40 and 23:50 bins; a negative epoch time
    # truncated towards zero would land in 1970's first bin instead.
    rows = [
        fed(start_date=datetime(1969, 12, 31, 23, 45), end_date=datetime(1969, 12, 31, 23, 55),
            insert_date=T0, read_bytes_at_close=600),
        fed(start_date=datetime(1969, 12, 31, 23, 59, 30), end_date=datetime(1970, 1, 1, 0, 0, 30),
            insert_date=T0, read_bytes_at_close=60),
        fed(end_date=datetime(1965, 6, 1, 12, 3), insert_date=T0, read_bytes_at_close=1),
    ]  # fmt: skip
    db.insert_raw("fed", rows)
    db.run("fed10", T0 + timedelta(days=1))
    db.run("daily")
    check_invariant(db, [("fed", r) for r in rows])
    bins = set(db.table("t_stats_avg").bin_start)
    assert datetime(1969, 12, 31, 23, 50) in bins and datetime(1965, 6, 1, 12, 0) in bins
