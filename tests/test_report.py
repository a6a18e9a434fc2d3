"""`xrdagg report KIND`: every kind in every format, on SQLite and PostgreSQL, against sums
computed independently from the raw rows (tests/reference.py), never from xrdagg's tables."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import T0
from tests.report_data import DAY1, DAY2, Loaded, data

__all__ = ["data"]  # the fixture (tests/report_data.py), imported to be used here


def report(data: Loaded, kind: str, *args: str) -> Any:
    """Run `xrdagg report KIND ARGS --format json` and return the parsed list."""
    from click.testing import CliRunner

    from xrdagg.cli import main

    result = CliRunner().invoke(
        main,
        ["report", kind, *args, "--format", "json"],
        env=data.db.backend.env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def in_range(frame: pd.DataFrame, column: str, lo: datetime, hi: datetime) -> pd.DataFrame:
    return frame[(frame[column] >= lo) & (frame[column] < hi)]


def assert_rows(actual: list[dict], expected: pd.DataFrame, keys: list[str]) -> None:
    """Same key set; every measure of `expected` equal (relative 1e-9)."""
    got = pd.DataFrame(actual, columns=list(expected.columns))
    assert len(got) == len(expected), (len(got), len(expected))
    merged = got.merge(expected, on=keys, suffixes=("", "_ref"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    for column in expected.columns:
        if column not in keys:
            a = pd.to_numeric(merged[column]).to_numpy(dtype=float)
            e = pd.to_numeric(merged[column + "_ref"]).to_numpy(dtype=float)
            assert np.allclose(a, e, rtol=1e-9, atol=1e-6, equal_nan=True), column


# --- the ranges every kind is tried on: whole days (daily tables) and times (10-minute) -----------

RANGES = {
    "one day": (["--from", "2024-03-01", "--to", "2024-03-01"], DAY1, DAY2),
    "two days": (["--from", "2024-03-01", "--to", "2024-03-02"], DAY1, T0 + timedelta(days=2)),
    "times": (
        ["--from", "2024-03-01 06:00", "--to", "2024-03-02 03:10"],
        T0 + timedelta(hours=6),
        T0 + timedelta(days=1, hours=3, minutes=10),
    ),
}


def expected_matrix(avg: pd.DataFrame) -> pd.DataFrame:
    grouped = avg.groupby(["src_site", "dst_site"], as_index=False).agg(
        read_bytes=("read_bytes", "sum"),
        write_bytes=("write_bytes", "sum"),
        transfers=("transfers_ended", "sum"),
    )
    return grouped[grouped.read_bytes.gt(0) | grouped.write_bytes.gt(0) | grouped.transfers.gt(0)]


@pytest.mark.parametrize("span", list(RANGES))
@pytest.mark.parametrize("source", [None, "fed", "eos"])
def test_matrix_json_is_the_exact_sums_of_t_stats_avg(data: Loaded, span: str, source) -> None:
    args, lo, hi = RANGES[span]
    avg = in_range(data.ref["t_stats_avg"], "bin_start", lo, hi)
    extra = []
    if source:
        avg = avg[avg.source == source.upper()]
        extra = ["--source", source]
    got = report(data, "matrix", *args, *extra)
    assert got and set(got[0]) == {"src_site", "dst_site", "read_bytes", "write_bytes", "transfers"}
    assert all(isinstance(r["transfers"], int) for r in got)
    # Rows of the range with nothing in it (a transfer active elsewhere) sum to zero everywhere.
    got = [r for r in got if r["read_bytes"] or r["write_bytes"] or r["transfers"]]
    assert_rows(got, expected_matrix(avg), ["src_site", "dst_site"])
    reads = [r["read_bytes"] for r in got]
    assert reads == sorted(reads, reverse=True)


def test_matrix_filters_and_top(data: Loaded) -> None:
    args, lo, hi = RANGES["two days"]
    avg = in_range(data.ref["t_stats_avg"], "bin_start", lo, hi)
    site = "CERN-PROD"
    assert site in set(avg.src_site)
    mine = avg[(avg.src_site == site) | (avg.dst_site == site)]
    got = report(data, "matrix", *args, "--site", site)
    assert_rows(got, expected_matrix(mine), ["src_site", "dst_site"])
    cms = avg[(avg.vo == "cms") & (avg.src_site == site)]
    got = report(data, "matrix", *args, "--vo", "CMS", "--src-site", site)
    assert_rows(got, expected_matrix(cms), ["src_site", "dst_site"])
    top = report(data, "matrix", *args, "--top", "3")
    largest = sorted(expected_matrix(avg).read_bytes)[::-1][:3]
    assert [r["read_bytes"] for r in top] == pytest.approx(largest, rel=1e-9)


def test_matrix_with_vo_names(data: Loaded) -> None:
    args, lo, hi = RANGES["two days"]
    avg = in_range(data.ref["t_stats_avg"], "bin_start", lo, hi)
    cms = avg[(avg.vo == "cms") & (avg.src_site == "CERN-PROD")]
    assert not cms.empty
    got = report(data, "matrix", *args, "--vo", "cms", "--names", "vo")
    named = {r["src_site"] for r in got}
    assert "T2_CH_CERN" in named and "CERN-PROD" not in named  # vo_sites.json: cms, CERN-PROD
    total = sum(r["read_bytes"] for r in got)
    assert total == pytest.approx(avg[avg.vo == "cms"].read_bytes.sum(), rel=1e-9)


@pytest.mark.parametrize("span", ["one day", "times"])
def test_throughput_is_bytes_per_second_of_each_pair(data: Loaded, span: str) -> None:
    args, lo, hi = RANGES[span]
    avg = in_range(data.ref["t_stats_avg"], "bin_start", lo, hi)
    expected = avg.groupby(["bin_start", "src_site", "dst_site"], as_index=False)[
        ["read_bytes", "write_bytes"]
    ].sum()
    expected["read_rate"] = expected.read_bytes / 600
    expected = expected.rename(columns={"bin_start": "time"})
    got = report(data, "throughput", *args, "--top", "100000")
    for row in got:
        row["time"] = pd.Timestamp(row["time"])
    assert_rows(
        [{k: r[k] for k in expected.columns} for r in got],
        expected,
        ["time", "src_site", "dst_site"],
    )
    lumped = report(data, "throughput", *args, "--top", "2")
    pairs = {(r["src_site"], r["dst_site"]) for r in lumped}
    assert len(pairs - {("other", "other")}) == 2
    assert sum(r["read_rate"] for r in lumped) == pytest.approx(expected.read_rate.sum(), rel=1e-9)


def test_throughput_of_a_week_is_per_day(data: Loaded) -> None:
    avg = in_range(data.ref["t_stats_avg"], "bin_start", T0, T0 + timedelta(days=7))
    got = report(data, "throughput", "--from", "2024-03-01", "--to", "2024-03-07", "--top", "1")
    days = sorted({r["time"] for r in got})
    assert days[0] == "2024-03-01 00:00:00" and all(d.endswith("00:00:00") for d in days)
    assert sum(r["read_rate"] for r in got) * 86400 == pytest.approx(avg.read_bytes.sum(), 1e-9)


@pytest.mark.parametrize("span", ["two days", "times"])
def test_users(data: Loaded, span: str) -> None:
    args, lo, hi = RANGES[span]
    ua = in_range(data.ref["t_user_activity"], "bin_start", lo, hi)
    expected = ua.groupby(["user_dn", "vo"], as_index=False)[
        ["accesses", "read_bytes", "write_bytes"]
    ].sum()
    expected = expected.sort_values("read_bytes", ascending=False).head(5)
    got = report(data, "users", *args, "--top", "5")
    assert_rows(got, expected, ["user_dn", "vo"])


def test_users_of_eos_are_refused(data: Loaded, cli_env) -> None:
    result = cli_env("report", "users", "--source", "eos")
    assert result.exit_code == 2 and "--source eos" in result.output


@pytest.mark.parametrize("span", ["two days", "times"])
def test_sites(data: Loaded, span: str) -> None:
    args, lo, hi = RANGES[span]
    first_day = datetime(lo.year, lo.month, lo.day)
    expected = in_range(data.ref["mv_site_stats"], "day", first_day, hi)
    expected = expected[expected.site == "CERN-PROD"]
    got = report(data, "sites", *args, "--site", "CERN-PROD")
    for row in got:
        row["day"] = pd.Timestamp(row["day"])
    assert_rows(got, expected, ["day", "site", "role", "source"])


@pytest.mark.parametrize("span", ["one day", "times"])
def test_access(data: Loaded, span: str) -> None:
    args, lo, hi = RANGES[span]
    ap = in_range(data.ref["t_stats_access_pattern"], "bin_start", lo, hi)
    fractions = ["n_frac_lt10", "n_frac_10_50", "n_frac_50_100", "n_frac_ge100", "n_frac_unknown"]
    expected = ap.groupby(["src_site", "dst_site"], as_index=False)[["accesses", *fractions]].sum()
    got = report(data, "access", *args)
    assert_rows(
        [{k: r[k] for k in expected.columns} for r in got], expected, ["src_site", "dst_site"]
    )
    for row in got:
        shares = [row[f.replace("n_frac", "share")] for f in fractions]
        assert sum(shares) == pytest.approx(1.0)
        assert row["share_lt10"] == pytest.approx(row["n_frac_lt10"] / row["accesses"])


@pytest.mark.parametrize(
    ("span", "extra"),
    [
        ("two days", []),
        ("times", []),
        ("two days", ["--site", "CERN-PROD"]),
        ("one day", ["--source", "eos", "--vo", "atlas"]),
    ],
)
def test_unresolved(data: Loaded, span: str, extra: list[str]) -> None:
    args, lo, hi = RANGES[span]
    avg = in_range(data.ref["t_stats_avg"], "bin_start", lo, hi)
    if extra[:1] == ["--site"]:
        avg = avg[(avg.src_site == extra[1]) | (avg.dst_site == extra[1])]
    elif extra:
        avg = avg[(avg.source == "EOS") & (avg.vo == "atlas")]
    parts = []
    for side, site, domain in (
        ("server", "src_site", "src_domain"),
        ("client", "dst_site", "dst_domain"),
    ):
        part = (
            avg[avg[site] == "unknown"]
            .groupby(domain, as_index=False)
            .agg(
                rows=("transfers_ended", "sum"),
                bytes=("read_bytes", "sum"),
                write=("write_bytes", "sum"),
            )
        )
        part["bytes"] += part.pop("write")
        parts.append(part.rename(columns={domain: "domain"}).assign(side=side))
    expected = pd.concat(parts)
    expected["share"] = expected.bytes / (avg.read_bytes.sum() + avg.write_bytes.sum())
    assert not expected.empty
    got = report(data, "unresolved", *args, *extra, "--top", "1000")
    assert_rows([{k: r[k] for k in expected.columns} for r in got], expected, ["side", "domain"])
    assert any(r["example_hosts"] for r in got)


# --- formats: the table and the CSV say what the JSON says -------------------------------------


@pytest.fixture
def cli_env(data: Loaded) -> Callable[..., Any]:
    from click.testing import CliRunner

    from xrdagg.cli import main

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, list(args), env=data.db.backend.env)

    return invoke


@pytest.mark.parametrize("kind", ["matrix", "throughput", "users", "sites", "access", "unresolved"])
def test_every_kind_in_every_format(data: Loaded, cli_env, kind: str) -> None:
    args = ["--from", "2024-03-01", "--to", "2024-03-02", "--top", "4"]
    as_json = report(data, kind, *args)
    assert as_json, f"{kind}: nothing in the range"
    csv = cli_env("report", kind, *args, "--format", "csv")
    assert csv.exit_code == 0, csv.output
    from_csv = pd.read_csv(io.StringIO(csv.output), keep_default_na=False)
    assert list(from_csv.columns) == list(as_json[0])
    assert len(from_csv) == len(as_json)
    numbers = [c for c, v in as_json[0].items() if isinstance(v, int | float)]
    for column in numbers:
        expected = [r[column] if r[column] is not None else np.nan for r in as_json]
        got = pd.to_numeric(from_csv[column].replace("", np.nan))
        assert np.allclose(got, expected, rtol=1e-12, equal_nan=True), column
    table = cli_env("report", kind, *args)
    assert table.exit_code == 0, table.output
    first = as_json[0]
    text_key = next(v for v in first.values() if isinstance(v, str))
    assert text_key[:20] in table.output and kind in table.output.splitlines()[0]


def test_bad_options_are_refused_with_their_name(data: Loaded, cli_env) -> None:
    empty = cli_env("report", "matrix", "--from", "2024-03-02", "--to", "2024-03-01")
    assert empty.exit_code == 2 and "--from/--to" in empty.output
    bad = cli_env("report", "matrix", "--from", "yesterday")
    assert bad.exit_code == 2 and "--from" in bad.output
    vo = cli_env("report", "sites", "--vo", "cms")
    assert vo.exit_code == 2 and "--vo" in vo.output
    nothing = cli_env("report", "matrix", "--from", "2030-01-01", "--to", "2030-01-02")
    assert nothing.exit_code == 0 and "no statistics in this range" in nothing.output
