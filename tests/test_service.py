"""`xrdagg serve` and `xrdagg status`: several instances, signals, outages, exit codes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from tests.helpers import TEST_TOPOLOGY, Harness, check_invariant, raw_row, wait_until
from tests.own_postgres import own_postgres
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.dialect import db_now
from xrdagg.db.tables import t_job_run, t_topology_load

SERVICE_SAFETY_LAG_S = 1

FAST_JOBS = """
[[job]]
name = "fed10"
kind = "fed"
interval_minutes = 0.02

[[job]]
name = "daily"
kind = "daily"
interval_minutes = 0.02
"""


@pytest.fixture
def fast_jobs(tmp_path: Path) -> Path:
    directory = tmp_path / "jobs"
    directory.mkdir()
    (directory / "jobs.toml").write_text(FAST_JOBS)
    return directory


class Service:
    """`xrdagg serve` in a process of its own (tests/runner_process.py), its output in a file
    that the test reads while it runs."""

    def __init__(self, db: Harness, jobs_dir: Path, log: Path, *options: str) -> None:
        env = {
            **os.environ,
            **db.backend.env,
            "XRDAGG_JOBS_DIR": str(jobs_dir),
            "XRDAGG_SAFETY_LAG_SECONDS": str(SERVICE_SAFETY_LAG_S),
        }
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.runner_process", *options, "--", "serve"],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, text: str) -> bool:
        return text in self.output()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> str:
        """Its whole output, once it has exited 0."""
        self.process.wait(timeout=timeout)
        output = self.output()
        assert self.process.returncode == 0, output
        return output

    def stop(self, timeout: float = 60) -> str:
        self.terminate()
        return self.wait(timeout)


@pytest.fixture
def serve(fast_jobs: Path, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start `xrdagg serve` on a database with the fast jobs; whatever a failed test left
    running is killed at the end."""
    services: list[Service] = []

    def start(db: Harness, *options: str) -> Service:
        service = Service(db, fast_jobs, tmp_path / f"serve-{len(services)}.log", *options)
        services.append(service)
        return service

    yield start
    for service in services:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait(timeout=30)


def _db_now(db: Harness) -> datetime:
    with db.engine.connect() as conn:
        return conn.execute(select(db_now())).scalar_one()


def _arrive(db: Harness, count: int, rng: random.Random) -> list[dict]:
    """Rows arriving now: INSERT_DATE is the database's current time, as a collector's."""
    now = _db_now(db)
    rows = []
    for _ in range(count):
        end = now - timedelta(seconds=rng.randint(0, 3000))
        rows.append(
            raw_row(start_date=end - timedelta(seconds=rng.randint(0, 2000)), end_date=end, insert_date=now,
                    server_host="eos01", server_domain="cern.ch", client_host=f"wn{rng.randint(1, 9)}",
                    client_domain=rng.choice(["bnl.gov", "unl.edu", "isp.net"]), user_vo="atlas",
                    read_bytes_at_close=rng.randint(0, 10**6), file_size=10**6)
        )  # fmt: skip
    db.insert_raw("fed", rows)
    return rows


def _wait_past(db: Harness, rows: list[dict], lag_seconds: float, what: str) -> None:
    """Until the database clock is more than `lag_seconds` past the last of `rows` arrived."""
    last = max(r["insert_date"] for r in rows) + timedelta(seconds=lag_seconds)
    wait_until(lambda: _db_now(db) > last, what=what)


def _aggregated(db: Harness, rows: list[dict]) -> bool:
    """Whether fed10's watermark has passed every one of `rows`."""
    watermark = db.watermark("fed10")
    return watermark is not None and watermark >= max(r["insert_date"] for r in rows)


def _catch_up(db: Harness, rows: list[dict]) -> None:
    _wait_past(db, rows, 0, "the database clock to pass the last arrival")
    db.run("fed10", datetime(2100, 1, 1))
    db.run("daily")


def _ok_runs_by_process(db: Harness, job: str) -> set[int]:
    with db.engine.connect() as conn:
        return set(
            conn.execute(
                select(t_job_run.c.process_id).where(
                    t_job_run.c.job_name == job, t_job_run.c.outcome == "OK"
                )
            ).scalars()
        )


def _outputs(*services: Service) -> str:
    """The services' exit codes and the end of their logs, for a failure message."""
    return "\n".join(
        f"--- service pid {s.process.pid}, exit {s.process.poll()}:\n{s.output()[-3000:]}"
        for s in services
    )


def _server_only(db: Harness) -> None:
    if db.dialect == "sqlite":
        pytest.skip(
            "several service instances are a server-database deployment (PostgreSQL, Oracle)"
        )


def test_two_services_on_one_database_never_count_twice(db: Harness, serve) -> None:
    _server_only(db)
    rng = random.Random(5)
    first, second = serve(db), serve(db)
    rows = []
    # The scenario: rows keep arriving, 40 every 0.25 s for 8 s, while both services run.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        rows += _arrive(db, 40, rng)
        time.sleep(0.25)
    wait_until(
        lambda: {first.process.pid, second.process.pid} <= _ok_runs_by_process(db, "fed10"),
        timeout=60,
        what="both services to have run fed10",
        details=lambda: _outputs(first, second),
    )
    outputs = [first.stop(), second.stop()]
    _catch_up(db, rows)
    check_invariant(db, [("fed", r) for r in rows])
    assert all("Traceback" not in out for out in outputs), outputs


