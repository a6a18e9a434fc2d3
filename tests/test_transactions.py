"""SPEC §6 steps 3 and 4: stats and watermark move together, and one runner at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from tests.helpers import KEYS, Harness, check_invariant, generated_rows, wait_until
from xrdagg.config import PROJECT_ROOT

T0 = datetime(2024, 3, 1)
UNTIL = "2024-03-03 00:00:00"


def _load_sample(db: Harness, rows: int = 2000) -> list[dict]:
    records = generated_rows(rows, start=T0, days=1, seed=11)
    db.insert_raw("fed", records)
    return records


def _xrdagg(
    db: Harness, *args: str, hold: Path | None = None, kill: bool = False
) -> subprocess.Popen:
    """`xrdagg ARGS…` in a process of its own; with `hold`, its run stops before the commit
    until that file exists (tests/runner_process.py)."""
    options = (["--hold", str(hold)] if hold else []) + (["--kill"] if kill else [])
    env = {**os.environ, **db.backend.env, "XRDAGG_SAFETY_LAG_SECONDS": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.runner_process", *options, "--", *args],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for_aggregation(process: subprocess.Popen) -> None:
    """Until the process's run has aggregated its window: it holds the job's lock then."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "aggregated", line + process.stdout.read()


def _someone_waits_on_a_lock_here(db: Harness) -> bool:
    """Whether a session waits on a lock while it holds one on a table of this test's schema
    (MySQL/MariaDB: a session of this test's database in a lock wait, or in a FOR UPDATE for a
    second or more: MariaDB waits for the row of a primary-key lookup while planning, in state
    'Statistics', with no INNODB_TRX row yet)."""
    if db.dialect == "mysql":
        with db.engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM information_schema.processlist p "
                        "LEFT JOIN information_schema.innodb_trx t "
                        "ON t.trx_mysql_thread_id = p.id "
                        "WHERE p.db = DATABASE() AND (t.trx_state = 'LOCK WAIT' OR "
                        "(p.command = 'Query' AND p.info LIKE '%FOR UPDATE%' AND p.time >= 1))"
                    )
                ).scalar_one()
            )
    with db.engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' "
                    "AND a.pid <> pg_backend_pid() AND EXISTS (SELECT 1 FROM pg_locks l "
                    "JOIN pg_class c ON c.oid = l.relation WHERE l.pid = a.pid "
                    "AND c.relnamespace = current_schema()::regnamespace)"
                )
            ).scalar_one()
        )


def test_a_run_killed_before_commit_leaves_stats_and_watermark_as_they_were(db: Harness) -> None:
    rows = _load_sample(db)
    db.run("fed10", T0 + timedelta(hours=6))
    before = {t: db.table(t) for t in KEYS}
    watermark = db.watermark("fed10")
    crashed = _xrdagg(db, "run", "fed10", "--until", UNTIL, kill=True)
    _wait_for_aggregation(crashed)
    assert crashed.wait(timeout=60) == -9
    assert db.watermark("fed10") == watermark
    for table, frame in before.items():
        pd.testing.assert_frame_equal(db.table(table), frame)
    # The next run does the work once.
    db.run("fed10", datetime(2024, 3, 3))
    db.run("daily")
    check_invariant(db, [("fed", r) for r in rows])


def test_a_second_runner_of_the_same_job_is_refused_and_nothing_is_counted_twice(
    db: Harness, tmp_path: Path
) -> None:
    rows = _load_sample(db)
    release = tmp_path / "release"
    first = _xrdagg(db, "run", "fed10", "--until", UNTIL, hold=release)
    try:
        _wait_for_aggregation(first)  # it holds the job's T_AGENT row now, until released
        second = _xrdagg(db, "run", "fed10", "--until", UNTIL)
        output, _ = second.communicate(timeout=60)
    finally:
        release.touch()
    assert second.returncode == 75, output
    assert "fed10: skipped: job fed10 is" in output
    if db.dialect != "sqlite":  # SQLite cannot tell who holds its database lock
        assert "running since" in output and "on host" in output
    assert first.wait(timeout=60) == 0
    db.run("daily")
    check_invariant(db, [("fed", r) for r in rows])


def test_a_waiting_runner_proceeds_after_the_holder_without_double_counting(
    db: Harness, tmp_path: Path
) -> None:
    if db.dialect == "sqlite":
        pytest.skip("waiting on the lock is a row-lock feature; SQLite serialises writers anyway")
    rows = _load_sample(db)
    release = tmp_path / "release"
    first = _xrdagg(db, "run", "fed10", "--until", UNTIL, hold=release)
    try:
        _wait_for_aggregation(first)
        second = _xrdagg(db, "run", "fed10", "--until", UNTIL, "--wait")
        wait_until(
            lambda: _someone_waits_on_a_lock_here(db) or second.poll() is not None,
            timeout=60,
            what="the second runner to wait on the first one's lock",
        )
        assert second.poll() is None, second.communicate()[0]  # it waits for the holder
    finally:
        release.touch()
    output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output
    assert "nothing new" in output  # the holder's window was already done
    assert first.wait(timeout=60) == 0
    db.run("daily")
    check_invariant(db, [("fed", r) for r in rows])
