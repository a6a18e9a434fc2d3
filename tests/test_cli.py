"""The command line: help with an example everywhere, exit codes, output a person can read."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from click.testing import CliRunner

from tests.helpers import Harness, fed
from xrdagg.cli import iter_commands, main


@pytest.mark.parametrize(
    ("name", "command"), iter_commands(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_command_has_help_with_an_example(name: str, command) -> None:
    args = [*name.split()[1:], "--help"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert "Example:" in result.output, f"`{name} --help` has no example"


def test_run_prints_one_line_per_job_and_is_idempotent(db: Harness, cli) -> None:
    db.insert_raw(
        "fed",
        [fed(), fed(end_date=datetime(2024, 3, 1, 1), insert_date=datetime(2024, 3, 1, 1, 1))],
    )
    first = cli("run", "--until", "2024-03-02 00:00:00")
    assert first.exit_code == 0, first.output
    lines = first.output.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "fed10",
        "eos10",
        "daily",
        "audit",
        "housekeeping",
    ]
    assert "2 rows" in lines[0] and "2024-03-02 00:00:00]" in lines[0]
    again = cli("run", "fed10", "--until", "2024-03-02 00:00:00")
    assert "nothing new" in again.output or " 0 rows" in again.output


def test_the_run_log_counts_the_statistics_rows_written(db: Harness) -> None:
    # A first run inserts into empty tables: rows written is exactly what the tables then hold.
    # (psycopg reported -1 for a Core INSERT … SELECT, and PostgreSQL runs logged 0.)
    db.insert_raw(
        "fed",
        [fed(), fed(end_date=datetime(2024, 3, 1, 1), insert_date=datetime(2024, 3, 1, 1, 1))],
    )
    report = db.run("fed10", datetime(2024, 3, 2))
    held = sum(
        len(db.table(name))
        for name in ("t_stats_avg", "t_user_activity", "t_stats_access_pattern", "t_msg_rate")
    )
    assert report.rows_read == 2
    assert held > 0 and report.rows_written == held


def test_unknown_job_and_bad_until_are_refused(db: Harness, cli) -> None:
    assert "unknown job(s) nope" in cli("run", "nope").output
    result = cli("run", "--until", "tomorrow")
    assert result.exit_code == 2 and "--until" in result.output


def test_check_and_status(db: Harness, cli) -> None:
    db.insert_raw("fed", [fed(insert_date=None), fed(client_domain="isp.net", client_host="h")])
    assert cli("run", "--until", "2024-03-02").exit_code == 0
    check = cli("check")
    assert "NULL INSERT_DATE" in check.output and "isp.net" in check.output
    status = cli("status")
    assert "fed10" in status.output and "OK" in status.output


def test_demo_on_a_fresh_embedded_database(tmp_path) -> None:
    env = {"XRDAGG_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    first = CliRunner().invoke(main, ["demo", "--fed-rows", "3000", "--eos-rows", "1000"], env=env)
    assert first.exit_code == 0, first.output
    for expected in ("sample data: 3000 records into T_RAW_FED", "fed10: window", "top site pairs",
                     "unresolved:", "NULL INSERT_DATE", "lag_minutes"):  # fmt: skip
        assert expected in first.output
    again = CliRunner().invoke(main, ["demo"], env=env)
    assert again.exit_code == 0 and "4000 raw records already there" in again.output
    # A second demo counts nothing twice: the jobs' new windows hold no rows.
    assert re.search(r"fed10: (nothing new|window \(.*\] 0 rows)", again.output), again.output
