"""Housekeeping's 10-minute retention and the daily tables: the daily rows of a trimmed day are
the only history of it, and a row arriving later never replaces them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import KEYS, Harness, expected_tables, fed, generated_rows
from tests.reference import assert_same
from xrdagg.jobs import housekeeping
from xrdagg.jobs.kind import RunContext
from xrdagg.jobs.runner import JobRunner
from xrdagg.jobs.specs import JobSpec, load_job_specs

T0 = datetime(2024, 3, 1)
DAILY = ("t_site_pair_day", "t_stats_access_pattern_a", "mv_site_stats", "t_unresolved_day")
TEN_MINUTE = ("t_stats_avg", "t_user_activity", "t_stats_access_pattern", "t_msg_rate")


def _housekeeping(tmp_path: Path, days: int) -> JobSpec:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    kept = ", ".join(f"{table} = {days}" for table in TEN_MINUTE)
    (jobs / "jobs.toml").write_text(
        f'[[job]]\nname = "hk"\nkind = "housekeeping"\nretention_days = {{ {kept} }}\n'
    )
    return load_job_specs(jobs)[0]


def _trim(db: Harness, spec: JobSpec, now: datetime) -> None:
    """Housekeeping as it runs at `now` (the database's clock is today, long after T0)."""
    context = RunContext(
        job=spec, watermark=None, now=now, until=None, safety_lag_seconds=0, upstream=()
    )
    with db.engine.begin() as conn:
        assert housekeeping.run(conn, context).rows_written > 0


def _of_day(frame: pd.DataFrame, day: datetime) -> pd.DataFrame:
    days = pd.to_datetime(frame.day)
    return frame[(days >= day) & (days < day + timedelta(days=1))]


def _trimmed_history(db: Harness, tmp_path: Path) -> tuple[list, JobSpec, dict[str, pd.DataFrame]]:
    """FED and EOS rows over three days from T0, every one counted and rolled up, then T0
    trimmed from every 10-minute table: (the rows, the housekeeping job, the daily tables)."""
    rows = [("fed", r) for r in generated_rows(1500, start=T0, days=3, seed=3)]
    rows += [("eos", r) for r in generated_rows(500, start=T0, days=3, seed=4, source="eos")]
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run_all(T0 + timedelta(days=10))  # every row counted
    spec = _housekeeping(tmp_path, 30)
    _trim(db, spec, T0 + timedelta(days=31, hours=7))  # T0 goes, T0's next day is kept
    daily = {name: db.table(name) for name in DAILY}
    assert set(_of_day(daily["t_site_pair_day"], T0).source) == {"FED", "EOS"}
    return rows, spec, daily


def _late_row(db: Harness, source: str) -> dict:
    """A row arriving long after the day it falls on, T0, counted by its 10-minute job."""
    late = fed(
        start_date=T0 + timedelta(hours=10),
        end_date=T0 + timedelta(hours=11),
        insert_date=T0 + timedelta(days=11),
        read_bytes_at_close=7,
    )
    db.insert_raw(source, [late])
    db.run(f"{source}10", T0 + timedelta(days=12))
    return late


def _recompute_all_of_t0(db: Harness, cli, rows: list) -> None:  # type: ignore[no-untyped-def]
    """`xrdagg recompute` of every job on T0: its daily rows then count every raw row of it."""
    result = cli("recompute", "--from", "2024-03-01", "--to", "2024-03-01")
    assert result.exit_code == 0, result.output
    expected = expected_tables(db, rows)
    for name in DAILY:
        assert_same(_of_day(db.table(name), T0), _of_day(expected[name], T0), KEYS[name], name)


@pytest.mark.parametrize(
    ("late_source", "retention_known"),
    [("fed", True), ("eos", True), ("fed", False)],
    ids=["fed", "eos", "fed-partition-dropped"],
)
def test_a_row_arriving_after_housekeeping_keeps_the_daily_rows_of_the_trimmed_day_it_ends_on(
    db: Harness, tmp_path: Path, cli, late_source: str, retention_known: bool
) -> None:
    # A row that arrives now and ends on a day housekeeping trimmed (a replay, a backfill loaded
    # with new arrival times) is valid, and the 10-minute run counts it there; the daily job
    # used to roll that day up from the 10-minute rows left, that row alone, replacing the
    # day's daily rows, the only history of it. It keeps them, and says so; a recompute of the
    # day rebuilds it from raw, the late row counted. Whether the runner knows the retention or
    # not (a partition dropped by a DBA, or `xrdagg serve` without the housekeeping job).
    rows, spec, before = _trimmed_history(db, tmp_path)
    rows.append((late_source, _late_row(db, late_source)))
    jobs = [*db.jobs.values(), *([spec] if retention_known else [])]
    report = JobRunner(db.engine, db.settings, jobs).run(db.jobs["daily"])
    assert report.outcome == "OK", report.message
    assert "kept the daily rows of 1 day(s) as they were (2024-03-01)" in report.message
    assert "`xrdagg recompute --from 2024-03-01 --to 2024-03-01`" in report.message
    for name in DAILY:
        assert_same(db.table(name), before[name], KEYS[name], name)

    # The remedy the message names: T0 rebuilt from raw, the late row counted, rolled up.
    _recompute_all_of_t0(db, cli, rows)


def test_a_recompute_of_one_job_on_a_trimmed_day_keeps_the_other_sources_daily_rows(
    db: Harness, tmp_path: Path, cli
) -> None:
    # The roll-up of a day covers every source: after a recompute of fed10 alone on a day whose
    # EOS rows were trimmed too, rolling it up would leave EOS's daily rows of the day empty.
    # The day is kept, and a recompute of every job then rolls it up whole.
    rows, _, before = _trimmed_history(db, tmp_path)
    result = cli("recompute", "--from", "2024-03-01", "--to", "2024-03-01", "--job", "fed10")
    assert result.exit_code == 0, result.output
    assert "kept the daily rows of 1 day(s)" in result.output, result.output
    for name in DAILY:
        assert_same(db.table(name), before[name], KEYS[name], name)
    _recompute_all_of_t0(db, cli, rows)


def test_the_daily_job_rolls_up_days_within_the_retention_as_before(
    db: Harness, tmp_path: Path
) -> None:
    # With a retention set, a late row on a day the 10-minute tables still hold whole is rolled
    # up as always: the days within the retention are not even looked at, and a day before it
    # whose tables hold at least what its daily rows count is not trimmed.
    rows = generated_rows(1000, start=T0, days=2, seed=5)
    db.insert_raw("fed", rows)
    db.run_all(T0 + timedelta(days=10))
    runner = JobRunner(db.engine, db.settings, [*db.jobs.values(), _housekeeping(tmp_path, 30)])
    late = fed(end_date=T0 + timedelta(hours=5), insert_date=T0 + timedelta(days=11))
    db.insert_raw("fed", [late])
    db.run("fed10", T0 + timedelta(days=12))
    report = runner.run(db.jobs["daily"])
    assert report.outcome == "OK" and not report.message, report.message
    for name, frame in expected_tables(db, [("fed", r) for r in [*rows, late]]).items():
        if name in DAILY:
            assert_same(db.table(name), frame, KEYS[name], name)
