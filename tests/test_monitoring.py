"""Metrics computed at scrape time from the database, and what `xrdagg run` tells an operator:
rows waiting behind the safety lag, one line for a failed run (details with -v)."""

from __future__ import annotations

import calendar
import os
import socket
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, select

from tests.helpers import Harness, at, fed
from xrdagg.db.dialect import db_now
from xrdagg.db.tables import t_topology_load
from xrdagg.jobs.pause import PauseLease
from xrdagg.service import Metrics


def _now(db: Harness) -> datetime:
    with db.engine.connect() as conn:
        return conn.execute(select(db_now())).scalar_one()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, str], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            values[(sample.name, sample.labels.get("job", ""))] = sample.value
    return values


def test_metrics_are_read_from_the_database_at_each_scrape(db: Harness) -> None:
    db.insert_raw("fed", [fed(end_date=at(30), insert_date=at(31))])
    for job in ("fed10", "eos10", "daily"):
        db.run(job, datetime(2024, 3, 2))
    now = _now(db)
    # Three rows inside the safety lag (300 s by default) of database now.
    db.insert_raw("fed", [fed(end_date=now - timedelta(seconds=90), insert_date=now - timedelta(seconds=60)) for _ in range(3)])  # fmt: skip
    metrics = Metrics(_free_port(), "127.0.0.1")
    metrics.watch(db.engine, db.backend.settings, list(db.jobs.values()))
    try:
        port = metrics.server.server_port
        first = _scrape(port)
        assert first[("xrdagg_database_up", "")] == 1
        watermark = calendar.timegm(datetime(2024, 3, 2).timetuple())  # UTC epoch seconds
        assert first[("xrdagg_job_watermark_timestamp_seconds", "fed10")] == watermark
        assert (
            first[("xrdagg_job_lag_seconds", "fed10")]
            >= (now - datetime(2024, 3, 2)).total_seconds() - 1
        )
        assert first[("xrdagg_rows_behind_safety_lag", "fed10")] == 3
        assert first[("xrdagg_rows_behind_safety_lag", "eos10")] == 0
        assert ("xrdagg_rows_behind_safety_lag", "daily") not in first  # not a raw-source job
        assert first[("xrdagg_job_paused", "fed10")] == 0
        assert first[("xrdagg_job_last_success_timestamp_seconds", "fed10")] > 0
        # Another host pauses the job: the next scrape says so, nothing in this process told it.
        lease = PauseLease(db.engine, ["fed10"], "recompute 3").acquire()
        try:
            scraped = _scrape(port)
        finally:
            lease.release()
        assert scraped[("xrdagg_job_paused", "fed10")] == 1
        assert scraped[("xrdagg_job_paused_seconds", "fed10")] >= 0  # its owner's pause, aged
    finally:
        metrics.server.shutdown()
        metrics.server.server_close()


def test_metrics_say_when_the_database_is_down() -> None:
    from sqlalchemy import create_engine

    from xrdagg.config import Settings
    from xrdagg.jobs.specs import load_job_specs

    settings = Settings.from_env({"XRDAGG_DATABASE_URL": "postgresql://x@127.0.0.1:9/none"})
    engine = create_engine("postgresql+psycopg://x@127.0.0.1:9/none")
    metrics = Metrics(_free_port(), "127.0.0.1")
    metrics.watch(engine, settings, load_job_specs(settings.jobs_dir))
    try:
        values = _scrape(metrics.server.server_port)
        assert values[("xrdagg_database_up", "")] == 0
        assert not any(name == "xrdagg_job_lag_seconds" for name, _ in values)
    finally:
        metrics.server.shutdown()
        metrics.server.server_close()


def test_run_says_how_many_rows_wait_behind_the_safety_lag(db: Harness, cli) -> None:
    now = _now(db)
    db.insert_raw("fed", [fed(end_date=now - timedelta(seconds=90), insert_date=now - timedelta(seconds=30)) for _ in range(2)])  # fmt: skip
    result = cli("run", "fed10", "eos10")
    assert result.exit_code == 0, result.output
    fed_line, eos_line = result.output.strip().splitlines()
    assert fed_line.endswith("; 2 rows wait behind the 300 s safety lag"), fed_line
    assert eos_line.endswith("; 0 rows wait behind the 300 s safety lag"), eos_line


def test_a_failed_run_is_one_line_and_its_details_come_with_v(db: Harness) -> None:
    db.insert_raw("fed", [fed()])
    with db.engine.begin() as conn:  # no topology: the run fails
        conn.execute(delete(t_topology_load))
    env = {**os.environ, **db.backend.env}
    command = [sys.executable, "-m", "xrdagg.cli", "run", "fed10", "--until", "2024-03-02"]
    plain = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1
    lines = (plain.stdout + plain.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fed10: FAILED after "), lines
    assert "no topology is loaded" in lines[0] and "Traceback" not in plain.stderr
    verbose = subprocess.run(
        [*command[:3], "-v", *command[3:]], env=env, capture_output=True, text=True, timeout=120
    )
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
