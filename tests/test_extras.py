"""The base install leaves the drivers, pandas and pyarrow out: the jobs run without them, and a
command that needs one says which extra brings it."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest
from click.testing import CliRunner

from tests.helpers import Harness, fed
from xrdagg.cli import main
from xrdagg.config import PROJECT_ROOT


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    # A None entry in sys.modules makes `import name` fail, as when it is not installed.
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://nobody@127.0.0.1:1/none", "psycopg", "postgres"),
        ("oracle://nobody@127.0.0.1:1/?service_name=none", "oracledb", "oracle"),
    ],
)
def test_a_missing_driver_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    _hide(monkeypatch, module)
    result = CliRunner().invoke(main, ["status"], env={"XRDAGG_DATABASE_URL": url})
    assert result.exit_code == 3, result.output  # UNKNOWN: a Nagios check that cannot check
    assert f"pip install 'xrdagg[{extra}]'" in result.output


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["demo"], "data"),
        (["raw", "generate", "--source", "fed", "--rows", "10"], "data"),
    ],
)
def test_sample_data_without_pandas_names_the_data_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path, args: list[str], extra: str
) -> None:
    _hide(monkeypatch, "pandas")
    env = {"XRDAGG_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert f"pip install 'xrdagg[{extra}]'" in result.output


def test_a_parquet_file_without_pyarrow_names_the_parquet_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _hide(monkeypatch, "pyarrow")
    (tmp_path / "in.parquet").write_bytes(b"PAR1")
    env = {"XRDAGG_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = CliRunner().invoke(
        main, ["raw", "load", str(tmp_path / "in.parquet"), "--source", "fed"], env=env
    )
    assert result.exit_code == 2, result.output
    assert "pip install 'xrdagg[parquet]'" in result.output


def test_the_jobs_and_reports_run_without_pandas(tmp_path) -> None:
    """What the base install runs (schema, topology, jobs, status, check), in a process where
    pandas, numpy and pyarrow cannot be imported."""
    script = f"""
import sys
from datetime import datetime
for name in ("pandas", "numpy", "pyarrow"):
    sys.modules[name] = None
from click.testing import CliRunner
from xrdagg.cli import main
env = {{"XRDAGG_DATABASE_URL": "sqlite:///{tmp_path / "base.db"}"}}
for args in (["db", "upgrade"], ["topology", "load"], ["run"], ["status"], ["check"],
             ["status", "--json"], ["topology", "unresolved"]):
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)
    print(" ".join(args), "ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "topology unresolved ok" in done.stdout


def test_plot_draws_the_throughput(db: Harness, cli, tmp_path) -> None:
    db.insert_raw("fed", [fed(), fed(end_date=datetime(2024, 3, 1, 2))])
    assert cli("run", "--until", "2024-03-02 00:00:00").exit_code == 0
    out = tmp_path / "t.png"
    result = cli("plot", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert "points" in result.output


def test_plot_without_matplotlib_names_the_plots_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    _hide(monkeypatch, "matplotlib")
    env = {"XRDAGG_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = CliRunner().invoke(main, ["plot", "--out", str(tmp_path / "t.png")], env=env)
    assert result.exit_code == 2, result.output
    assert "pip install 'xrdagg[plots]'" in result.output
