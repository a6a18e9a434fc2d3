"""Exclusion across processes (issue 9): overlapping rebuilds, leased pauses with owners.

Every case ends with the tables equal to the from-scratch reference, or with a clear refusal
naming who holds the jobs; and no job stays paused for ever.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from tests.helpers import Harness, check_invariant, generated_rows, wait_until
from tests.reference import RefTopology
from xrdagg.config import PROJECT_ROOT
from xrdagg.jobs.runner import RunReport

T0 = datetime(2024, 3, 1)


class Proc:
    """`python -m tests.runner_process OPTIONS -- xrdagg ARGS`, its output collected as it
    comes (so that a test can wait for a line)."""

    def __init__(self, db: Harness, options: list[str], args: list[str], **env: str) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.runner_process", *options, "--", *args],
            cwd=PROJECT_ROOT,
            env={**os.environ, **db.backend.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until(
            lambda: any(text in line for line in self.lines) or self.popen.poll() is not None,
            timeout=timeout,
            what=f"{text!r} from the process",
        )
        assert any(text in line for line in self.lines), self.output

    def finish(self, timeout: float = 120) -> int:
        code = self.popen.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def _loaded(db: Harness, n: int = 2000) -> list[dict]:
    fed = generated_rows(n, start=T0, days=3, seed=91)
    db.insert_raw("fed", fed)
    db.run("fed10", T0 + timedelta(days=2))
    return fed


_RECOMPUTE_3_DAYS = ["recompute", "--from", "2024-03-01", "--to", "2024-03-03", "--job", "fed10"]


def test_two_overlapping_recomputes_never_double_count(db: Harness, tmp_path: Path) -> None:
    fed = _loaded(db)
    release = tmp_path / "release"
    args = _RECOMPUTE_3_DAYS
    first = Proc(db, ["--hold-chunk", str(release)], args)
    try:
        first.wait_for("chunk written")  # the first holds its first chunk, written, not committed
        second = Proc(db, [], args)
        # The second is refused at once, naming the holder (or, were it to wait, it would have
        # to end with the same tables).
        _settle(second, 5)
    finally:
        release.touch()
    assert first.finish() == 0, first.output
    code = second.finish()
    assert code in (0, 2), second.output
    if code == 2:
        assert re.search(rf"held by recompute \d+ \(host .*, pid {first.popen.pid},", second.output)
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed])
    # SQLite has one writer: the second may wait for the first's write lock and then run after
    # it (the same tables). PostgreSQL writes concurrently: the second must be refused.
    if db.dialect != "sqlite":
        assert code == 2, "the second recompute went on instead of being refused"


def _settle(proc: Proc, seconds: float) -> None:
    """Give `proc` up to `seconds` to exit (a refusal is quick; a waiter never exits here)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=seconds)


def test_a_shorter_recompute_cannot_lift_the_pause_of_a_longer_one(
    db: Harness, tmp_path: Path
) -> None:
    fed = _loaded(db)
    release = tmp_path / "release"
    long = Proc(
        db,
        ["--hold-after-chunk", str(release)],
        # A chunk a day: it holds between two of them.
        [*_RECOMPUTE_3_DAYS, "--max-chunk-days", "1"],
    )
    long.wait_for("chunk committed")  # between two chunks: it holds its pause, no lock
    # Overlapping: refused, naming the holder. Disjoint (another day): allowed, and when it
    # ends it removes only its own pause.
    overlapping = Proc(db, [], ["recompute", "--from", "2024-03-02", "--to", "2024-03-02"])
    assert overlapping.finish() == 2, overlapping.output
    assert re.search(rf"held by recompute \d+ \(host .*, pid {long.popen.pid},", overlapping.output)
    disjoint = Proc(db, [], ["recompute", "--from", "2024-02-20", "--to", "2024-02-21"])
    assert disjoint.finish() == 0, disjoint.output
    # Rows arrive meanwhile: the job stays paused while the long recompute works.
    late = generated_rows(300, start=T0 + timedelta(hours=30), days=0.5, seed=92)
    for row in late:
        row["insert_date"] = row["end_date"] + timedelta(minutes=5)
    db.insert_raw("fed", late)
    report = db.run("fed10", T0 + timedelta(days=3))
    assert report.outcome == "SKIPPED" and f"pid {long.popen.pid}," in report.message
    release.touch()
    assert long.finish() == 0, long.output
    assert db.run("fed10", T0 + timedelta(days=3)).outcome == "OK"
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed + late])


