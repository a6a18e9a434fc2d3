"""`xrdagg recompute`: any range, at any moment, equals the from-scratch computation (SPEC §6)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from datetime import datetime, timedelta
from itertools import pairwise

import pandas as pd
import pytest
from sqlalchemy import delete, insert, select, text

from tests.helpers import Harness, check_invariant, fed, generated_rows
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.tables import (
    t_job_pause,
    t_recompute_chunk,
    t_stats_access_pattern,
    t_stats_avg,
    t_user_activity,
)
from xrdagg.jobs.chunks import plan_chunks

T0 = datetime(2024, 3, 1)


def _rows(db: Harness, source: str, n: int, seed: int, days: float = 3) -> list[dict]:
    records = generated_rows(n, start=T0, days=days, seed=seed, source=source)
    db.insert_raw(source, records)
    return records


def _tamper(db: Harness) -> None:
    """Lose and corrupt statistics, as a bug or a topology fix would leave them."""
    with db.engine.begin() as conn:
        conn.execute(
            delete(t_stats_avg).where(t_stats_avg.c.bin_start < T0 + timedelta(days=1, hours=6))
        )
        conn.execute(delete(t_user_activity))
        conn.execute(
            t_stats_access_pattern.update().values(accesses=t_stats_access_pattern.c.accesses * 2)
        )
        conn.execute(
            insert(t_stats_avg).values(
                bin_start=T0 + timedelta(days=2), source="FED", src_site="X", src_domain="x", dst_site="Y",
                dst_domain="y", vo="atlas", read_bytes=1, write_bytes=0, active_seconds=0,
                transfers_active=1, transfers_ended=1,
            )
        )  # fmt: skip


def test_recompute_of_everything_restores_the_statistics(db: Harness, cli) -> None:
    fed, eos = _rows(db, "fed", 3000, 1), _rows(db, "eos", 1000, 2)
    # Watermarks mid-way: late rows above them must wait for the next incremental run.
    db.run("fed10", T0 + timedelta(days=2))
    db.run("eos10", T0 + timedelta(days=2, hours=12))
    db.run("daily")
    _tamper(db)
    result = cli("recompute", "--from", "2024-02-20", "--to", "2024-03-10")
    assert result.exit_code == 0, result.output
    assert "jobs resumed" in result.output and "daily:" in result.output
    check_invariant(db, [("fed", r) for r in fed] + [("eos", r) for r in eos])
    # The next incremental run counts the rest exactly once.
    db.run("fed10", T0 + timedelta(days=30))
    db.run("eos10", T0 + timedelta(days=30))
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed] + [("eos", r) for r in eos])


def test_recompute_of_a_range_touches_only_its_bins(db: Harness, cli) -> None:
    fed = _rows(db, "fed", 4000, 3)  # ~1300 rows a day: more than --max-chunk-rows
    db.run("fed10", T0 + timedelta(days=10))
    db.run("daily")
    before = db.table("t_stats_avg")
    _tamper(db)
    result = cli(
        "recompute",
        "--from",
        "2024-03-02",
        "--to",
        "2024-03-02",
        "--job",
        "fed10",
        "--max-chunk-rows",
        "1000",
    )
    assert result.exit_code == 0, result.output
    after = db.table("t_stats_avg")
    day = (after.bin_start >= T0 + timedelta(days=1)) & (after.bin_start < T0 + timedelta(days=2))
    expected_day = (before.bin_start >= T0 + timedelta(days=1)) & (
        before.bin_start < T0 + timedelta(days=2)
    )
    pd.testing.assert_frame_equal(
        after[day].reset_index(drop=True), before[expected_day].reset_index(drop=True), rtol=1e-9
    )
    # Outside the range nothing changed: the bogus row of 2024-03-03 is still there.
    assert (after.src_site == "X").sum() == 1
    with db.engine.connect() as conn:
        chunks = conn.execute(select(t_recompute_chunk.c.state)).scalars().all()
    assert len(chunks) > 1 and set(chunks) == {"DONE"}  # the day was split by --max-chunk-rows
    del fed


def test_a_recompute_writes_only_the_rows_that_differ_on_postgresql(db: Harness, cli) -> None:
    """A row the recompute finds equal, bit for bit, is left as it is (its row version, xmin,
    stays); every other one is rewritten, the corrupted one among them, and the tables are right
    (`dialect.OwnRowsRewrite`). Sums of fractional shares taken in another order may differ in
    their last bit: those rows count as different."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL writes just the rows that differ; elsewhere a recompute "
                    "rewrites every row of its bins")  # fmt: skip
    fed = _rows(db, "fed", 3000, 11)
    db.run("fed10", T0 + timedelta(days=10))
    db.run("daily")
    key = "bin_start, source, src_site, src_domain, dst_site, dst_domain, vo"
    values = "read_bytes, write_bytes, active_seconds, transfers_active, transfers_ended"

    def stored() -> dict[tuple, tuple]:
        with db.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {key}, {values}, xmin::text FROM t_stats_avg"))
            return {tuple(r[:7]): tuple(r[7:]) for r in rows}

    with db.engine.begin() as conn:
        corrupted = conn.execute(
            text(f"SELECT {key} FROM t_stats_avg ORDER BY {key} OFFSET 100 LIMIT 1")
        ).one()
        conn.execute(
            t_stats_avg.update()
            .where(*(t_stats_avg.c[k] == v for k, v in corrupted._mapping.items()))
            .values(read_bytes=t_stats_avg.c.read_bytes + 1)
        )
    before = stored()
    result = cli("recompute", "--from", "2024-02-20", "--to", "2024-03-10", "--job", "fed10")
    assert result.exit_code == 0, result.output
    after = stored()
    assert set(after) == set(before)
    rewritten = {k for k in after if after[k][-1] != before[k][-1]}
    differing = {k for k in after if after[k][:-1] != before[k][:-1]}
    assert rewritten == differing
    assert tuple(corrupted) in rewritten and len(rewritten) < len(after) / 10
    check_invariant(db, [("fed", r) for r in fed])


