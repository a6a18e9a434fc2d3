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

    # ATLAS names -> WLCG names, as the ATLAS topology pairs them.
    atlas_to_wlcg: dict[str, str] = {}
    vo_sites: set[tuple[str, str, str]] = set()

    def add_vo_name(site: str, vo_name: str) -> None:
        if not vo_name or vo_name == site or vo_name.endswith("failover"):
            return
        vo = "cms" if CMS_NAME.match(vo_name) else "atlas"
        vo_sites.add((vo, site, vo_name))
        if vo == "atlas":
            atlas_to_wlcg.setdefault(vo_name, site)

    domain_map: dict[str, str] = {}
    for domain, entry in fax.items():
        domain_map[domain.lower()] = entry["SiteName"]
        add_vo_name(entry["SiteName"], entry["VOname"])
        for host in entry["host_dict"].values():
            add_vo_name(host["SiteName"], host["VOname"])
    for domain, site in perl_domains.items():
        if site not in NOT_SITES and len(site) > 2:  # two letters: a country fallback
            domain_map.setdefault(domain.lower(), atlas_to_wlcg.get(site, site))
    for row in cric.dropna(subset=["host"]).itertuples():
        domain_map.setdefault(row.host.lower(), row.wlcg_site)
        for cms_site in row.cms_sites:
            vo_sites.add(("cms", row.wlcg_site, cms_site))

    patterns: list[dict[str, str]] = []
    seen_patterns: set[str] = set()
    for regex, site in perl_patterns:
        if len(site) > 2 and regex not in seen_patterns:
            patterns.append({"pattern": regex, "site": atlas_to_wlcg.get(site, site)})
            seen_patterns.add(regex)
    for entry in derived["host_patterns"]:
        if entry["pattern"] not in seen_patterns:
            patterns.append({"pattern": entry["pattern"], "site": entry["to_value"]})
            seen_patterns.add(entry["pattern"])

    sites = set(domain_map.values()) | {p["site"] for p in patterns} | {s for _, s, _ in vo_sites}
    countries: dict[str, str] = {}
    for row in cric.dropna(subset=["country"]).itertuples():
        name = country_name(row.country)
        if name:
            countries.setdefault(row.wlcg_site, name)
    # OSG resources: the country most of a site's resources give, the site found by FQDN suffix.
    osg_votes: dict[str, Counter[str]] = defaultdict(Counter)
    for row in osg.dropna(subset=["country"]).itertuples():
        labels = row.fqdn.lower().split(".")
        for i in range(len(labels)):
            site = domain_map.get(".".join(labels[i:]))
            if site:
                osg_votes[site][_osg_country(row.country)] += 1
                break
    for site, votes in osg_votes.items():
        countries.setdefault(site, votes.most_common(1)[0][0])
    for _, site, vo_name in sorted(vo_sites):
        match = CMS_NAME.match(vo_name)
        if match and site not in countries and (name := country_name(match.group(1))):
            countries[site] = name
    for domain, site in sorted(domain_map.items()):
        tld = domain.rsplit(".", 1)[-1]
        if site in countries:
            continue
        if tld in US_ONLY_TLDS:
            countries[site] = "United States"
        elif len(tld) == 2 and (name := country_name(tld)):
            countries[site] = name

    write(HERE / "site_topology.json", [{"from_value": d, "to_value": s} for d, s in sorted(domain_map.items())])
    write(HERE / "topology_patterns.json", patterns)
    write(HERE / "site_countries.json", [{"site": s, "country": countries[s]} for s in sorted(countries)])
    write(HERE / "vo_sites.json", [{"vo": v, "site": s, "vo_site": n} for v, s, n in sorted(vo_sites)])
    print(
        f"{len(domain_map)} domains, {len(patterns)} patterns, {len(vo_sites)} VO names, "
        f"{len(countries)} of {len(sites)} sites with a country"
    )


def _osg_country(value: str) -> str:
    return {"USA": "United States", "US": "United States"}.get(value, value)


def write(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCES)
