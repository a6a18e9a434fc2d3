"""Job identity (issue 9): one incremental job per source, a renamed job never counts history
again, and a schedule the scheduler would refuse is refused at load."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import Harness, check_invariant, generated_rows
from xrdagg.cli import main
from xrdagg.config import PROJECT_ROOT
from xrdagg.errors import ConfigError
from xrdagg.jobs.specs import JobSpec, load_job_specs

T0 = datetime(2024, 3, 1)
JOBS = (PROJECT_ROOT / "jobs" / "jobs.toml").read_text()


def _jobs_dir(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "jobs"
    directory.mkdir()
    (directory / "jobs.toml").write_text(text)
    return directory


def test_a_second_job_of_one_source_is_refused_at_load(tmp_path: Path) -> None:
    extra = '\n[[job]]\nname = "fed_10min"\nkind = "fed"\ninterval_minutes = 10\n'
    with pytest.raises(
        ConfigError, match=r"jobs fed10, fed_10min all read source 'fed'.*jobs rename"
    ):
        load_job_specs(_jobs_dir(tmp_path, JOBS + extra))


@pytest.mark.parametrize("cron", ["99 99 * * *", "0 0 * * funday", "*/0 * * * *"])
def test_an_invalid_cron_is_refused_at_load(tmp_path: Path, cron: str) -> None:
    text = JOBS.replace('cron = "17 3 * * *"', f'cron = "{cron}"')
    with pytest.raises(ConfigError, match=r"housekeeping\): 'cron' .* is not valid"):
        load_job_specs(_jobs_dir(tmp_path, text))
    result = CliRunner().invoke(
        main, ["serve"], env={"XRDAGG_JOBS_DIR": str(tmp_path / "jobs")}, catch_exceptions=False
    )
    assert result.exit_code == 2 and "is not valid" in result.output  # no traceback


def test_a_renamed_job_is_refused_until_its_watermark_is_carried_over(db: Harness, cli) -> None:
    fed = generated_rows(800, start=T0, days=2, seed=41)
    db.insert_raw("fed", fed)
    db.run("fed10", T0 + timedelta(days=1))
    renamed = JobSpec(name="fed_10min", kind="fed", interval_minutes=10)
    report = db.runner.run(renamed, until=T0 + timedelta(days=3))
    assert report.outcome == "FAILED"
    assert "xrdagg jobs rename fed10 fed_10min" in report.message
    result = cli("jobs", "rename", "fed10", "fed_10min")
    assert result.exit_code == 0 and "job fed10 is now fed_10min" in result.output, result.output
    assert db.runner.run(renamed, until=T0 + timedelta(days=3)).outcome == "OK"
    assert db.watermark("fed_10min") == T0 + timedelta(days=3)
    db.run("daily")
    # And back (the reference reads the watermark of "fed10"): every row counted once.
    assert cli("jobs", "rename", "fed_10min", "fed10").exit_code == 0
    check_invariant(db, [("fed", r) for r in fed])
    # Renaming onto a job that has run is refused: a watermark would be lost.
    db.run("eos10", T0)
    refused = cli("jobs", "rename", "fed10", "eos10")
    assert refused.exit_code == 2 and "already has a watermark" in refused.output