def test_sigterm_mid_run_lets_the_run_finish(db: Harness, serve, tmp_path: Path) -> None:
    _server_only(db)
    rows = _arrive(db, 200, random.Random(6))
    _wait_past(db, rows, SERVICE_SAFETY_LAG_S, "the arrivals to be older than the safety lag")
    release = tmp_path / "release"
    service = serve(db, "--hold", str(release))  # each run waits before its commit for `release`
    try:
        wait_until(
            lambda: service.logged("aggregated"), timeout=60, what="the service's first fed10 run"
        )
        service.terminate()
        wait_until(
            lambda: service.logged("stopping: waiting for runs in flight"),
            what="the service to log that it is stopping",
        )
        assert service.process.poll() is None  # the run in flight keeps it
        assert db.watermark("fed10") is None  # and has not committed yet
    finally:
        release.touch()
    output = service.wait(timeout=30)
    assert "stopped" in output
    assert db.watermark("fed10") is not None  # the run in flight committed
    _catch_up(db, rows)
    check_invariant(db, [("fed", r) for r in rows])


@pytest.mark.postgres
def test_a_database_restart_is_survived_and_caught_up(serve) -> None:
    # A server of its own: stopping the shared one would cut off everyone else using it.
    with own_postgres() as (server, backend):
        db = Harness(backend)
        db.load_topology(TEST_TOPOLOGY)
        rng = random.Random(7)
        service = serve(db)
        rows = _arrive(db, 100, rng)
        wait_until(
            lambda: _aggregated(db, rows),
            timeout=60,
            what="the service to aggregate the first arrivals",
        )
        server.stop()
        try:
            wait_until(
                lambda: service.logged("database unreachable, retrying"),
                timeout=60,
                what="the service to log that the database is unreachable",
            )
        finally:
            server.start()
        rows += _arrive(db, 100, rng)
        wait_until(
            lambda: _aggregated(db, rows),
            timeout=120,  # the service's backoff (2 s, 4 s, …), then a run
            what="the service to catch up after the restart",
        )
        service.stop()
        _catch_up(db, rows)
        check_invariant(db, [("fed", r) for r in rows])


def test_status_exit_codes(db: Harness, cli) -> None:
    never = cli("status", "--max-lag", "30")
    assert never.exit_code == 2 and "fed10: has never run" in never.output
    db.insert_raw(
        "fed",
        [
            raw_row(
                end_date=datetime(2024, 3, 1),
                insert_date=datetime(2024, 3, 1),
                server_host="eos01",
                server_domain="cern.ch",
            )
        ],
    )
    for job in ("fed10", "eos10", "daily", "housekeeping"):
        db.run(job, datetime(2024, 3, 2))
    assert cli("status").exit_code == 0
    lagging = cli("status", "--max-lag", "30")
    assert lagging.exit_code == 2 and "fed10: lags" in lagging.output
    assert cli("status", "--max-lag", str(10**9)).exit_code == 0
    with db.engine.begin() as conn:  # no topology: the next run fails
        conn.execute(delete(t_topology_load))
    db.insert_raw(
        "fed", [raw_row(end_date=datetime(2024, 3, 1), insert_date=datetime(2024, 3, 1, 12))]
    )
    assert db.runner.run(db.jobs["fed10"], until=datetime(2024, 3, 3)).outcome == "FAILED"
    failed = cli("status", "--json")
    assert failed.exit_code == 2
    document = json.loads(failed.output)
    assert not document["ok"] and any("last run failed" in p for p in document["problems"])
    fed = next(j for j in document["jobs"] if j["job_name"] == "fed10")
    assert fed["last_outcome"] == "FAILED" and "no topology is loaded" in fed["last_error"]


def test_housekeeping_trims_only_what_it_is_told(db: Harness, tmp_path: Path) -> None:
    from xrdagg.jobs.specs import load_job_specs

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "jobs.toml").write_text(
        '[[job]]\nname = "hk"\nkind = "housekeeping"\nrun_log_days = 1\nretention_days = { t_stats_avg = 30 }\n'
    )
    spec = load_job_specs(jobs)[0]
    db.insert_raw(
        "fed",
        [
            raw_row(
                end_date=datetime(2024, 3, 1),
                insert_date=datetime(2024, 3, 1),
                server_host="a",
                server_domain="cern.ch",
            )
        ],
    )
    db.run("fed10", datetime(2024, 3, 2))
    db.run("daily")
    assert len(db.table("t_stats_avg")) == 1
    report = db.runner.run(spec)
    assert report.outcome == "OK"
    assert db.table("t_stats_avg").empty  # older than 30 days
    assert len(db.table("t_user_activity")) == 1 and len(db.table("mv_site_stats")) > 0  # kept