def test_sigterm_during_apply_releases_the_pause(db: Harness, tmp_path: Path) -> None:
    fed = _loaded(db, 500)
    release = tmp_path / "release"
    apply = Proc(
        db, ["--hold-apply", str(release)], ["topology", "apply", "--dir", str(_topology(tmp_path))]
    )
    apply.wait_for("apply written")
    skipped = db.run("fed10", T0 + timedelta(days=3)).message
    # SQLite: the apply's transaction holds the one write lock, so the run cannot even look.
    busy = db.dialect == "sqlite" and "database is busy" in skipped
    assert busy or "paused by topology apply" in skipped, skipped
    apply.popen.send_signal(signal.SIGTERM)
    assert apply.finish() != 0, apply.output
    # Rolled back, and released: the next run goes on at once.
    assert db.run("fed10", T0 + timedelta(days=3)).outcome == "OK"
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed])


def test_sigkill_during_apply_is_cleared_when_the_lease_expires(
    db: Harness, tmp_path: Path
) -> None:
    fed = _loaded(db, 500)
    release = tmp_path / "release"
    apply = Proc(
        db,
        ["--hold-apply", str(release)],
        ["topology", "apply", "--dir", str(_topology(tmp_path))],
        XRDAGG_PAUSE_LEASE_SECONDS="3",
    )
    apply.wait_for("apply written")
    apply.popen.kill()
    assert apply.finish() == -9
    assert "paused by topology apply" in db.run("fed10", T0 + timedelta(days=3)).message
    wait_until(
        lambda: db.run("fed10", T0 + timedelta(days=3)).outcome == "OK",
        timeout=30,
        interval=0.5,
        what="the dead apply's lease to expire",
    )
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed])


def _topology(tmp_path: Path) -> Path:
    """The test topology with one domain moved to another site."""
    import shutil

    from tests.helpers import TEST_TOPOLOGY

    target = tmp_path / "topology"
    shutil.copytree(TEST_TOPOLOGY, target)
    site_map = target / "site_topology.json"
    text = site_map.read_text()
    site_map.write_text(text.replace('"to_value": "BNL-ATLAS"', '"to_value": "BNL-MOVED"', 1))
    return target


def test_a_daily_run_waiting_for_an_apply_rolls_up_what_the_apply_wrote(
    db: Harness, tmp_path: Path
) -> None:
    # `xrdagg recompute` runs the daily job waiting for a run in flight; here it waits for an
    # apply, which holds the daily job off while it rolls up the daily rows of the keys it
    # changed. Once the apply has committed, the waiting run must roll its days up from what
    # the apply wrote, not from the snapshot it took before (on PostgreSQL it fails to
    # serialize and starts again): else the old site's daily rows come back.
    db.run("daily")  # the daily job has its T_AGENT row, and nothing to roll up yet
    fed = _loaded(db, 500)  # days left for the daily job to roll up
    topology = _topology(tmp_path)
    release = tmp_path / "release"
    apply = Proc(db, ["--hold-apply", str(release)], ["topology", "apply", "--dir", str(topology)])
    apply.wait_for("apply written")
    reports: list[RunReport] = []
    waiting = threading.Thread(
        target=lambda: reports.append(db.runner.run(db.jobs["daily"], wait=True))
    )
    waiting.start()
    waiting.join(timeout=2)
    assert waiting.is_alive(), reports  # held off by the apply
    release.touch()
    assert apply.finish() == 0, apply.output
    waiting.join(timeout=60)
    assert reports and reports[0].outcome == "OK", reports
    check_invariant(db, [("fed", r) for r in fed], RefTopology.from_dir(topology))


