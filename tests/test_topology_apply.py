"""`xrdagg topology apply`: the same tables as a full recompute under the new topology."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import delete, func, select

from tests.helpers import (
    KEYS,
    TEST_TOPOLOGY,
    Harness,
    check_invariant,
    expected_tables,
    raw_row,
)
from tests.reference import RefTopology, assert_same
from xrdagg.db.tables import (
    RAW_TABLES,
    metadata,
    t_dirty_day,
    t_domain_site,
    t_host_site,
)
from xrdagg.jobs import apply, daily, housekeeping
from xrdagg.jobs.kind import RunContext
from xrdagg.jobs.specs import load_job_specs
from xrdagg.rules import UNKNOWN
from xrdagg.topology.files import read_topology_dir

T0 = datetime(2024, 3, 1)
SIDES = [("eos01", "cern.ch"), ("wn1", "bnl.gov"), ("wn2", "bnl.gov"), ("x.pp.rl.ac.uk", None),
         ("cmsstor3", "fnal.gov"), ("node", "unl.edu"), ("special-host", "fnal.gov")]  # fmt: skip


def _rows(n: int) -> list[tuple[str, dict]]:
    rows = []
    for i in range(n):
        end = T0 + timedelta(minutes=7 * i)
        server, client = SIDES[i % len(SIDES)], SIDES[(i * 3 + 1) % len(SIDES)]
        rows.append(
            ("fed" if i % 4 else "eos",
             raw_row(start_date=end - timedelta(minutes=i % 50), end_date=end, insert_date=end + timedelta(seconds=30),
                     server_host=server[0], server_domain=server[1], client_host=client[0], client_domain=client[1],
                     server_site=["T2_CH_CERN", None, None, "T1_FR_CCIN2P3"][i % 4], user_vo="cms", user_dn=f"/CN={i % 5}",
                     read_bytes_at_close=1000 + i, file_size=2000, read_min=i, read_max=10 * i))
        )  # fmt: skip
    return rows


def _new_topology(tmp_path: Path) -> Path:
    new = tmp_path / "new-topology"
    shutil.copytree(TEST_TOPOLOGY, new)
    domains = json.loads((new / "site_topology.json").read_text())
    domains = [d for d in domains if d["from_value"] != "bnl.gov"]
    domains += [
        {"from_value": "bnl.gov", "to_value": "BNL-NEW"},
        {"from_value": "fnal.gov", "to_value": "FNAL"},
    ]
    (new / "site_topology.json").write_text(json.dumps(domains))
    vo_sites = json.loads((new / "vo_sites.json").read_text())
    vo_sites = [
        v for v in vo_sites if v["vo_site"] != "T2_CH_CERN"
    ]  # T2_CH_CERN now kept as written
    (new / "vo_sites.json").write_text(json.dumps(vo_sites))
    return new


@pytest.mark.parametrize("by_scan", [True, False], ids=["scan", "ranges"])
@pytest.mark.parametrize("listed", [True, False], ids=["values", "subqueries"])
def test_apply_gives_the_tables_of_a_full_recompute_under_the_new_topology(
    db: Harness,
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,
    listed: bool,
    by_scan: bool,
) -> None:
    # The raw-row filter names the affected domains, sites and aliases as lists of values, or,
    # with more of them than PREFILTER_MAX_VALUES, reads them from subqueries: both exact. A
    # run of days reads the raw rows ending where affected rows end, or, where the database
    # prefers a scan (SQLite, for most of the table), every row ending in the run: both exact.
    if not listed:
        monkeypatch.setattr(apply, "PREFILTER_MAX_VALUES", 0)
    filters: list[bool] = []
    reads: list[bool] = []
    read_affected = apply._affected

    def spy(conn, delta_sites):  # type: ignore[no-untyped-def]
        affected = read_affected(conn, delta_sites)
        filters.append(affected.as_values)
        return affected

    def read_spy(dialect, share):  # type: ignore[no-untyped-def]
        assert 0 <= share <= 1
        reads.append(by_scan)
        return by_scan

    monkeypatch.setattr(apply, "_affected", spy)
    monkeypatch.setattr(apply, "prefers_scan", read_spy)
    rows = _rows(600)
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run("fed10", T0 + timedelta(days=2))
    db.run("eos10", T0 + timedelta(days=2))
    db.run("daily")
    stats_before = len(db.table("t_stats_avg"))
    new = _new_topology(tmp_path)

    dry = cli("topology", "apply", "--dir", str(new), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert (
        "\n    wn1: BNL-ATLAS -> BNL-NEW" in dry.output and "dry run: nothing changed" in dry.output
    )
    assert "SERVER_SITE alias T2_CH_CERN: CERN-PROD -> (kept as written)" in dry.output
    assert len(db.table("t_stats_avg")) == stats_before and "BNL-NEW" not in set(
        db.table("t_stats_avg").dst_site
    )

    result = cli("topology", "apply", "--dir", str(new))
    assert result.exit_code == 0, result.output
    assert "\n    cmsstor3: unknown -> FNAL" in result.output
    assert "special-host:" not in result.output  # an FQDN entry still wins over the domain
    check_invariant(db, rows, RefTopology.from_dir(new))
    assert filters and set(filters) == {listed}
    assert reads
    # Only the statistics of the changed keys were rebuilt.
    rebuilt = int(result.output.split("statistics rows rebuilt: ")[1].split(" deleted")[0])
    assert (
        0
        < rebuilt
        < stats_before + len(db.table("t_user_activity")) + len(db.table("t_stats_access_pattern"))
    )
    # The jobs run again afterwards, and a second apply of the same topology changes nothing.
    assert db.runner.run(db.jobs["fed10"], until=T0 + timedelta(days=3)).outcome == "OK"
    again = cli("topology", "apply", "--dir", str(new))
    assert "0 cached host(s) changed site" in again.output


DAILY_TABLES = ("t_site_pair_day", "t_unresolved_day", "t_stats_access_pattern_a", "mv_site_stats",
                "t_site")  # fmt: skip


@pytest.mark.parametrize("listed", [True, False], ids=["values", "subqueries"])
def test_apply_rolls_up_the_daily_rows_of_the_keys_it_changes(
    db: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: bool
) -> None:
    # The daily tables are right after the apply's own transaction, with no daily run after it:
    # it rolls up the daily rows of the changed keys (a moved host, hosts leaving 'unknown', a
    # SERVER_SITE alias dropped) on the days it rebuilt, naming the delta sites as values or
    # reading them from T_TOPOLOGY_DELTA, and leaves every other daily row as it was: the
    # unresolved rows of a domain the change does not touch among them.
    if not listed:
        monkeypatch.setattr(apply, "PREFILTER_MAX_VALUES", 0)
    untouched = [
        ("fed", raw_row(end_date=T0 + timedelta(minutes=13 * i), user_vo="cms", user_dn="/CN=u",
                        insert_date=T0 + timedelta(minutes=13 * i, seconds=30), server_host="eos01",
                        server_domain="cern.ch", client_host=f"wn{i % 3}", client_domain="lab.example",
                        read_bytes_at_close=700 + i, file_size=900))
        for i in range(40)
    ]  # fmt: skip
    rows = _rows(600) + untouched
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    for job in ("fed10", "eos10", "daily"):
        db.run(job, T0 + timedelta(days=2))
    assert "lab.example" in set(db.table("t_unresolved_day").domain)
    new = _new_topology(tmp_path)
    report = apply.apply_topology(db.engine, read_topology_dir(new), new, list(db.jobs.values()))
    assert report.changes and report.days
    with db.engine.connect() as conn:  # nothing left for the daily job
        assert conn.execute(select(func.count()).select_from(t_dirty_day)).scalar_one() == 0
    check_invariant(db, rows, RefTopology.from_dir(new))
    # T_SITE too (no reference computes it): as a roll-up of the whole days leaves it.
    keyed = {table: db.table(table) for table in DAILY_TABLES}
    with db.engine.begin() as conn:
        daily.rollup_days(conn, report.days)
    for table in DAILY_TABLES:
        assert_same(keyed[table], db.table(table), KEYS[table], table)
    # Only the changed keys' daily rows were written (the T_SITE merge: a row or two a site).
    sites = {s for c in report.changes for s in (c.old_site, c.new_site)}
    sites |= {old or alias for alias, (old, _) in report.alias_changes.items()}
    sites |= {new or alias for alias, (_, new) in report.alias_changes.items()}
    unresolved = {c.domain for c in report.changes if UNKNOWN in (c.old_site, c.new_site)}
    changed = sum(
        int(frame.src_site.isin(sites).sum() + (~frame.src_site.isin(sites) & frame.dst_site.isin(sites)).sum())
        for frame in (keyed["t_site_pair_day"], keyed["t_stats_access_pattern_a"])
    ) + int(keyed["mv_site_stats"].site.isin(sites).sum()) + int(
        keyed["t_unresolved_day"].domain.isin(unresolved).sum()
    )  # fmt: skip
    assert 0 < changed <= report.daily_rows_written <= changed + 2 * len(sites)


def _unl_joins_cern(tmp_path: Path) -> Path:
    """The test topology with unl.edu mapped to CERN-PROD: CERN-PROD, a delta site, keeps its
    cern.ch rows (an unchanged key)."""
    new = tmp_path / "unl-joins-cern"
    shutil.copytree(TEST_TOPOLOGY, new)
    domains = json.loads((new / "site_topology.json").read_text())
    domains = [d for d in domains if d["from_value"] != "unl.edu"]
    (new / "site_topology.json").write_text(
        json.dumps([*domains, {"from_value": "unl.edu", "to_value": "CERN-PROD"}])
    )
    return new


@pytest.mark.parametrize(
    "trimmed",
    [("t_stats_access_pattern",), ("t_stats_access_pattern", "t_user_activity")],
    ids=["access-pattern", "and-user-activity"],
)
def test_apply_rebuilds_the_rows_of_days_whose_site_tables_were_trimmed(
    db: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trimmed: tuple[str, ...]
) -> None:
    # Housekeeping's retention (or a dropped partition) may trim T_STATS_ACCESS_PATTERN and
    # T_USER_ACTIVITY (the shipped example keeps them 120 days) where T_STATS_AVG is kept (400):
    # the apply still rebuilds the affected rows it deleted there, and every daily row of the
    # keys it rolls up, from all the raw rows they sum: unl.edu moving to CERN-PROD makes
    # CERN-PROD a delta site, whose cern.ch rows (an unchanged key) the daily rows of CERN-PROD
    # sum too. Read by ranges (a scan of the run would read those rows anyway, whatever the bins).
    monkeypatch.setattr(apply, "prefers_scan", lambda dialect, share: False)
    rows = _rows(600)
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    for job in ("fed10", "eos10", "daily"):
        db.run(job, T0 + timedelta(days=4))
    with db.engine.begin() as conn:  # as housekeeping trims them
        for name in trimmed:
            table = metadata.tables[name]
            gone = conn.execute(
                delete(table).where(table.c.bin_start < T0 + timedelta(days=1, hours=7))
            ).rowcount
            assert gone, name
    new = _unl_joins_cern(tmp_path)
    report = apply.apply_topology(db.engine, read_topology_dir(new), new, list(db.jobs.values()))
    assert report.days[0] < T0 + timedelta(days=1)
    assert {(c.domain, c.old_site, c.new_site) for c in report.changes} == {
        ("unl.edu", "Nebraska", "CERN-PROD")
    }
    check_invariant(db, rows, RefTopology.from_dir(new), trimmed=trimmed)


def _without_cern_alias(tmp_path: Path) -> Path:
    """The test topology without the T2_CH_CERN alias (a SERVER_SITE then kept as written)."""
    new = tmp_path / "no-cern-alias"
    shutil.copytree(TEST_TOPOLOGY, new)
    vo_sites = json.loads((new / "vo_sites.json").read_text())
    (new / "vo_sites.json").write_text(
        json.dumps([v for v in vo_sites if v["vo_site"] != "T2_CH_CERN"])
    )
    return new


@pytest.mark.parametrize("change", ["removed", "added"])
def test_an_alias_change_rebuilds_the_rows_of_every_spelling(
    db: Harness, tmp_path: Path, cli, change: str
) -> None:
    # The alias map looks a SERVER_SITE up in upper case, and a name it lacks is kept as written
    # (trimmed): 't2_ch_cern' and 'T2_CH_CERN' are one site with the alias, two without. An
    # apply that removes or adds the alias rebuilds the rows of every spelling (it read only
    # the upper-case one's, and stopped, finding other counts than the statistics held).
    without = _without_cern_alias(tmp_path)
    before, after = (TEST_TOPOLOGY, without) if change == "removed" else (without, TEST_TOPOLOGY)
    db.load_topology(before)
    rows = []
    for i in range(40):
        end = T0 + timedelta(minutes=30 * i)
        rows.append(
            ("fed" if i % 2 else "eos",
             raw_row(start_date=end - timedelta(minutes=5), end_date=end, insert_date=end + timedelta(seconds=30),
                     server_host="node", server_domain="unl.edu", client_host="wn1", client_domain="bnl.gov",
                     server_site=["t2_ch_cern ", "T2_CH_CERN", "T2_ch_CERN"][i % 3], user_vo="cms",
                     user_dn="/CN=a", read_bytes_at_close=100 + i))
        )  # fmt: skip
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run_all(T0 + timedelta(days=3))
    result = cli("topology", "apply", "--dir", str(after))
    assert result.exit_code == 0, result.output
    check_invariant(db, rows, RefTopology.from_dir(after))


def test_an_apply_where_t_stats_avg_was_trimmed_before_the_site_tables_stops(
    db: Harness, tmp_path: Path, cli
) -> None:
    # T_STATS_AVG trimmed where T_USER_ACTIVITY and T_STATS_ACCESS_PATTERN were kept (another
    # retention order than the shipped one, or a partition dropped out of order): the apply
    # would find those days through the site tables, and roll up the daily rows of the delta
    # sites there from T_STATS_AVG's rows of the affected keys alone. It stops and changes
    # nothing; after a recompute of the days it names, it gives a full recompute's tables.
    rows = _rows(600)
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run_all(T0 + timedelta(days=4))
    with db.engine.begin() as conn:  # as housekeeping trims it
        avg = metadata.tables["t_stats_avg"]
        assert conn.execute(delete(avg).where(avg.c.bin_start < T0 + timedelta(hours=31)))
    before = {name: db.table(name) for name in KEYS}
    new = _unl_joins_cern(tmp_path)
    result = cli("topology", "apply", "--dir", str(new))
    assert result.exit_code == 2, result.output
    assert "the raw table holds more rows than the statistics count" in result.output
    assert "T_RAW_FED 2024-03-01 to 2024-03-02: the statistics count" in result.output
    assert "`xrdagg recompute --from 2024-03-01 --to 2024-03-02`" in result.output
    assert "nothing was changed" in result.output
    for name, keys in KEYS.items():
        assert_same(db.table(name), before[name], keys, name)

    result = cli("recompute", "--from", "2024-03-01", "--to", "2024-03-02")
    assert result.exit_code == 0, result.output
    result = cli("topology", "apply", "--dir", str(new))
    assert result.exit_code == 0, result.output
    check_invariant(db, rows, RefTopology.from_dir(new))


def test_an_apply_over_purged_raw_rows_changes_nothing_and_names_the_days(
    db: Harness, tmp_path: Path, cli
) -> None:
    # The collectors purge their raw tables; the statistics keep those days. An apply would
    # delete the affected rows there and find nothing to rebuild them from: it stops, changes
    # nothing and names the days. From the day it names on, an apply rebuilds everything it
    # deletes, and the days before keep the old topology's rows.
    rows = _rows(600)  # 2024-03-01 00:00 to 03-03 21:53
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run_all(T0 + timedelta(days=4))
    with db.engine.begin() as conn:  # as the collectors purge them
        for raw in RAW_TABLES.values():
            assert conn.execute(delete(raw).where(raw.c.end_date < T0 + timedelta(hours=30)))
    before = {name: db.table(name) for name in KEYS}
    new = _new_topology(tmp_path)
    for dry_run in (["--dry-run"], []):
        result = cli("topology", "apply", "--dir", str(new), *dry_run)
        assert result.exit_code == 2, result.output  # an operator's error, no traceback
        assert "nothing was changed" in result.output
        for raw in ("T_RAW_FED", "T_RAW_EOS"):
            assert f"{raw} 2024-03-01 to 2024-03-02: the statistics count" in result.output
        assert "--from-day 2024-03-03" in result.output
        for name, keys in KEYS.items():
            assert_same(db.table(name), before[name], keys, name)
    with db.engine.connect() as conn:  # nor the topology loaded
        mapped = dict(conn.execute(select(t_domain_site.c.from_value, t_domain_site.c.site)).all())
    assert mapped["bnl.gov"] == "BNL-ATLAS"

    result = cli("topology", "apply", "--dir", str(new), "--from-day", "2024-03-03")
    assert result.exit_code == 0, result.output
    assert "statistics before 2024-03-03 left as they were" in result.output
    from_day = datetime(2024, 3, 3)
    expected = expected_tables(db, rows, RefTopology.from_dir(new))
    for name, keys in KEYS.items():
        if name == "t_site":  # merged, never shrunk: no day to split by
            continue
        time, actual = keys[0], db.table(name)
        old, new_rows = before[name], expected[name]
        assert_same(actual[actual[time] < from_day], old[old[time] < from_day], keys, name)
        assert_same(
            actual[actual[time] >= from_day], new_rows[new_rows[time] >= from_day], keys, name
        )


def _sparse_rows() -> list[tuple[str, dict]]:
    """Rows over eight days where bnl.gov shows up on days 1 and 6 only, some of them long
    transfers that cross midnight, and rows of every other domain on every day."""
    rows = []
    for day in range(8):
        for i in range(60):
            end = T0 + timedelta(days=day, minutes=23 * i + 7)
            bnl = day in (1, 6) and i % 3 == 0
            others = [("eos01", "cern.ch"), ("x.pp.rl.ac.uk", None), ("cmsstor3", "fnal.gov")]
            server = ("wn2", "bnl.gov") if bnl else others[i % 3]
            client = SIDES[(i + day) % len(SIDES)]
            if client[1] == "bnl.gov" and not bnl:
                client = ("node", "unl.edu")
            duration = timedelta(hours=30) if i % 10 == 0 else timedelta(minutes=i % 40)
            rows.append(
                ("fed" if i % 5 else "eos",
                 raw_row(start_date=end - duration, end_date=end, insert_date=end + timedelta(seconds=30),
                         server_host=server[0], server_domain=server[1], client_host=client[0],
                         client_domain=client[1], user_vo="atlas", user_dn=f"/CN={i % 4}",
                         read_bytes_at_close=5000 + i, file_size=9000, read_min=i, read_max=3 * i))
            )  # fmt: skip
    return rows


def _bnl_moves(tmp_path: Path) -> Path:
    """The test topology with bnl.gov mapped to a new site."""
    new = tmp_path / "bnl-moves"
    shutil.copytree(TEST_TOPOLOGY, new)
    domains = [
        d
        for d in json.loads((new / "site_topology.json").read_text())
        if d["from_value"] != "bnl.gov"
    ]
    (new / "site_topology.json").write_text(
        json.dumps([*domains, {"from_value": "bnl.gov", "to_value": "BNL-NEW"}])
    )
    return new


def test_apply_rebuilds_only_the_days_the_change_touches(db: Harness, tmp_path: Path, cli) -> None:
    rows = _sparse_rows()
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run("fed10", T0 + timedelta(days=10))
    db.run("eos10", T0 + timedelta(days=10))
    db.run("daily")
    new = _bnl_moves(tmp_path)
    result = cli("topology", "apply", "--dir", str(new))
    assert result.exit_code == 0, result.output
    assert "bnl.gov: 2 host(s); BNL-ATLAS -> BNL-NEW (2)" in result.output
    # Only the days bnl.gov rows are active in (they end on days 1 and 6 and reach back up to
    # 30 hours: two separate runs of days), and only the hosts under bnl.gov resolved again.
    bnl_days = {
        (r["start_date"] + timedelta(days=k)).date()
        for _, r in rows
        if "bnl.gov" in (r["server_domain"], r["client_domain"])
        for k in range((r["end_date"].date() - r["start_date"].date()).days + 1)
    }
    assert len(bnl_days) < 8
    days = int(result.output.split(" written over ")[1].split(" day(s)")[0])
    assert days == len(bnl_days), result.output
    assert "2 cached host(s) resolved again" in result.output
    check_invariant(db, rows, RefTopology.from_dir(new))


def test_a_pattern_change_resolves_every_cached_host_again(
    db: Harness, tmp_path: Path, cli
) -> None:
    rows = _sparse_rows()
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run("fed10", T0 + timedelta(days=10))
    db.run("eos10", T0 + timedelta(days=10))
    new = tmp_path / "new-pattern"
    shutil.copytree(TEST_TOPOLOGY, new)
    patterns = json.loads((new / "topology_patterns.json").read_text())
    (new / "topology_patterns.json").write_text(
        json.dumps([*patterns, {"pattern": "^wn2\\.bnl\\.gov$", "site": "BNL-WN2"}])
    )
    result = cli("topology", "apply", "--dir", str(new))
    assert result.exit_code == 0, result.output
    assert "BNL-ATLAS -> BNL-NEW" not in result.output
    assert "\n    wn2: BNL-ATLAS -> BNL-WN2" in result.output
    with db.engine.connect() as conn:
        cached = conn.execute(select(func.count()).select_from(t_host_site)).scalar_one()
    assert f"{cached} cached host(s) resolved again" in result.output
    check_invariant(db, rows, RefTopology.from_dir(new))


def test_a_domain_entry_resolves_again_only_the_hosts_under_it(
    db: Harness, tmp_path: Path, cli
) -> None:
    # `my_lab.org` gains an entry. Only the FQDNs that are it or lie under it, label by label,
    # are resolved again: not `a.myxlab.org` (`_` is a LIKE wildcard) nor `a.notmy_lab.org`
    # (not on a label boundary), whatever the database's prefilter lets through.
    sides = [
        ("a.b", "my_lab.org"),
        ("a", "myxlab.org"),
        ("a", "notmy_lab.org"),
        ("eos01", "cern.ch"),
    ]
    rows = [
        ("fed",
         raw_row(start_date=T0 + timedelta(minutes=7 * i), end_date=T0 + timedelta(minutes=7 * i + 3),
                 insert_date=T0 + timedelta(minutes=7 * i + 4), server_host="eos01", server_domain="cern.ch",
                 client_host=sides[i % 3][0], client_domain=sides[i % 3][1], user_vo="cms",
                 read_bytes_at_close=1000 + i, file_size=5000))
        for i in range(60)
    ]  # fmt: skip
    db.insert_raw("fed", [r for _, r in rows])
    db.run("fed10", T0 + timedelta(days=1))
    new = tmp_path / "new-domain"
    shutil.copytree(TEST_TOPOLOGY, new)
    domains = json.loads((new / "site_topology.json").read_text())
    (new / "site_topology.json").write_text(
        json.dumps([*domains, {"from_value": "my_lab.org", "to_value": "LAB-NEW"}])
    )
    result = cli("topology", "apply", "--dir", str(new))
    assert result.exit_code == 0, result.output
    assert "1 cached host(s) resolved again" in result.output, result.output
    assert "-> LAB-NEW" in result.output
    check_invariant(db, rows, RefTopology.from_dir(new))


def test_read_ranges_join_consecutive_bins_then_the_closest_ranges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_ = timedelta(minutes=10)
    lo, hi = T0, T0 + timedelta(days=1)
    bins = [T0 + k * bin_ for k in (0, 1, 2, 10, 11, 30, 32, 143, 144)] + [T0 - bin_]
    assert apply._read_ranges(bins, lo, hi) == [
        (T0, T0 + 3 * bin_),
        (T0 + 10 * bin_, T0 + 12 * bin_),
        (T0 + 30 * bin_, T0 + 31 * bin_),
        (T0 + 32 * bin_, T0 + 33 * bin_),
        (T0 + 143 * bin_, T0 + 144 * bin_),  # bins 144 and -1 lie outside [lo, hi)
    ]
    monkeypatch.setattr(apply, "MAX_READ_RANGES", 3)  # the two smallest gaps go
    assert apply._read_ranges(bins, lo, hi) == [
        (T0, T0 + 12 * bin_),
        (T0 + 30 * bin_, T0 + 33 * bin_),
        (T0 + 143 * bin_, T0 + 144 * bin_),
    ]
    monkeypatch.setattr(apply, "MAX_READ_RANGES", 1)
    assert apply._read_ranges(bins, lo, hi) == [(T0, T0 + 144 * bin_)]
    assert apply._read_ranges([], lo, hi) == []


@pytest.mark.parametrize("max_ranges", [16, 2], ids=["ranges", "joined"])
def test_apply_reads_only_the_rows_ending_where_affected_rows_end(
    db: Harness, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, max_ranges: int
) -> None:
    # bnl.gov rows end in a few bins of days 1 and 6; every other domain's rows, on every bin
    # around them. The apply reads the raw rows ending in those bins (or in the ranges joining
    # them, when there are more than MAX_READ_RANGES), not whole days, and stays exact.
    monkeypatch.setattr(apply, "MAX_READ_RANGES", max_ranges)
    rows = _sparse_rows()
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run("fed10", T0 + timedelta(days=10))
    db.run("eos10", T0 + timedelta(days=10))
    runs: list[tuple[datetime, datetime, list[tuple[datetime, datetime]]]] = []  # job, run
    read_ranges = apply._read_ranges

    def spy(end_bins, lo, hi):  # type: ignore[no-untyped-def]
        runs.append((lo, hi, read_ranges(end_bins, lo, hi)))
        return runs[-1][2]

    monkeypatch.setattr(apply, "_read_ranges", spy)
    new = _bnl_moves(tmp_path)
    result = cli("topology", "apply", "--dir", str(new))
    assert result.exit_code == 0, result.output
    check_invariant(db, rows, RefTopology.from_dir(new))
    # Every bnl.gov row ends in a range read, and the ranges hold far fewer rows than the days
    # rebuilt (all of them, by the old rule).
    ranges = [r for _, _, of_run in runs for r in of_run]
    assert all(len(of_run) <= max_ranges for _, _, of_run in runs)
    bnl_ends = [
        r["end_date"] for _, r in rows if "bnl.gov" in (r["server_domain"], r["client_domain"])
    ]
    assert bnl_ends and all(any(lo <= end < hi for lo, hi in ranges) for end in bnl_ends)
    ends = [r["end_date"] for _, r in rows]
    in_days = sum(1 for end in ends for lo, hi, _ in runs if lo <= end < hi)
    read = sum(1 for end in ends for lo, hi in ranges if lo <= end < hi)
    assert 0 < read < in_days / 2


@pytest.mark.parametrize("by_scan", [False, True], ids=["ranges", "scan"])
def test_an_apply_after_housekeeping_rebuilds_whole_days_only(
    db: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by_scan: bool
) -> None:
    # Housekeeping's retention trims the 10-minute tables by age. Had it trimmed the day at its
    # cutoff part-way, in every table, an apply would find that day through the rows left and
    # roll its daily rows of the delta sites up from them alone: the trimmed part's share of
    # those daily rows, the only history left of it, lost. It trims whole UTC days, so an
    # apply rebuilds the days it keeps and leaves the daily rows of the days it trimmed as
    # they were; rows of the changed domain that start on the trimmed day and end on the first
    # kept one are rebuilt in the kept day's bins only.
    monkeypatch.setattr(apply, "prefers_scan", lambda dialect, share: by_scan)
    rows = _rows(600)  # every 7 minutes from T0, almost three days
    for i, start in enumerate((timedelta(hours=20), timedelta(hours=23, minutes=25))):
        end = T0 + timedelta(days=1, hours=1, minutes=13 * i)
        rows.append(
            ("fed" if i else "eos",
             raw_row(start_date=T0 + start, end_date=end, insert_date=end + timedelta(seconds=30),
                     server_host="node", server_domain="unl.edu", client_host="eos01", client_domain="cern.ch",
                     user_vo="cms", user_dn="/CN=x", read_bytes_at_close=50_000 + i, file_size=90_000))
        )  # fmt: skip
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    for job in ("fed10", "eos10", "daily"):
        db.run(job, T0 + timedelta(days=4))
    daily_tables = (
        "t_site_pair_day",
        "t_stats_access_pattern_a",
        "mv_site_stats",
        "t_unresolved_day",
    )
    before = {name: db.table(name) for name in daily_tables}
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "jobs.toml").write_text(
        '[[job]]\nname = "hk"\nkind = "housekeeping"\nretention_days = { t_stats_avg = 30, '
        "t_user_activity = 30, t_stats_access_pattern = 30, t_msg_rate = 30 }\n"
    )
    now = T0 + timedelta(days=31, hours=7)  # 30 days back is 07:00 on T0's second day
    with db.engine.begin() as conn:
        spec = load_job_specs(jobs)[0]
        context = RunContext(
            job=spec, watermark=None, now=now, until=None, safety_lag_seconds=0, upstream=()
        )
        assert housekeeping.run(conn, context).rows_written > 0
    kept_from = T0 + timedelta(days=1)  # that day kept whole, the one before it gone
    for name in ("t_stats_avg", "t_user_activity", "t_stats_access_pattern", "t_msg_rate"):
        bins = db.table(name).bin_start
        assert pd.to_datetime(bins).min() == kept_from, name

    new = _unl_joins_cern(tmp_path)
    report = apply.apply_topology(db.engine, read_topology_dir(new), new, list(db.jobs.values()))
    assert report.days[0] == kept_from
    expected = expected_tables(db, rows, RefTopology.from_dir(new))
    for name, frame in expected.items():
        actual = db.table(name)
        if name in daily_tables:
            # The kept days under the new topology, the trimmed one's daily rows as they were.
            old = before[name][pd.to_datetime(before[name].day) < kept_from]
            frame = pd.concat([old, frame[pd.to_datetime(frame.day) >= kept_from]])
        elif name != "t_site":
            frame = frame[pd.to_datetime(frame.bin_start) >= kept_from]
        assert_same(actual, frame, KEYS[name], name)
