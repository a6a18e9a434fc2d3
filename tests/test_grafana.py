"""The Grafana dashboard in deploy/grafana/: every query, with Grafana's macros and variables
expanded as its PostgreSQL data source expands them, executed against PostgreSQL and checked
against the reference sums."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy import text

from tests.helpers import T0
from tests.report_data import Loaded, data
from xrdagg.config import PROJECT_ROOT

__all__ = ["data"]

GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "xrdagg.json").read_text())
FROM, TO = T0, T0 + timedelta(days=2)
pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _quoted(values: list[str]) -> str:
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def expand(sql: str, variables: dict[str, list[str] | str], interval_s: int) -> str:
    """`sql` as Grafana's PostgreSQL data source sends it for [FROM, TO) and these variables.

    Macros (Grafana's documentation of the PostgreSQL data source): $__timeFilter(c) is
    `c BETWEEN 'from' AND 'to'`, $__timeFrom()/$__timeTo() the quoted bounds,
    $__timeGroupAlias(c, interval[, fill]) `floor(extract(epoch from c)/n)*n AS "time"`.
    A multi-value variable becomes a quoted list; a single value is substituted as written.
    """
    stamp = "'{:%Y-%m-%dT%H:%M:%SZ}'"
    sql = sql.replace("$__interval_ms", str(interval_s * 1000))
    sql = sql.replace("$__interval", f"{interval_s}s")
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m[1]} BETWEEN {stamp.format(FROM)} AND {stamp.format(TO)}",
        sql,
    )
    sql = sql.replace("$__timeFrom()", stamp.format(FROM)).replace("$__timeTo()", stamp.format(TO))

    def group(m: re.Match[str]) -> str:
        column, interval = (a.strip() for a in m[1].split(",")[:2])
        seconds = int(interval.rstrip("s"))
        return f'floor(extract(epoch from {column})/{seconds})*{seconds} AS "time"'

    sql = re.sub(r"\$__timeGroupAlias\(([^)]+)\)", group, sql)
    for name, value in variables.items():
        replacement = _quoted(value) if isinstance(value, list) else value
        sql = sql.replace(f"${name}", replacement)
    assert "$" not in sql, f"an unexpanded macro or variable: {sql}"
    return sql


def panels() -> list[dict[str, Any]]:
    return DASHBOARD["panels"]


def run_panel(data: Loaded, title: str, variables: dict[str, Any], interval_s: int = 600):  # type: ignore[no-untyped-def]
    panel = next(p for p in panels() if p["title"].startswith(title))
    sql = expand(panel["targets"][0]["rawSql"], variables, interval_s)
    with data.db.engine.connect() as conn:
        return pd.read_sql(text(sql), conn)


ALL = {
    "source": ["FED", "EOS"],
    "vo": ["atlas", "cms", "alice", "lhcb", "unknown"],
    "names": "gocdb",
}


def test_provisioning_points_at_the_dashboard(backend) -> None:  # type: ignore[no-untyped-def]
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "xrdagg.yaml").read_text())
    (datasource,) = source["datasources"]
    assert datasource["type"] == "grafana-postgresql-datasource"
    uids = {t["datasource"]["uid"] for p in panels() for t in p["targets"]}
    assert uids == {datasource["uid"]}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "xrdagg.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    titles = [p["title"] for p in panels()]
    for needed in ("Transfer matrix", "Read throughput", "Top users", "Lag per job"):
        assert any(t.startswith(needed) for t in titles), needed


@pytest.mark.parametrize("names", ["gocdb", "vo"])
def test_every_query_runs(data: Loaded, names: str) -> None:
    queries = [p["targets"][0]["rawSql"] for p in panels()]
    queries += [v["query"] for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]
    with data.db.engine.connect() as conn:
        for sql in queries:
            frame = pd.read_sql(text(expand(sql, {**ALL, "names": names}, 600)), conn)
            assert not frame.empty, sql


def test_matrix_panel_is_the_reference_matrix(data: Loaded) -> None:
    got = run_panel(data, "Transfer matrix", {**ALL, "source": ["FED"]})
    avg = data.ref["t_stats_avg"]
    avg = avg[(avg.bin_start >= FROM) & (avg.bin_start < TO) & (avg.source == "FED")]
    expected = avg.groupby(["src_site", "dst_site"])["read_bytes"].sum()
    expected = expected.sort_values(ascending=False).head(len(got))
    assert list(got.read_bytes) == pytest.approx(list(expected), rel=1e-9)


def test_throughput_panel_is_bytes_per_second(data: Loaded) -> None:
    avg = data.ref["t_stats_avg"]
    avg = avg[(avg.bin_start >= FROM) & (avg.bin_start <= TO)]  # BETWEEN includes its end
    pairs = avg.groupby(["src_site", "dst_site"])["read_bytes"].sum().nlargest(10)
    for interval in (600, 3600):
        got = run_panel(data, "Read throughput", ALL, interval)
        assert set(got.columns) == {"time", "metric", "value"}
        assert got.metric.nunique() == 10
        assert (got.value * interval).sum() == pytest.approx(pairs.sum(), rel=1e-9)


def test_users_and_lag_panels(data: Loaded) -> None:
    users = run_panel(data, "Top users", ALL)
    ua = data.ref["t_user_activity"]
    ua = ua[(ua.bin_start >= FROM) & (ua.bin_start <= TO)]
    top = ua.groupby(["user_dn", "vo"])["read_bytes"].sum().nlargest(20)
    assert list(users.read_bytes) == pytest.approx(list(top), rel=1e-9)
    lag = run_panel(data, "Lag per job", ALL)
    assert set(lag.metric) == {"fed10", "eos10", "daily"}  # the jobs that ran
    # The watermarks are in 2024: each lags the database's clock by years.
    assert (lag.value > (datetime(2025, 1, 1) - datetime(2024, 3, 6)).total_seconds()).all()
