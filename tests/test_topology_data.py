"""The shipped topology (topology/) is one an operator can trust: every site a WLCG name of
the public sources, no entry that can never match, the large sites resolved, and a country for
every site the sources give one for. Checked against the committed files, not the derive script.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xrdagg.config import PROJECT_ROOT
from xrdagg.topology.files import read_topology_dir

SHIPPED_DIR = PROJECT_ROOT / "topology"
SOURCES = PROJECT_ROOT.parent / "shared" / "topology-sources"
SHIPPED = read_topology_dir(SHIPPED_DIR)


def _json(path: Path) -> object:
    return json.loads(path.read_text())


def _key(name: str) -> str:
    return name.upper().replace("_", "-")


def _sites() -> set[str]:
    return (
        set(SHIPPED.domain_map.values())
        | {p.site for p in SHIPPED.patterns}
        | {e.site for e in SHIPPED.vo_sites}
    )


needs_sources = pytest.mark.skipif(
    not SOURCES.is_dir(), reason=f"the public sources are not at {SOURCES}"
)


def _wlcg_names() -> set[str]:
    """The GOCDB/WLCG names of the sources: CRIC's sites and the ATLAS topology's SiteNames,
    without its per-domain "failover" stand-ins."""
    fax = _json(SOURCES / "fax_atlas_topology.json")
    cric = _json(SOURCES / "derived_cric_ce_host_site_country.json")
    assert isinstance(fax, dict) and isinstance(cric, dict)
    names = {row["wlcg_site"] for row in cric["rows"]}
    for entry in fax.values():
        if not entry["VOname"].endswith("failover") and entry["SiteName"] != "Roaming":
            names.add(entry["SiteName"])
        names |= {host["SiteName"] for host in entry["host_dict"].values()}
    return names


@needs_sources
def test_every_site_is_a_wlcg_name_of_the_sources() -> None:
    names = _wlcg_names()
    assert _sites() - names == set()
    assert "IN2P3" not in _sites()  # the ATLAS topology's failover stand-in for in2p3.fr


def test_no_placeholder_is_a_site() -> None:
    placeholders = {"NULL", "NONE", "N/A", "UNKNOWN", "KNOWNUNKNOWN", "ROAMING"}
    assert sorted(s for s in _sites() if s.upper() in placeholders) == []


def test_no_shared_domain_names_one_site() -> None:
    # Hosted CEs of dozens of sites, or several IN2P3 laboratories: no single site.
    shared = ("opensciencegrid.org", "in2p3.fr", "nipne.ro")
    assert {d: SHIPPED.domain_map[d] for d in shared if d in SHIPPED.domain_map} == {}


def test_one_spelling_per_site() -> None:
    spellings: dict[str, set[str]] = {}
    for site in _sites():
        spellings.setdefault(_key(site), set()).add(site)
    assert {k: v for k, v in spellings.items() if len(v) > 1} == {}


def test_no_entry_that_can_never_match() -> None:
    # An FQDN or domain is labels of letters, digits and hyphens: a port, a path or a space
    # in a domain-map key means the entry never matches anything.
    label = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
    fqdn = re.compile(rf"^({label}\.)*[a-z]{{2,}}$")  # letters in the TLD: no IP address
    assert [k for k in SHIPPED.domain_map if not fqdn.match(k)] == []
    # A pattern that matches no host name of its own sources' kind is dead weight; at least,
    # none may require a port or whitespace, which an FQDN never has.
    assert [p.pattern for p in SHIPPED.patterns if re.search(r":[0-9]|\\s| ", p.pattern)] == []


@pytest.mark.parametrize(
    ("host", "site"),
    [
        ("cmsstor359.fnal.gov", "USCMS-FNAL-WC1"),  # CMS Tier-1
        ("cmsdcadisk01.fnal.gov", "USCMS-FNAL-WC1"),
        ("eoscms-srv-m1.cern.ch", "CERN-PROD"),
        ("dcdoor-tape.usatlas.bnl.gov", "BNL-ATLAS"),  # ATLAS Tier-1
        ("ccxrdpli001.in2p3.fr", "IN2P3-CC"),
        ("ccsrm02.in2p3.fr", "IN2P3-CC"),
        ("lapp-se01.in2p3.fr", "IN2P3-LAPP"),
        ("xrootd-cms.gridka.de", "FZK-LCG2"),
        ("xs-400.cr.cnaf.infn.it", "INFN-T1"),
        ("srm-atlas.gridpp.rl.ac.uk", "RAL-LCG2"),
        ("xrootd.pic.es", "pic"),
        ("srm.ndgf.org", "NDGF-T1"),
        ("srm.grid.sara.nl", "SARA-MATRIX"),
        ("dcache.triumf.ca", "TRIUMF-LCG2"),
        ("xrootd.grid.sinica.edu.tw", "Taiwan-LCG2"),
        ("xrootd.ultralight.org", "CIT_CMS_T2"),  # CMS Tier-2s
        ("red-gridftp.unl.edu", "Nebraska"),
        ("xrootd.t2.ucsd.edu", "UCSDT2"),
        ("t2srv0001.cmsaf.mit.edu", "MIT_CMS"),
        ("xrootd.roma1.infn.it", "INFN-ROMA1"),
        ("xrootd.lnl.infn.it", "INFN-LNL-2"),
        ("eos.jinr.ru", "JINR-LCG2"),
    ],
)
def test_large_sites_resolve(host: str, site: str) -> None:
    assert SHIPPED.resolver().resolve(host, None).site == site


@needs_sources
def test_a_country_for_every_site_the_sources_place() -> None:
    cric = _json(SOURCES / "derived_cric_ce_host_site_country.json")
    assert isinstance(cric, dict)
    by_key = {_key(site): site for site in _sites()}
    placed = {
        by_key[_key(row["wlcg_site"])]
        for row in cric["rows"]
        if row["country"] and _key(row["wlcg_site"]) in by_key
    }
    # CMS names carry their country (T2_US_...), and so do sites under a country-code TLD.
    for entry in SHIPPED.vo_sites:
        if re.match(r"^T[0-3]_[A-Z]{2}_", entry.vo_site):
            placed.add(entry.site)
    for key, site in SHIPPED.domain_map.items():
        tld = key.rsplit(".", 1)[-1]
        if tld in {"edu", "gov"} or (len(tld) == 2 and tld not in {"su", "eu"}):
            placed.add(site)
    assert sorted(placed - set(SHIPPED.countries)) == []
    # And no country for a site nothing maps to.
    assert sorted(set(SHIPPED.countries) - _sites()) == []


def test_vo_names_are_not_sites() -> None:
    """A VO name used as a site would split one site's statistics in two."""
    vo_names = {e.vo_site for e in SHIPPED.vo_sites}
    assert sorted(vo_names & _sites()) == []
