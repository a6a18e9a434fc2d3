"""SPEC §3: topology files, the resolver, and loading into the database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.helpers import TEST_TOPOLOGY, Harness, fed
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.tables import t_domain_site, t_topology
from xrdagg.errors import TopologyError
from xrdagg.topology.files import read_topology_dir
from xrdagg.topology.resolver import normalize, parent_domains

SHIPPED = read_topology_dir(PROJECT_ROOT / "topology").resolver()


@pytest.mark.parametrize(
    ("host", "domain", "expected"),
    [
        ("cmsstor359", "fnal.gov", ("cmsstor359.fnal.gov", "fnal.gov")),
        ("lxfsre14c04.cern.ch", "cern.ch", ("lxfsre14c04.cern.ch", "cern.ch")),
        (" Node1.CERN.CH. ", None, ("node1.cern.ch", "cern.ch")),
        (None, "cern.ch", ("cern.ch", "cern.ch")),
        ("cern.ch", "cern.ch", ("cern.ch", "cern.ch")),
        ("wn7", None, ("wn7", None)),
        ("", "  ", (None, None)),
        ("~", "~", (None, None)),  # the cache's spelling of NULL
    ],
)
def test_normalisation(host, domain, expected) -> None:
    assert normalize(host, domain) == expected


def test_parent_domains_longest_first() -> None:
    assert list(parent_domains("a.lal.in2p3.fr")) == [
        "a.lal.in2p3.fr", "lal.in2p3.fr", "in2p3.fr", "fr"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("host", "domain", "site", "rule"),
    [
        ("x.pp.rl.ac.uk", None, "UKI-SOUTHGRID-RALPP", "PATTERN"),
        ("srm-atlas.gridpp.rl.ac.uk", None, "RAL-LCG2", "PATTERN"),
        ("grid-lab105.desy.de", None, "DESY-HH", "PATTERN"),  # GRID-LAB is no WLCG name
        ("dcache-door-atlas19.desy.de", None, "DESY-HH", "PATTERN"),
        ("lapp-se01", "in2p3.fr", "IN2P3-LAPP", "PATTERN"),
        ("lxfsre14c04", "cern.ch", "CERN-PROD", "DOMAIN_MAP"),
        ("brian-test", "unl.edu", "Nebraska", "DOMAIN_MAP"),
        ("worker", "cluster.local", "unknown", "NONE"),
    ],
)
def test_shipped_topology_answers_per_spec(host, domain, site, rule) -> None:
    result = SHIPPED.resolve(host, domain)
    assert (result.site, result.rule) == (site, rule)


def test_pattern_order_does_not_matter_only_match_length() -> None:
    ours = read_topology_dir(TEST_TOPOLOGY)  # lists \.rl\.ac\.uk before \.pp\.rl\.ac\.uk
    assert ours.resolver().resolve("x.pp.rl.ac.uk", None).site == "UKI-SOUTHGRID-RALPP"
    ours.patterns.reverse()
    assert ours.resolver().resolve("x.pp.rl.ac.uk", None).site == "UKI-SOUTHGRID-RALPP"


def test_server_site_through_alias_map() -> None:
    resolver = read_topology_dir(TEST_TOPOLOGY).resolver()
    assert resolver.resolve("x", "bnl.gov", "T1_FR_CCIN2P3").site == "IN2P3-CC"
    assert resolver.resolve("x", "bnl.gov", "T3_Nowhere").site == "T3_Nowhere"
    assert resolver.resolve("x", "bnl.gov", "  ").site == "BNL-ATLAS"


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "topology"
    shutil.copytree(TEST_TOPOLOGY, target)
    return target


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("topology_patterns.json", '[{"pattern": "(unclosed", "site": "X"}]', "entry 1 .*pattern does not compile"),
        ("topology_patterns.json", '[{"pattern": "(?=look)ahead", "site": "X"}]', "Oracle REGEXP_LIKE"),
        ("topology_patterns.json", '[{"pattern": "^[[:alpha:]]+\\\\.cern", "site": "X"}]',
         r"POSIX bracket expression \[\[:alpha:\]\], .*Oracle REGEXP_LIKE reads differently"),
        ("topology_patterns.json", '[{"pattern": "[\\\\.]cern", "site": "X"}]', "backslash inside the bracket"),
        ("topology_patterns.json", '[{"pattern": "\\\\x41", "site": "X"}]', r"the escape \\x"),
        ("topology_patterns.json", '[{"pattern": "(a)\\\\1", "site": "X"}]', "the escape \\\\1"),
        ("topology_patterns.json", '[{"pattern": "a{,3}", "site": "X"}]', r"quantifier \{,n\}"),
        ("topology_patterns.json", '[{"site": "X"}]', "entry 1 .*missing key 'pattern'"),
        ("site_topology.json", "{not json", "not valid JSON"),
        ("site_topology.json", '{"from_value": "a"}', "expected a JSON list"),
        ("site_topology.json", '[{"from_value": "a.ch", "to_value": "A"}, {"from_value": "A.CH.", "to_value": "B"}]',
         "entry 2: 'a.ch' -> 'B' contradicts entry 1"),
        ("vo_sites.json", '[{"vo": "cms", "site": "", "vo_site": "T2"}]', "'site' must be a non-empty string"),
        ("site_countries.json", '[{"site": "A", "country": 3}]', "'country' must be a non-empty string"),
    ],
)  # fmt: skip
def test_malformed_files_are_refused_with_file_entry_and_reason(
    tmp_path: Path, file, content, message
) -> None:
    directory = _copy(tmp_path)
    (directory / file).write_text(content)
    with pytest.raises(TopologyError, match=message) as error:
        read_topology_dir(directory)
    assert str(directory / file) in str(error.value)


def test_missing_files_mean_empty_tables(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "topology_patterns.json").unlink()
    (directory / "vo_sites.json").unlink()
    topology = read_topology_dir(directory)
    assert topology.patterns == [] and topology.vo_sites == [] and topology.domain_map
    with pytest.raises(TopologyError, match="none of the topology files"):
        read_topology_dir(tmp_path)


def test_a_refused_topology_leaves_the_loaded_one(db: Harness, tmp_path: Path, cli) -> None:
    directory = _copy(tmp_path)
    (directory / "site_topology.json").write_text(json.dumps([{"from_value": "x.org"}]))
    result = cli("topology", "load", "--dir", str(directory))
    assert result.exit_code == 2 and "missing key 'to_value'" in result.output
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t_topology)).scalar_one() == 5
        assert conn.execute(select(func.count()).select_from(t_domain_site)).scalar_one() == 6


def test_resolve_and_unresolved_commands(db: Harness, cli) -> None:
    result = cli("topology", "resolve", "x.pp.rl.ac.uk")
    assert result.exit_code == 0
    assert result.output.startswith("UKI-SOUTHGRID-RALPP") and "pattern #2" in result.output
    assert (
        "rule 1"
        in cli(
            "topology", "resolve", "h", "--domain", "cern.ch", "--server-site", "T2_CH_CERN"
        ).output
    )
    db.insert_raw(
        "fed",
        [
            fed(client_host="w1", client_domain="isp.net"),
            fed(client_host="w2", client_domain="isp.net"),
        ],
    )
    result = cli("topology", "unresolved", "--days", "100000")
    assert result.exit_code == 0
    assert "isp.net" in result.output and "client" in result.output