@pytest.mark.parametrize("by_scan", [True, False], ids=["scan", "indexes"])
def test_a_chunk_read_by_a_scan_or_through_the_indexes_restores_the_statistics(
    db: Harness, cli, monkeypatch: pytest.MonkeyPatch, by_scan: bool
) -> None:
    """A chunk reads its raw rows through the date indexes, or, where the database prefers a
    scan for the chunk's share of the raw END_DATE span (SQLite, most of the table), by a scan
    of the table: the same rows either way."""
    from xrdagg.jobs import chunks as chunks_module

    fed = _rows(db, "fed", 3000, 12)
    db.run("fed10", T0 + timedelta(days=10))
    db.run("daily")
    _tamper(db)
    shares: list[float] = []

    def read_spy(dialect: str, share: float) -> bool:
        shares.append(share)
        return by_scan

    monkeypatch.setattr(chunks_module, "prefers_scan", read_spy)
    built = chunks_module.chunk_statements
    reads: list[bool] = []

    def statements_spy(source, by_scan=False):  # type: ignore[no-untyped-def]
        reads.append(by_scan)
        statements = built(source, by_scan)
        condition = str(statements.stage_condition.compile(db.engine))
        # SQLite is told not to use the date indexes (a unary +); elsewhere the SQL is the same.
        assert ("+" in condition) == (by_scan and db.dialect == "sqlite"), condition
        return statements

    monkeypatch.setattr(chunks_module, "chunk_statements", statements_spy)
    whole = cli("recompute", "--from", "2024-02-20", "--to", "2024-03-10", "--job", "fed10")
    assert whole.exit_code == 0, whole.output
    check_invariant(db, [("fed", r) for r in fed])
    assert shares == [1.0] and reads == [by_scan]  # one chunk of every day: the whole span
    with db.engine.begin() as conn:  # rows of the days below only (spread rows reach back)
        conn.execute(delete(t_user_activity))
        conn.execute(
            t_stats_access_pattern.update().values(accesses=t_stats_access_pattern.c.accesses * 2)
        )
    shares.clear()
    days = cli("recompute", "--from", "2024-03-01", "--to", "2024-03-03", "--job", "fed10",
               "--max-chunk-days", "1")  # fmt: skip
    assert days.exit_code == 0, days.output
    check_invariant(db, [("fed", r) for r in fed])
    assert len(shares) == 3 and all(0.2 < share < 0.5 for share in shares)  # a day of ~3
    assert reads == [by_scan] * 4


