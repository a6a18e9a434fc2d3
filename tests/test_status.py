"""`xrdagg status` as a Nagios plugin: the first line, the perfdata and the exit status for
OK, a lag warning, a lag critical, a paused job, a failed run, an unreachable database and a
configuration error."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from tests.helpers import Harness, raw_row
from xrdagg.db.dialect import db_now
from xrdagg.db.tables import t_agent, t_topology_load
from xrdagg.jobs.pause import PauseLease

FIRST_LINE = re.compile(r"^XRDAGG (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| [^\n]+)?$")
JOBS = ("fed10", "eos10", "daily", "housekeeping")


def first_line(result) -> str:  # type: ignore[no-untyped-def]
    line = result.output.splitlines()[0]
    assert FIRST_LINE.match(line), line
    return line


def ran(db: Harness, lag_minutes: float) -> None:
    """Every job ran; each watermark set `lag_minutes` behind the database's clock."""
    db.insert_raw(
        "fed", [raw_row(end_date=datetime(2024, 3, 1), insert_date=datetime(2024, 3, 1),
                        server_host="eos01", server_domain="cern.ch")],
    )  # fmt: skip
    for job in JOBS:
        db.run(job, datetime(2024, 3, 2))
    with db.engine.begin() as conn:
        now = conn.execute(select(db_now())).scalar_one()
        conn.execute(update(t_agent).values(watermark=now - timedelta(minutes=lag_minutes)))


def test_ok_with_perfdata(db: Harness, cli) -> None:
    ran(db, 10)
    result = cli("status", "--warning", "30", "--critical", "60")
    assert result.exit_code == 0
    line = first_line(result)
    assert line.startswith("XRDAGG OK - 5 jobs up to date | ")  # the shipped jobs, audit included
    perf = dict(p.split("=", 1) for p in line.split(" | ")[1].split())
    assert set(perf) == {"fed10_lag", "eos10_lag", "daily_lag"}
    value, warn, crit, low = perf["fed10_lag"].split(";")
    assert 600 <= float(value.rstrip("s")) < 700 and (warn, crit, low) == ("1800", "3600", "0")
    assert "fed10: watermark" in result.output  # a detail line per job


@pytest.mark.parametrize(
    ("lag", "code", "state"), [(45, 1, "WARNING"), (90, 2, "CRITICAL"), (5, 0, "OK")]
)
def test_lag_thresholds(db: Harness, cli, lag: float, code: int, state: str) -> None:
    ran(db, lag)
    result = cli("status", "--warning", "30", "--critical", "60")
    assert result.exit_code == code, result.output
    line = first_line(result)
    assert line.startswith(f"XRDAGG {state} - ")
    if code:
        assert "fed10: lags" in line


def test_paused_job_names_its_owner_and_since(db: Harness, cli) -> None:
    ran(db, 1)
    lease = PauseLease(db.engine, ["fed10"], "recompute 7").acquire()
    try:
        result = cli("status")
    finally:
        lease.release()
    assert result.exit_code == 1
    line = first_line(result)
    assert line.startswith("XRDAGG WARNING - fed10: paused by recompute 7 (host ")
    assert ", since 20" in line


def test_failed_run_is_critical(db: Harness, cli) -> None:
    for job in JOBS:
        db.run(job, datetime(2024, 3, 2))
    with db.engine.begin() as conn:  # no topology: the next run fails
        conn.execute(delete(t_topology_load))
    db.insert_raw(
        "fed", [raw_row(end_date=datetime(2024, 3, 1), insert_date=datetime(2024, 3, 1, 12))]
    )
    assert db.runner.run(db.jobs["fed10"], until=datetime(2024, 3, 3)).outcome == "FAILED"
    result = cli("status")
    assert result.exit_code == 2
    line = first_line(result)
    assert line.startswith("XRDAGG CRITICAL - fed10: last run failed at ")
    assert "no topology is loaded" in line


def test_never_ran_is_critical_with_a_threshold(db: Harness, cli) -> None:
    result = cli("status", "--critical", "30")
    assert result.exit_code == 2 and "fed10: has never run" in first_line(result)


def _status(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from xrdagg.cli import main

    return CliRunner().invoke(main, ["status", *args], env=env)


def test_unreachable_database_is_critical() -> None:
    # Port 9 (discard) has no PostgreSQL: the connection is refused at once.
    result = _status({"XRDAGG_DATABASE_URL": "postgresql://xrdagg@127.0.0.1:9/none"})
    assert result.exit_code == 2
    assert first_line(result).startswith("XRDAGG CRITICAL - database unreachable: ")


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"XRDAGG_SAFETY_LAG_SECONDS": "soon"}, [], "XRDAGG_SAFETY_LAG_SECONDS"),
        ({"XRDAGG_JOBS_DIR": "/nonexistent/jobs"}, [], "configuration"),
        ({"XRDAGG_DATABASE_URL": "nonsense://"}, [], "XRDAGG_DATABASE_URL"),
        ({}, ["--warning", "ten"], "--warning"),
        ({}, ["--warning", "60", "--critical", "30"], "--warning 60 is above --critical 30"),
    ],
)
def test_configuration_errors_are_unknown(tmp_path, env, args, says) -> None:  # type: ignore[no-untyped-def]
    base = {"XRDAGG_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = _status({**base, **env}, *args)
    assert result.exit_code == 3, result.output
    line = first_line(result)
    assert line.startswith("XRDAGG UNKNOWN - ") and says in line


def test_json_keeps_the_state(db: Harness, cli) -> None:
    import json

    ran(db, 90)
    result = cli("status", "--json", "--critical", "60")
    document = json.loads(result.output)
    assert result.exit_code == 2 and document["state"] == "CRITICAL" and not document["ok"]
    assert any(p.startswith("fed10: lags") for p in document["problems"])