def test_several_owners_each_lift_only_their_own_pause(db: Harness, cli) -> None:
    from xrdagg.jobs.pause import PauseLease, RebuildBusyError

    day = timedelta(days=1)
    first = PauseLease(db.engine, ["fed10"], "recompute 101", day_from=T0, day_to=T0 + day)
    other_days = PauseLease(
        db.engine, ["fed10"], "recompute 102", day_from=T0 + 5 * day, day_to=T0 + 6 * day
    )
    with first, other_days:
        # Overlapping days of another owner: refused, naming both holders' identity.
        overlapping = PauseLease(
            db.engine, ["fed10"], "recompute 103", day_from=T0 + day, day_to=T0 + 2 * day
        )
        try:
            overlapping.acquire()
            raise AssertionError("an overlapping rebuild was let in")
        except RebuildBusyError as refused:
            assert "held by recompute 101" in str(refused) and f"pid {os.getpid()}" in str(refused)
        other_days.release()  # removes its own pause only
        report = db.run("fed10", T0 + 3 * day)
        assert report.outcome == "SKIPPED" and "paused by recompute 101" in report.message
        assert report.paused
        status = cli("status")
        # WARNING (a Nagios plugin): the job is held, not broken.
        assert status.exit_code == 1 and "fed10: paused by recompute 101" in status.output
        # Its holder is alive on this host: `resume` keeps it unless forced.
        kept = cli("resume", "fed10")
        assert kept.exit_code == 2 and "kept the pause of live recompute 101" in kept.output
    assert db.run("fed10", T0 + 3 * day).outcome == "OK"
    assert cli("status").exit_code == 0


def test_resume_clears_a_dead_holders_pause_and_force_any(db: Harness, cli) -> None:
    from sqlalchemy import select

    from xrdagg.db.tables import t_job_pause
    from xrdagg.jobs.pause import PauseLease

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone_pid = int(dead.stdout)  # a pid that has exited on this host
    lease = PauseLease(db.engine, ["fed10", "eos10"], "topology apply")
    lease.pid = gone_pid  # as the process that died would have written it
    lease.acquire()
    lease._stop.set()  # the dead do not beat
    result = cli("resume")
    assert result.exit_code == 0, result.output
    assert "fed10: cleared the pause of topology apply" in result.output
    assert "eos10: cleared" in result.output
    live = PauseLease(db.engine, ["fed10"], "recompute 7").acquire()
    assert cli("resume", "fed10").exit_code == 2
    forced = cli("resume", "fed10", "--force")
    assert forced.exit_code == 0 and "cleared the pause of recompute 7" in forced.output
    with db.engine.connect() as conn:
        assert conn.execute(select(t_job_pause)).all() == []
    live.release()


def test_fed10_and_eos10_at_once_never_report_a_lock_that_is_not_there(db: Harness) -> None:
    """As `serve` starts them: both resolve the same new hosts into the shared cache. A
    snapshot conflict is retried, never reported as 'locked by another session'."""
    fed = generated_rows(1500, start=T0, days=2, seed=93)
    eos = generated_rows(1500, start=T0, days=2, seed=93, source="eos")
    db.insert_raw("fed", fed)
    db.insert_raw("eos", eos)
    reports = []
    for step in range(1, 9):
        until = T0 + timedelta(hours=6 * step)
        threads = [
            threading.Thread(
                target=lambda job=job, until=until: reports.append(
                    db.runner.run(db.jobs[job], until=until)
                )
            )
            for job in ("fed10", "eos10")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    bad = [r.summary() for r in reports if r.outcome != "OK" and "locked" in r.message]
    assert not bad, bad
    assert all(r.outcome == "OK" for r in reports), [r.summary() for r in reports]
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed] + [("eos", r) for r in eos])


def test_a_recompute_whose_pause_is_forced_away_stops_before_writing(
    db: Harness, tmp_path: Path, cli
) -> None:
    fed = _loaded(db)
    release = tmp_path / "release"
    recompute = Proc(
        db,
        ["--hold-after-chunk", str(release)],
        # A chunk a day: it holds between two of them.
        [*_RECOMPUTE_3_DAYS, "--max-chunk-days", "1"],
    )
    try:
        recompute.wait_for("chunk committed")
        forced = cli("resume", "fed10", "--force")
        assert forced.exit_code == 0 and "cleared the pause of recompute" in forced.output
        # The runs go on at once (the watermark moves) ...
        assert db.run("fed10", T0 + timedelta(days=3)).outcome == "OK"
    finally:
        release.touch()
    # ... so the recompute must not rebuild another chunk under its old watermark.
    assert recompute.finish() == 2, recompute.output
    assert "was cleared meanwhile" in recompute.output
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed])
