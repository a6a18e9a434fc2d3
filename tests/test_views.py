"""The dashboard views (revision 0007) and the daily site-pair table, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import func, select, text

from tests.backends import Backend
from tests.helpers import Harness, at, fed
from xrdagg.db import migrate
from xrdagg.db.tables import t_site_pair_day, t_stats_avg


def _view(db: Harness, name: str) -> pd.DataFrame:
    with db.engine.connect() as conn:
        frame = pd.read_sql(text(f"SELECT * FROM {name}"), conn)
    # MySQL keys are VARBINARY (byte-exact, as Oracle's VARCHAR2(n BYTE)): a view read by plain
    # SQL returns them as bytes, which a dashboard converts (docs/decisions.md).
    return frame.map(lambda v: v.decode() if isinstance(v, bytes) else v)


def _fill(db: Harness) -> None:
    db.insert_raw(
        "fed",
        [
            fed(user_vo="cms", read_bytes_at_close=1000, end_date=at(30), start_date=at(5)),
            fed(user_vo="atlas", read_bytes_at_close=500, end_date=at(40)),
            fed(user_vo="cms", read_bytes_at_close=7, client_domain="isp.net", client_host="h1"),
            fed(user_vo="cms", read_bytes_at_close=300, end_date=at(30, day=1)),
        ],
    )
    db.run_all(datetime(2024, 3, 5))


def test_stats_views_carry_countries_and_vo_names(db: Harness) -> None:
    _fill(db)
    for name, base in (("v_stats_avg", "t_stats_avg"), ("v_site_pair_day", "t_site_pair_day")):
        view, table = _view(db, name), db.table(base)
        assert len(view) == len(table), name  # one view row per table row: no join fans out
        assert view.read_bytes.sum() == pytest.approx(table.read_bytes.sum())
        cms = view[(view.vo == "cms") & (view.src_site == "CERN-PROD")]
        assert set(cms.src_vo_site) == {"T2_CH_CERN"} and set(cms.src_country) == {"Switzerland"}
        atlas = view[view.vo == "atlas"]
        assert set(atlas.src_vo_site) == {"CERN-PROD"}  # no ATLAS name: the GOCDB name
        unresolved = view[view.dst_site == "unknown"]
        assert set(unresolved.dst_country) == {"unknown"} and len(unresolved) > 0
        assert set(view[view.dst_site == "BNL-ATLAS"].dst_country) == {"United States"}


def test_site_pair_day_is_the_daily_sum_of_t_stats_avg(db: Harness) -> None:
    _fill(db)
    avg = db.table("t_stats_avg")
    avg["day"] = pd.to_datetime(avg.bin_start).dt.normalize()
    expected = avg.groupby(["day", "source", "src_site", "dst_site", "vo"], as_index=False)[
        ["read_bytes", "write_bytes", "active_seconds", "transfers_ended"]
    ].sum()
    got = db.table("t_site_pair_day")
    got["day"] = pd.to_datetime(got.day)
    merged = got.merge(expected, on=["day", "source", "src_site", "dst_site", "vo"], how="outer")
    assert len(merged) == len(got) == len(expected) == 4  # two days, cms/atlas, one unresolved
    for column in ("read_bytes", "write_bytes", "active_seconds", "transfers_ended"):
        assert merged[f"{column}_x"].to_list() == pytest.approx(merged[f"{column}_y"].to_list())


def test_site_stats_and_job_lag_views(db: Harness) -> None:
    _fill(db)
    sites = _view(db, "v_site_stats")
    assert len(sites) == len(db.table("mv_site_stats"))
    assert set(sites[sites.site == "CERN-PROD"].country) == {"Switzerland"}
    lag = _view(db, "v_job_lag").set_index("job_name")
    assert set(lag.index) >= {"fed10", "eos10", "daily"}
    # Watermarks in March 2024 lag the database's clock by more than the days since then.
    assert (lag.loc[["fed10", "daily"], "lag_seconds"] > 200 * 86400).all()


def test_upgrade_fills_the_daily_report_tables_from_existing_statistics(
    db: Harness, backend: Backend
) -> None:
    _fill(db)
    daily = ("t_site_pair_day", "t_unresolved_day")
    before = {name: db.table(name) for name in daily}
    assert len(before["t_unresolved_day"]) > 0
    migrate.downgrade(backend.settings, "0005")
    try:
        migrate.upgrade(backend.settings)
    finally:
        migrate.upgrade(backend.settings)  # whatever happened, leave the schema at head
    for name in daily:
        pd.testing.assert_frame_equal(before[name], db.table(name), check_dtype=False)
    with db.engine.connect() as conn:
        total = conn.execute(select(func.sum(t_stats_avg.c.read_bytes))).scalar_one()
        daily = conn.execute(select(func.sum(t_site_pair_day.c.read_bytes))).scalar_one()
    assert daily == pytest.approx(total)
