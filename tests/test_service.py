"""`xrdagg serve` and `xrdagg status`: several instances, signals, outages, exit codes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from tests.helpers import Harness, raw_row
from tests.test_invariant import check_invariant
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.dialect import db_now
from xrdagg.db.tables import t_job_run, t_topology_load

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


def _serve(db: Harness, jobs_dir: Path, *options: str) -> subprocess.Popen:
    env = {
        **os.environ,
        **db.backend.env,
        "XRDAGG_JOBS_DIR": str(jobs_dir),
        "XRDAGG_SAFETY_LAG_SECONDS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.runner_process", *options, "--", "serve"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _arrive(db: Harness, count: int, rng: random.Random) -> list[dict]:
    """Rows arriving now: INSERT_DATE is the database's current time, as a collector's."""
    with db.engine.connect() as conn:
        now = conn.execute(select(db_now())).scalar_one()
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


def _stop(process: subprocess.Popen, timeout: float = 60) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def _catch_up(db: Harness) -> None:
    time.sleep(1.5)  # past the safety lag of the last arrivals
    db.run("fed10", datetime(2100, 1, 1))
    db.run("daily")


def _server_only(db: Harness) -> None:
    if db.dialect == "sqlite":
        pytest.skip(
            "several service instances are a server-database deployment (PostgreSQL, Oracle)"
        )


def test_two_services_on_one_database_never_count_twice(db: Harness, fast_jobs: Path) -> None:
    _server_only(db)
    rng = random.Random(5)
    first, second = _serve(db, fast_jobs), _serve(db, fast_jobs)
    rows = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        rows += _arrive(db, 40, rng)
        time.sleep(0.25)
    time.sleep(2)
    outputs = [_stop(first), _stop(second)]
    _catch_up(db)
    check_invariant(db, [("fed", r) for r in rows])
    with db.engine.connect() as conn:
        runs = conn.execute(
            select(t_job_run.c.process_id, t_job_run.c.outcome).where(
                t_job_run.c.job_name == "fed10"
            )
        ).all()
    pids = {pid for pid, outcome in runs if outcome == "OK"}
    assert len(pids) >= 2, "both services should have run the job"
    assert all("Traceback" not in out for out in outputs)


def test_sigterm_mid_run_lets_the_run_finish(db: Harness, fast_jobs: Path) -> None:
    _server_only(db)
    rows = _arrive(db, 200, random.Random(6))
    time.sleep(1.5)
    service = _serve(db, fast_jobs, "--sleep", "3")
    assert service.stdout is not None
    line = service.stdout.readline()
    while line and line.strip() != "aggregated":
        line = service.stdout.readline()
    assert line.strip() == "aggregated"
    started = time.monotonic()
    output = _stop(service)
    assert time.monotonic() - started < 30
    assert "stopping: waiting for runs in flight" in output and "stopped" in output
    assert db.watermark("fed10") is not None  # the run in flight committed
    _catch_up(db)
    check_invariant(db, [("fed", r) for r in rows])


def _local_cluster() -> tuple[str, str] | None:
    url = os.environ.get("XRDAGG_TEST_POSTGRES_URL", "")
    if "127.0.0.1" not in url and "localhost" not in url:
        return None
    if (
        not shutil.which("pg_ctlcluster")
        or not Path("/etc/postgresql").is_dir()
        or os.geteuid() != 0
    ):
        return None
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return version, "main"


def test_a_database_restart_is_survived_and_caught_up(db: Harness, fast_jobs: Path) -> None:
    if db.dialect != "postgresql":
        pytest.skip("restarts the local PostgreSQL server")
    cluster = _local_cluster()
    if cluster is None:
        pytest.skip(
            "needs the machine's own PostgreSQL cluster (pg_ctlcluster, root) to restart it"
        )
    rng = random.Random(7)
    service = _serve(db, fast_jobs)
    rows = _arrive(db, 100, rng)
    time.sleep(3)
    control = ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster]
    subprocess.run([*control, "stop", "-m", "fast"], check=True)
    try:
        time.sleep(5)
    finally:
        subprocess.run([*control, "start"], check=True)
    time.sleep(1)
    rows += _arrive(db, 100, rng)
    time.sleep(8)  # the service's backoff, then a run
    output = _stop(service)
    assert "database unreachable, retrying" in output
    assert service.returncode == 0
    _catch_up(db)
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
