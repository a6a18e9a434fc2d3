"""What an operator reviews before trusting a topology: what maps to a site, and the entries that
look wrong (a name no list knows, a VO name used as a site, a site without a country).

Pure functions of a `Topology`: `xrdagg topology show`, `resolve`, `load` and `apply --dry-run`
read the topology from the database or from a directory and pass it here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from xrdagg.errors import TopologyError
from xrdagg.topology.files import Topology, VoSite
from xrdagg.topology.resolver import Pattern


@dataclass
class SiteProfile:
    """Everything a topology says about one site."""

    site: str
    asked_as: str | None = None  # the VO name the operator typed, when not the site itself
    patterns: list[Pattern] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)  # domain-map keys (domains and FQDNs)
    aliases: list[str] = field(default_factory=list)  # SERVER_SITE names rule 1 maps to it
    country: str | None = None
    vo_names: list[VoSite] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The profile as an operator reads it."""
        out = [f"site {self.site}"]
        if self.asked_as:
            out[0] += f" (asked as {self.asked_as!r}, a VO name)"
        out.append(f"  country: {self.country or '(none: add it to site_countries.json)'}")
        names = ", ".join(f"{e.vo} {e.vo_site}" for e in self.vo_names) or "(none)"
        out.append(f"  VO names: {names}")
        out.append(f"  patterns (rule 2): {len(self.patterns)}")
        out += [f"    #{p.rule_id} {p.pattern}" for p in self.patterns]
        out.append(f"  domains and hosts (rule 3): {len(self.domains)}")
        out += [f"    {d}" for d in self.domains]
        out.append(f"  SERVER_SITE aliases (rule 1): {', '.join(self.aliases) or '(none)'}")
        return out


def sites_of(topology: Topology) -> set[str]:
    """Every site a host or a SERVER_SITE can resolve to under `topology`."""
    return (
        set(topology.domain_map.values())
        | {p.site for p in topology.patterns}
        | {e.site for e in topology.vo_sites}
    )


def vo_names_of(topology: Topology, site: str) -> list[VoSite]:
    """The VO names of `site`, sorted by VO then name."""
    return sorted((e for e in topology.vo_sites if e.site == site), key=lambda e: (e.vo, e.vo_site))


def site_profile(topology: Topology, name: str) -> SiteProfile:
    """What maps to the site `name` (a GOCDB name, or a VO name of one; case-insensitive).
    Raises TopologyError, with the nearest names, when the topology knows no such site."""
    sites = sites_of(topology) | set(topology.countries)
    by_upper = {s.upper(): s for s in sites}
    site = by_upper.get(name.strip().upper())
    asked_as = None
    if site is None and (aliased := topology.aliases().get(name.strip().upper())) is not None:
        site, asked_as = aliased, name.strip()
    if site is None:
        near = difflib.get_close_matches(name.upper(), list(by_upper), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(by_upper[n] for n in near)}?" if near else ""
        raise TopologyError(f"no site {name!r} in the topology{hint}")
    return SiteProfile(
        site=site,
        asked_as=asked_as,
        patterns=[p for p in topology.patterns if p.site == site],
        domains=sorted(k for k, v in topology.domain_map.items() if v == site),
        aliases=sorted(a for a, s in topology.aliases().items() if s == site),
        country=topology.countries.get(site),
        vo_names=vo_names_of(topology, site),
    )


def topology_warnings(topology: Topology, known_sites: Iterable[str] | None = None) -> list[str]:
    """What looks wrong in `topology`, one line each:
    - a site no other list knows (not in `known_sites`, the sites of the database and of the
      topology loaded before, nor in site_countries.json or vo_sites.json): most likely a typo
      (not checked without `known_sites`: a first load has nothing to compare with);
    - a VO name used as a site (`T1_US_FNAL` where `USCMS-FNAL-WC1` is meant), which would split
      one site's statistics in two;
    - a site with no country.
    """
    mapped = set(topology.domain_map.values()) | {p.site for p in topology.patterns}
    warnings = []
    known = set(known_sites or ()) | set(topology.countries) | {e.site for e in topology.vo_sites}
    unknown = sorted(mapped - known) if known_sites is not None else []
    if unknown:
        warnings.append(
            f"{len(unknown)} site(s) no other list knows (not in the database, "
            f"site_countries.json or vo_sites.json; a typo?): {_few(unknown)}"
        )
    aliases = topology.aliases()
    vo_as_site = sorted(s for s in mapped if s.upper() in aliases and aliases[s.upper()] != s)
    if vo_as_site:
        warnings.append(
            f"{len(vo_as_site)} VO name(s) used as site names (use the GOCDB name): "
            + _few([f"{s} (the VO name of {aliases[s.upper()]})" for s in vo_as_site])
        )
    no_country = sorted(sites_of(topology) - set(topology.countries))
    if no_country:
        warnings.append(
            f"{len(no_country)} site(s) with no country in site_countries.json: {_few(no_country)}"
        )
    return warnings


def _few(names: list[str], limit: int = 10) -> str:
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" … and {more} more" if more > 0 else "")