def test_the_chunk_plan_merges_small_days_and_splits_large_ones(db: Harness) -> None:
    # Raw rows ending on six days: 3, 2, 0, 9, 4 and 1 (a recompute plans by END_DATE alone).
    per_day = [3, 2, 0, 9, 4, 1]
    db.insert_raw(
        "fed",
        [
            fed(end_date=T0 + timedelta(days=day, hours=1 + i), insert_date=T0 + timedelta(days=9))
            for day, n in enumerate(per_day)
            for i in range(n)
        ],
    )

    def plan(max_rows: int, **options: int) -> list[tuple[int, float, int]]:
        with db.engine.connect() as conn:
            chunks = plan_chunks(
                conn, [db.jobs["fed10"]], T0, T0 + timedelta(days=5), max_rows, **options
            )
        # (first day, days spanned, raw rows): the chunks tile the six days in order
        assert chunks[0].start == T0 and chunks[-1].end == T0 + timedelta(days=6)
        assert all(a.end == b.start for a, b in pairwise(chunks))
        return [
            ((c.start - T0).days, (c.end - c.start) / timedelta(days=1), c.raw_rows) for c in chunks
        ]

    # Days whose rows fit in a chunk together are one; the day with more is split in two.
    assert plan(6) == [(0, 3, 5), (3, 0.5, 4), (3, 0.5, 4), (4, 2, 5)]
    assert plan(100) == [(0, 6, 19)]
    assert plan(100, max_days=4) == [(0, 4, 14), (4, 2, 5)]
    assert plan(6, max_days=1) == [
        (0, 1, 3), (1, 1, 2), (2, 1, 0), (3, 0.5, 4), (3, 0.5, 4), (4, 1, 4), (5, 1, 1)
    ]  # fmt: skip
    # Five workers: a chunk of several days holds at most a fifth of the rows (4 of 19).
    assert plan(100, workers=5) == [(0, 1, 3), (1, 2, 2), (3, 1, 9), (4, 1, 4), (5, 1, 1)]


def test_dry_run_changes_nothing(db: Harness, cli) -> None:
    _rows(db, "fed", 500, 4)
    db.run("fed10", T0 + timedelta(days=10))
    before = db.table("t_stats_avg")
    # The three days' rows fit in one chunk: a chunk of them per job (EOS's holds none).
    result = cli("recompute", "--from", "2024-03-01", "--to", "2024-03-03", "--dry-run")
    assert result.exit_code == 0
    assert re.search(
        r"fed10\s+2024-03-01 00:00 \.\. 2024-03-04 00:00\s+500 raw rows", result.output
    )
    assert "2 chunks, 500 raw rows; nothing changed" in result.output
    days = cli("recompute", "--from", "2024-03-01", "--to", "2024-03-03", "--dry-run",
               "--max-chunk-days", "1")  # fmt: skip
    assert days.exit_code == 0
    assert re.search(r"fed10\s+2024-03-01 00:00 \.\. 2024-03-02 00:00\s+\d+ raw rows", days.output)
    assert "6 chunks, 500 raw rows; nothing changed" in days.output
    pd.testing.assert_frame_equal(db.table("t_stats_avg"), before)


