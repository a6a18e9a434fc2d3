"""`xrdagg topology apply`: the same tables as a full recompute under the new topology."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.helpers import TEST_TOPOLOGY, Harness, check_invariant, raw_row
from tests.reference import RefTopology
from xrdagg.db.tables import t_host_site
from xrdagg.jobs import apply

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


@pytest.mark.parametrize("whole_table", [True, False], ids=["scan", "index"])
@pytest.mark.parametrize("listed", [True, False], ids=["values", "subqueries"])
def test_apply_gives_the_tables_of_a_full_recompute_under_the_new_topology(
    db: Harness,
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,
    listed: bool,
    whole_table: bool,
) -> None:
    # The raw-row filter names the affected domains, sites and aliases as lists of values, or,
    # with more of them than PREFILTER_MAX_VALUES, reads them from subqueries: both exact. A
    # run of days holding most of the raw rows reads the table in its own order, and a shorter
    # one through the END_DATE index (WHOLE_TABLE_SHARE): both exact too.
    if not listed:
        monkeypatch.setattr(apply, "PREFILTER_MAX_VALUES", 0)
    monkeypatch.setattr(apply, "WHOLE_TABLE_SHARE", 0.0 if whole_table else 2.0)
    filters: list[bool] = []
    reads: list[bool] = []
    read_affected, holds_most_of = apply._affected, apply._holds_most_of

    def spy(conn, delta_sites):  # type: ignore[no-untyped-def]
        affected = read_affected(conn, delta_sites)
        filters.append(affected.as_values)
        return affected

    def read_spy(span, lo, hi):  # type: ignore[no-untyped-def]
        reads.append(holds_most_of(span, lo, hi))
        return reads[-1]

    monkeypatch.setattr(apply, "_affected", spy)
    monkeypatch.setattr(apply, "_holds_most_of", read_spy)
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
    assert reads and set(reads) == {whole_table}
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


def test_apply_rebuilds_only_the_days_the_change_touches(db: Harness, tmp_path: Path, cli) -> None:
    rows = _sparse_rows()
    for source in ("fed", "eos"):
        db.insert_raw(source, [r for s, r in rows if s == source])
    db.run("fed10", T0 + timedelta(days=10))
    db.run("eos10", T0 + timedelta(days=10))
    db.run("daily")
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
