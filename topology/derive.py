"""Derive the shipped topology files from the public sources in ../shared/topology-sources/.

Run from the repository root (needs the dev extras, for pycountry):

    .venv/bin/python topology/derive.py [SOURCES_DIR]

What comes from where (topology/README.md cites each source and its licence):
- site_topology.json: the FAX ATLAS topology's domains (WLCG `SiteName`), then the FAX 2014
  host_to_site table's plain domain entries it lacks, then CRIC CE host names (FQDN -> site).
- topology_patterns.json: the FAX host regexes (`sub {}` blocks of host_to_site, the host_dict
  prefixes of the ATLAS topology), with ATLAS site names turned into WLCG names where the ATLAS
  topology pairs them. Country fallbacks (`return 'UK'`) are not sites and are left out.
- vo_sites.json: ATLAS names from the ATLAS topology (`VOname`), CMS names from CRIC
  (`GLIDEIN_CMSSite`) and from T[0-3]_CC_Name VOnames; "failover" pseudo-names are left out.
- site_countries.json: CRIC's country code, else the country of the site's OSG resources, else
  the code inside its CMS name (T2_US_…), else its domains' country-code TLD.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pycountry

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCES = HERE.parent.parent / "shared" / "topology-sources"
CMS_NAME = re.compile(r"^T[0-3]_([A-Z]{2})_")
US_ONLY_TLDS = {"edu", "gov", "mil"}
NOT_SITES = {"KnownUnknown"}
# Placeholders some CRIC rows carry for "no site": never a site name.
PLACEHOLDERS = {"NULL", "NONE", "N/A", "UNKNOWN", ""}
HOST_NAME = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")  # letters in the TLD: no IPs
PORT = re.compile(r":[0-9]+$")
# The ATLAS topology's stand-ins for "somewhere in this domain": not sites.
PSEUDO_SITES = {"Roaming"}
# Second-level labels under which organisations register (`rl.ac.uk`, `sprace.org.br`).
SECOND_LEVEL = {"ac", "co", "com", "edu", "gov", "net", "org", "res"}
# A domain that holds the resources of more OSG sites than this is a hosting domain
# (`opensciencegrid.org`, `uchicago.edu`: hosted CEs of dozens of sites), not one organisation's.
HOSTING_SITES = 8
PATTERN_TLD = re.compile(r"\\\.([a-z]{2,3})\$?$")


def site_key(name: str) -> str:
    """Spellings of one WLCG name compare equal (`INFN_ROMA1`, `INFN-ROMA1`, `INFN-Roma1`)."""
    return name.upper().replace("_", "-")


def organisation_domain(fqdn: str) -> str:
    """`cmsosgce.fnal.gov` -> `fnal.gov`; `ce01.gridpp.rl.ac.uk` -> `rl.ac.uk`."""
    labels = fqdn.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def country_name(code: str) -> str | None:
    code = {"UK": "GB"}.get(code.upper(), code.upper())
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return None
    return getattr(country, "common_name", None) or country.name


def parse_fax_perl(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Plain `'domain' => 'SITE'` entries, and the ordered host regexes of its `sub {}` blocks."""
    domains: dict[str, str] = {}
    for domain, site in re.findall(r"^\s*'([^']+)'\s*=>\s*'([^']+)'", text, re.MULTILINE):
        domains[domain] = site  # a repeated key: the last definition wins, as in Perl
    patterns = re.findall(r"return\s+'([^']+)'\s+if\s+\$h\s*=~\s*m/(.+?)/;", text)
    return domains, [(regex, site) for site, regex in patterns]