def test_a_killed_recompute_resumes_to_the_same_tables(db: Harness, cli) -> None:
    fed = _rows(db, "fed", 3000, 5)
    db.run("fed10", T0 + timedelta(days=10))
    _tamper(db)
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.runner_process", "--kill-in-chunk", "3", "--",
         "recompute", "--from", "2024-02-28", "--to", "2024-03-04", "--job", "fed10",
         "--max-chunk-days", "1"],
        cwd=PROJECT_ROOT, env={**os.environ, **db.backend.env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    with db.engine.connect() as conn:  # the dead process's pause stands until its lease expires
        assert conn.execute(
            select(t_job_pause.c.owner).where(t_job_pause.c.job_name == "fed10")
        ).scalar()
    assert "paused by recompute" in db.runner.run(db.jobs["fed10"]).message  # the job waits for it
    result = cli("recompute", "--resume")
    assert result.exit_code == 0, result.output
    assert (
        "resuming, 4 chunks to do" in result.output
    )  # 6 days (2024 is a leap year), 2 done before the kill
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed])
    assert db.runner.run(db.jobs["fed10"], until=T0 + timedelta(days=11)).outcome == "OK"


def test_workers_are_refused_on_sqlite_and_run_in_parallel_elsewhere(db: Harness, cli) -> None:
    fed = _rows(db, "fed", 2000, 6)
    db.run("fed10", T0 + timedelta(days=10))
    result = cli("recompute", "--from", "2024-02-28", "--to", "2024-03-04", "--workers", "2")
    if db.dialect == "sqlite":
        assert result.exit_code == 2 and "SQLite has one writer" in result.output
        return
    assert result.exit_code == 0, result.output
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed])


def test_progress_bar_in_a_terminal_and_plain_lines_in_a_pipe(db: Harness) -> None:
    _rows(db, "fed", 300, 7)
    db.run("fed10", T0 + timedelta(days=10))
    args = [
        sys.executable,
        "-m",
        "xrdagg.cli",
        "recompute",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
        "--job",
        "fed10",
        "--max-chunk-days",
        "1",
    ]
    env = {**os.environ, **db.backend.env, "COLUMNS": "120"}
    piped = subprocess.run(
        args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert piped.returncode == 0, piped.stderr
    assert "chunk 1/2 fed10 2024-03-01 00:00..2024-03-02 00:00:" in piped.stderr
    assert "rows/s, ETA" in piped.stderr
    assert "━" not in piped.stderr
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        args, cwd=PROJECT_ROOT, env=env, stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        output += data
    assert process.wait(timeout=120) == 0
    text = output.decode(errors="replace")
    assert "━" in text and "2/2" in text and "chunk 1/2" not in text


class _DeadlockError(Exception):
    """A driver error as PostgreSQL reports a deadlock (MariaDB's 1213 reads the same to xrdagg)."""

    sqlstate = "40P01"


def test_a_chunk_that_loses_a_deadlock_is_rebuilt_again(db: Harness, monkeypatch) -> None:
    # Chunks of several workers (or hosts) can deadlock with each other or with a run of the other
    # source; the loser rolled back and its chunk is PENDING again: the recompute goes on.
    from sqlalchemy import exc

    from xrdagg.jobs import recompute as recompute_module
    from xrdagg.jobs.recompute import Recompute

    fed = _rows(db, "fed", 1500, 7)
    db.run("fed10", T0 + timedelta(days=10))
    _tamper(db)
    rebuild, calls = recompute_module.rebuild_chunk, []

    def deadlocking_once(conn, chunk, watermark):  # type: ignore[no-untyped-def]
        calls.append(chunk.start)
        rows = rebuild(conn, chunk, watermark)  # its writes are rolled back with it
        if len(calls) == 2:
            raise exc.OperationalError("DELETE …", {}, _DeadlockError("deadlock detected"))
        return rows

    monkeypatch.setattr(recompute_module, "rebuild_chunk", deadlocking_once)
    job = Recompute(db.engine, [db.jobs["fed10"]])
    recompute_id, chunks = job.start(
        T0 - timedelta(days=1), T0 + timedelta(days=4), 1_000_000, max_days=1
    )
    done = job.run(recompute_id, chunks)
    assert len(calls) == len(chunks) + 1 and calls[1] == calls[2]  # the same chunk, taken again
    assert sorted(r.chunk.start for r in done) == sorted(c.start for c in chunks)
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed])
