"""The safe topology workflow and what an operator reads before trusting one: `topology load`
refuses a change once statistics exist, `apply --dry-run` groups changes by domain and warns,
`topology show` and `resolve` tell what maps to a site (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, func, select

from tests.helpers import T0, TEST_TOPOLOGY, Harness, fed
from xrdagg.db.tables import (
    t_domain_site,
    t_host_site,
    t_site_country,
    t_stats_access_pattern,
    t_stats_avg,
    t_topology_load,
    t_user_activity,
)

ROWS = [
    fed(client_host="wn1.bnl.gov", end_date=T0 + timedelta(minutes=5 + i), insert_date=T0 + timedelta(minutes=6 + i), read_bytes_at_close=100 + i)
    for i in range(20)
] + [
    fed(client_host="wn2", client_domain="bnl.gov", end_date=T0 + timedelta(minutes=30 + i), insert_date=T0 + timedelta(minutes=31 + i))
    for i in range(5)
]  # fmt: skip


def _edited(tmp_path: Path, name: str, **files: list[dict[str, str]]) -> Path:
    """A copy of the test topology with some files replaced."""
    directory = tmp_path / name
    shutil.copytree(TEST_TOPOLOGY, directory)
    for stem, entries in files.items():
        (directory / f"{stem}.json").write_text(json.dumps(entries))
    return directory


def _domains(directory: Path) -> list[dict[str, str]]:
    return json.loads((directory / "site_topology.json").read_text())


def _bnl_moves(tmp_path: Path, to: str = "BNL-NEW") -> Path:
    domains = [d for d in _domains(TEST_TOPOLOGY) if d["from_value"] != "bnl.gov"]
    return _edited(
        tmp_path, f"bnl-{to}", site_topology=[*domains, {"from_value": "bnl.gov", "to_value": to}]
    )


def _with_statistics(db: Harness) -> None:
    db.insert_raw("fed", ROWS)
    db.run("fed10", T0 + timedelta(days=1))
    assert len(db.table("t_stats_avg")) > 0


def _loads(db: Harness) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t_topology_load)).scalar_one()


def _site_of(db: Harness, domain: str) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(
            select(t_domain_site.c.site).where(t_domain_site.c.from_value == domain)
        ).scalar()


def test_load_refuses_a_change_once_statistics_exist(db: Harness, cli, tmp_path: Path) -> None:
    _with_statistics(db)
    loads = _loads(db)
    new = _bnl_moves(tmp_path)

    refused = cli("topology", "load", "--dir", str(new))
    assert refused.exit_code == 2, refused.output
    assert "statistics exist" in refused.output and "2 resolution(s) would change" in refused.output
    assert "wn2 (bnl.gov): BNL-ATLAS -> BNL-NEW" in refused.output
    assert f"xrdagg topology apply --dir {new} --dry-run" in refused.output
    # Nothing loaded: the old topology and the cache are as they were.
    assert _loads(db) == loads and _site_of(db, "bnl.gov") == "BNL-ATLAS"
    assert set(db.table("t_stats_avg").dst_site) == {"BNL-ATLAS"}

    # A SERVER_SITE alias that changes site is a change too.
    vo_sites = json.loads((TEST_TOPOLOGY / "vo_sites.json").read_text())
    renamed = [{**v, "site": "CERN-NEW"} if v["vo_site"] == "T2_CH_CERN" else v for v in vo_sites]
    alias = cli("topology", "load", "--dir", str(_edited(tmp_path, "alias", vo_sites=renamed)))
    assert alias.exit_code == 2 and "T2_CH_CERN (SERVER_SITE): CERN-PROD -> CERN-NEW" in (
        alias.output
    )

    # What changes no resolution loads: the same topology, or a new country.
    assert cli("topology", "load", "--dir", str(TEST_TOPOLOGY)).exit_code == 0
    countries = [{"site": "BNL-ATLAS", "country": "USA"}, {"site": "CERN-PROD", "country": "CH"}]
    result = cli(
        "topology", "load", "--dir", str(_edited(tmp_path, "cc", site_countries=countries))
    )
    assert result.exit_code == 0, result.output
    with db.engine.connect() as conn:
        assert dict(
            conn.execute(select(t_site_country.c.site, t_site_country.c.country)).all()
        ) == {
            "BNL-ATLAS": "USA",
            "CERN-PROD": "CH",
        }
    assert _loads(db) == loads + 2

    # And the way it points to does the change.
    applied = cli("topology", "apply", "--dir", str(new))
    assert applied.exit_code == 0, applied.output
    assert _site_of(db, "bnl.gov") == "BNL-NEW"
    assert set(db.table("t_stats_avg").dst_site) == {"BNL-NEW"}


def test_load_without_statistics_updates_the_cached_resolutions(
    db: Harness, cli, tmp_path: Path
) -> None:
    _with_statistics(db)
    with db.engine.begin() as conn:  # raw rows seen, no statistics left (as after a wipe)
        for table in (t_stats_avg, t_user_activity, t_stats_access_pattern):
            conn.execute(delete(table))
    result = cli("topology", "load", "--dir", str(_bnl_moves(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "2 cached host resolution(s) updated" in result.output
    with db.engine.connect() as conn:
        sites = dict(
            conn.execute(
                select(t_host_site.c.host_key, t_host_site.c.site).where(
                    t_host_site.c.domain_key == "bnl.gov"
                )
            ).all()
        )
    assert sites == {"wn1.bnl.gov": "BNL-NEW", "wn2": "BNL-NEW"}


def test_apply_dry_run_groups_by_domain_and_warns(db: Harness, cli, tmp_path: Path) -> None:
    _with_statistics(db)
    domains = [d for d in _domains(TEST_TOPOLOGY) if d["from_value"] not in ("bnl.gov", "cern.ch")]
    new = _edited(
        tmp_path,
        "suspicious",
        site_topology=[
            *domains,
            {"from_value": "bnl.gov", "to_value": "BNL-ATLSA"},  # a typo
            {"from_value": "cern.ch", "to_value": "T2_CH_CERN"},  # a CMS name, not the site
        ],
    )
    dry = cli("topology", "apply", "--dir", str(new), "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert "3 cached host(s) would change site, in 2 domain(s):" in lines
    # By domain, the most raw rows first, then its hosts.
    bnl = lines.index("  bnl.gov: 2 host(s), 25 raw rows; BNL-ATLAS -> BNL-ATLSA (2)")
    assert lines[bnl + 1 : bnl + 3] == [
        "    wn1.bnl.gov: BNL-ATLAS -> BNL-ATLSA, 20 raw rows",
        "    wn2: BNL-ATLAS -> BNL-ATLSA, 5 raw rows",
    ]
    cern = lines.index("  cern.ch: 1 host(s), 25 raw rows; CERN-PROD -> T2_CH_CERN (1)")
    assert cern > bnl + 2
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert any("no other list knows" in w and "BNL-ATLSA" in w for w in warnings), warnings
    assert any(
        "VO name(s) used as site names" in w and "T2_CH_CERN (the VO name of CERN-PROD)" in w
        for w in warnings
    ), warnings
    no_country = [w for w in warnings if "with no country" in w]
    assert len(no_country) == 1 and "BNL-ATLSA" in no_country[0] and "GRIF" in no_country[0]
    assert "BNL-ATLAS" not in no_country[0].split(": ", 2)[2].split(", ")
    assert lines[-1] == "dry run: nothing changed"
    assert _site_of(db, "bnl.gov") == "BNL-ATLAS"

    # The shipped-like test topology itself raises only what is true of it.
    clean = cli("topology", "apply", "--dir", str(TEST_TOPOLOGY), "--dry-run")
    assert "0 cached host(s) would change site, in 0 domain(s):" in clean.output
    assert "no other list knows" not in clean.output
    assert "VO name(s) used as site names" not in clean.output


def test_show_tells_what_maps_to_a_site(db: Harness, cli) -> None:
    result = cli("topology", "show", "in2p3-cc")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "site IN2P3-CC",
        "  country: France",
        "  VO names: cms T1_FR_CCIN2P3",
        "  patterns (rule 2): 0",
        "  domains and hosts (rule 3): 1",
        "    in2p3.fr",
        "  SERVER_SITE aliases (rule 1): T1_FR_CCIN2P3",
    ]
    by_vo_name = cli("topology", "show", "T2_CH_CERN")
    assert by_vo_name.output.startswith("site CERN-PROD (asked as 'T2_CH_CERN', a VO name)")
    patterns = cli("topology", "show", "UKI-SOUTHGRID-RALPP").output
    assert "  patterns (rule 2): 1\n    #2 \\.pp\\.rl\\.ac\\.uk\n" in patterns
    assert "  country: (none: add it to site_countries.json)" in patterns
    missing = cli("topology", "show", "IN2P3")
    assert missing.exit_code == 2 and "no site 'IN2P3'" in missing.output
    assert "did you mean IN2P3-CC" in missing.output


def test_resolve_shows_the_vo_names(db: Harness, cli) -> None:
    result = cli("topology", "resolve", "ccxrd01", "--domain", "in2p3.fr")
    assert result.exit_code == 0, result.output
    assert result.output.split()[0] == "IN2P3-CC"
    assert result.output.splitlines()[1] == "VO names: cms T1_FR_CCIN2P3"
    none = cli("topology", "resolve", "wn1.bnl.gov")
    assert len(none.output.splitlines()) == 1  # BNL-ATLAS has no VO name in this topology