def main(sources: Path) -> None:
    fax = json.loads((sources / "fax_atlas_topology.json").read_text())
    perl_domains, perl_patterns = parse_fax_perl((sources / "fax_host_to_site_2014-11.txt").read_text())
    derived = json.loads((sources / "derived_site_topology_from_fax.json").read_text())
    cric = pd.DataFrame(json.loads((sources / "derived_cric_ce_host_site_country.json").read_text())["rows"])
    osg = pd.DataFrame(json.loads((sources / "osg_topology_resources.json").read_text()))
    dropped: Counter[str] = Counter()

    # The WLCG (GOCDB/OIM) names: CRIC's spelling first, then the ATLAS topology's `SiteName`s,
    # except a domain's "failover" stand-in (`in2p3.fr` -> `IN2P3`, shared by several sites).
    failover_domains = {d.lower() for d, e in fax.items() if e["VOname"].endswith("failover")}
    failover_domains |= {d.lower() for d, e in fax.items() if e["SiteName"] in PSEUDO_SITES}
    wlcg: dict[str, str] = {}
    for name in cric["wlcg_site"]:
        if site_key(name) not in PLACEHOLDERS:
            wlcg.setdefault(site_key(name), name)
    for domain, entry in fax.items():
        if domain.lower() not in failover_domains:
            wlcg.setdefault(site_key(entry["SiteName"]), entry["SiteName"])
        for host in entry["host_dict"].values():
            wlcg.setdefault(site_key(host["SiteName"]), host["SiteName"])

    def canonical(name: str) -> str | None:
        site = wlcg.get(site_key(name))
        if site is None:
            dropped[name] += 1
        return site

    # ATLAS names -> WLCG names, as the ATLAS topology pairs them.
    atlas_to_wlcg: dict[str, str] = {}
    vo_sites: set[tuple[str, str, str]] = set()

    def add_vo_name(site: str | None, vo_name: str) -> None:
        if site is None or not vo_name or vo_name == site or vo_name.endswith("failover"):
            return
        vo = "cms" if CMS_NAME.match(vo_name) else "atlas"
        vo_sites.add((vo, site, vo_name))
        if vo == "atlas":
            atlas_to_wlcg.setdefault(vo_name, site)

    domain_map: dict[str, str] = {}
    for domain, entry in fax.items():
        site = canonical(entry["SiteName"]) if domain.lower() not in failover_domains else None
        if site is not None:
            domain_map[domain.lower()] = site
        add_vo_name(site, entry["VOname"])
        for host in entry["host_dict"].values():
            add_vo_name(canonical(host["SiteName"]), host["VOname"])
    for domain, name in perl_domains.items():
        if name in NOT_SITES or len(name) <= 2 or domain.lower() in failover_domains:
            continue  # two letters: a country fallback
        if site := canonical(atlas_to_wlcg.get(name, name)):
            domain_map.setdefault(domain.lower(), site)
    # CE host names, without the port some carry (an FQDN never has one: `ce:2811` never matches).
    hosts: dict[str, str] = {}
    for row in cric.dropna(subset=["host"]).itertuples():
        site = canonical(row.wlcg_site)
        if site is None:
            continue
        host = PORT.sub("", row.host.lower())
        if HOST_NAME.match(host):
            hosts.setdefault(host, site)
        for cms_site in row.cms_sites:
            if cms_site != site:
                vo_sites.add(("cms", site, cms_site))
    # OSG resources of resource groups that are WLCG sites (`USCMS-FNAL-WC1`, `BNL-ATLAS`).
    osg["wlcg_site"] = [wlcg.get(site_key(g)) for g in osg["resource_group"]]
    osg_wlcg = osg.dropna(subset=["wlcg_site"])
    for row in osg_wlcg.itertuples():
        if HOST_NAME.match(row.fqdn.lower()):
            hosts.setdefault(row.fqdn.lower(), row.wlcg_site)
    for host, site in hosts.items():
        domain_map.setdefault(host, site)
    # An organisation's domain whose every known host and domain (two hosts at least) belongs to
    # one site names that site (`fnal.gov`: the CMS Tier-1's storage hosts are in no table, its
    # CEs are). A shared domain (hosted CEs, several sites) gets no entry.
    by_organisation: dict[str, list[str]] = defaultdict(list)
    for key, site in domain_map.items():
        by_organisation[organisation_domain(key)].append(site)
    for domain, entry in fax.items():
        for host in entry["host_dict"].values():
            by_organisation[organisation_domain(domain.lower())].append(host["SiteName"])
    osg_sites: dict[str, set[str]] = defaultdict(set)
    for row in osg.itertuples():
        osg_sites[organisation_domain(row.fqdn.lower())].add(row.site)
    for domain, organisation_sites in sorted(by_organisation.items()):
        if len(organisation_sites) >= 2 and len(set(organisation_sites)) == 1:
            if domain not in failover_domains and len(osg_sites[domain]) <= HOSTING_SITES:
                domain_map.setdefault(domain, organisation_sites[0])

    patterns: list[dict[str, str]] = []
    seen_patterns: set[str] = set()
    for regex, name in perl_patterns:
        site = canonical(atlas_to_wlcg.get(name, name)) if len(name) > 2 else None
        if site is not None and regex not in seen_patterns:
            patterns.append({"pattern": regex, "site": site})
            seen_patterns.add(regex)
    for entry in derived["host_patterns"]:
        site = canonical(entry["to_value"])
        if site is not None and entry["pattern"] not in seen_patterns:
            patterns.append({"pattern": entry["pattern"], "site": site})
            seen_patterns.add(entry["pattern"])

    sites = set(domain_map.values()) | {p["site"] for p in patterns} | {s for _, s, _ in vo_sites}
    countries: dict[str, str] = {}
    for row in cric.dropna(subset=["country"]).itertuples():
        site = wlcg.get(site_key(row.wlcg_site))
        if site and (name := country_name(row.country)):
            countries.setdefault(site, name)
    # OSG resources: the country most of a site's resources give (by resource group, else by
    # FQDN suffix).
    osg_votes: dict[str, Counter[str]] = defaultdict(Counter)
    for row in osg.dropna(subset=["country"]).itertuples():
        site = row.wlcg_site if isinstance(row.wlcg_site, str) else None
        labels = row.fqdn.lower().split(".")
        for i in range(len(labels)):
            if site:
                break
            site = domain_map.get(".".join(labels[i:]))
        if site:
            osg_votes[site][_osg_country(row.country)] += 1
    for site, votes in osg_votes.items():
        countries.setdefault(site, votes.most_common(1)[0][0])
    for _, site, vo_name in sorted(vo_sites):
        match = CMS_NAME.match(vo_name)
        if match and site not in countries and (name := country_name(match.group(1))):
            countries[site] = name
    # Last, the country-code TLD of the site's domains and of its patterns' domains.
    tlds = [(d.rsplit(".", 1)[-1], s) for d, s in sorted(domain_map.items())]
    tlds += [(m.group(1), p["site"]) for p in patterns if (m := PATTERN_TLD.search(p["pattern"]))]
    for tld, site in tlds:
        if site in countries:
            continue
        if tld in US_ONLY_TLDS:
            countries[site] = "United States"
        elif len(tld) == 2 and (name := country_name(tld)):
            countries[site] = name
    countries = {s: c for s, c in countries.items() if s in sites}

    write(HERE / "site_topology.json", [{"from_value": d, "to_value": s} for d, s in sorted(domain_map.items())])
    write(HERE / "topology_patterns.json", patterns)
    write(HERE / "site_countries.json", [{"site": s, "country": countries[s]} for s in sorted(countries)])
    write(HERE / "vo_sites.json", [{"vo": v, "site": s, "vo_site": n} for v, s, n in sorted(vo_sites)])
    print(
        f"{len(domain_map)} domains, {len(patterns)} patterns, {len(vo_sites)} VO names, "
        f"{len(countries)} of {len(sites)} sites with a country"
    )
    if dropped:
        print("left out, not a WLCG name:", ", ".join(sorted(dropped)))


def _osg_country(value: str) -> str:
    return {"USA": "United States", "US": "United States"}.get(value, value)


def write(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCES)
