"""Reading and validating a topology directory (SPEC §3).

All four files are optional (a missing one is an empty table), but a malformed one refuses the
whole directory: every problem is reported with its file, entry number and reason, and nothing is
loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xrdagg.errors import TopologyError
from xrdagg.rules import DOMAIN_LEN, SITE_LEN, VO_LEN
from xrdagg.topology.regex import PatternError, check_pattern
from xrdagg.topology.resolver import Pattern, Resolver, normalize_part

SITE_TOPOLOGY = "site_topology.json"
PATTERNS = "topology_patterns.json"
COUNTRIES = "site_countries.json"
VO_SITES = "vo_sites.json"
FILES = (SITE_TOPOLOGY, PATTERNS, COUNTRIES, VO_SITES)

MAX_REPORTED_PROBLEMS = 50


@dataclass(frozen=True)
class VoSite:
    """One VO's name for a site (vo_sites.json)."""

    vo: str
    site: str
    vo_site: str


@dataclass
class Topology:
    """The content of a topology directory, validated."""

    patterns: list[Pattern] = field(default_factory=list)
    domain_map: dict[str, str] = field(default_factory=dict)
    countries: dict[str, str] = field(default_factory=dict)
    vo_sites: list[VoSite] = field(default_factory=list)
    checksum: str = ""

    def aliases(self) -> dict[str, str]:
        """VO site name (upper case) -> GOCDB site; the smallest site when a name is ambiguous."""
        aliases: dict[str, str] = {}
        for entry in sorted(self.vo_sites, key=lambda e: e.site):
            aliases.setdefault(entry.vo_site.upper(), entry.site)
        return aliases

    def resolver(self) -> Resolver:
        """The resolver of this topology (SPEC §3)."""
        return Resolver(self.patterns, self.domain_map, self.aliases())


def read_topology_dir(directory: Path) -> Topology:
    """Read and validate the files of `directory`; raise TopologyError listing every problem."""
    if not directory.is_dir():
        raise TopologyError(f"{directory}: not a directory")
    present = [name for name in FILES if (directory / name).is_file()]
    if not present:
        raise TopologyError(
            f"{directory}: none of the topology files is there ({', '.join(FILES)})"
        )
    problems: list[str] = []
    topology = Topology()
    digest = hashlib.sha256()
    for name in FILES:
        path = directory / name
        if not path.is_file():
            continue
        content = path.read_bytes()
        digest.update(name.encode() + b"\0" + content)
        entries = _entries(path, content, problems)
        _READERS[name](topology, path, entries, problems)
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        tail = f"\n  … and {more} more" if more else ""
        raise TopologyError(
            f"topology in {directory} refused, nothing loaded:\n  " + "\n  ".join(shown) + tail
        )
    topology.checksum = digest.hexdigest()
    return topology


def _entries(path: Path, content: bytes, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: not valid JSON ({exc})")
        return []
    if not isinstance(data, list):
        problems.append(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        return []
    entries = []
    for number, entry in enumerate(data, start=1):
        if isinstance(entry, dict):
            entries.append((number, entry))
        else:
            problems.append(f"{path} entry {number}: expected an object, got {entry!r}")
    return entries


def _text(
    path: Path, number: int, entry: dict[str, Any], key: str, max_len: int, problems: list[str]
) -> str | None:
    value = entry.get(key)
    if key not in entry:
        problems.append(f"{path} entry {number} {_show(entry)}: missing key {key!r}")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{path} entry {number} {_show(entry)}: {key!r} must be a non-empty string")
        return None
    value = value.strip()
    if len(value.encode()) > max_len:
        problems.append(f"{path} entry {number}: {key!r} is longer than {max_len} bytes")
        return None
    return value


def _show(entry: dict[str, Any]) -> str:
    text = json.dumps(entry, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def _read_site_topology(
    topology: Topology, path: Path, entries: list[tuple[int, dict[str, Any]]], problems: list[str]
) -> None:
    first_seen: dict[str, int] = {}
    for number, entry in entries:
        raw_from = _text(path, number, entry, "from_value", DOMAIN_LEN, problems)
        site = _text(path, number, entry, "to_value", SITE_LEN, problems)
        if raw_from is None or site is None:
            continue
        key = normalize_part(raw_from)
        if key is None:
            problems.append(
                f"{path} entry {number}: 'from_value' {raw_from!r} is empty once trimmed"
            )
            continue
        known = topology.domain_map.get(key)
        if known is not None and known != site:
            problems.append(
                f"{path} entry {number}: {key!r} -> {site!r} contradicts entry "
                f"{first_seen[key]} ({key!r} -> {known!r})"
            )
            continue
        topology.domain_map[key] = site
        first_seen.setdefault(key, number)


def _read_patterns(
    topology: Topology, path: Path, entries: list[tuple[int, dict[str, Any]]], problems: list[str]
) -> None:
    for number, entry in entries:
        pattern = _text(path, number, entry, "pattern", 1000, problems)
        site = _text(path, number, entry, "site", SITE_LEN, problems)
        if pattern is None or site is None:
            continue
        try:
            check_pattern(pattern)
        except PatternError as refused:
            problems.append(f"{path} entry {number} {_show(entry)}: {refused}")
            continue
        # Rule id = position in the file, 1-based (SPEC §3).
        topology.patterns.append(Pattern(rule_id=number, pattern=pattern, site=site))


def _read_countries(
    topology: Topology, path: Path, entries: list[tuple[int, dict[str, Any]]], problems: list[str]
) -> None:
    for number, entry in entries:
        site = _text(path, number, entry, "site", SITE_LEN, problems)
        country = _text(path, number, entry, "country", 128, problems)
        if site is None or country is None:
            continue
        known = topology.countries.get(site)
        if known is not None and known != country:
            problems.append(f"{path} entry {number}: {site!r} is in {country!r} and {known!r}")
            continue
        topology.countries[site] = country


def _read_vo_sites(
    topology: Topology, path: Path, entries: list[tuple[int, dict[str, Any]]], problems: list[str]
) -> None:
    seen: set[VoSite] = set()
    for number, entry in entries:
        vo = _text(path, number, entry, "vo", VO_LEN, problems)
        site = _text(path, number, entry, "site", SITE_LEN, problems)
        vo_site = _text(path, number, entry, "vo_site", SITE_LEN, problems)
        if vo is None or site is None or vo_site is None:
            continue
        item = VoSite(vo.lower(), site, vo_site)
        if item not in seen:
            seen.add(item)
            topology.vo_sites.append(item)


_Reader = Callable[[Topology, Path, list[tuple[int, dict[str, Any]]], list[str]], None]
_READERS: dict[str, _Reader] = {
    SITE_TOPOLOGY: _read_site_topology,
    PATTERNS: _read_patterns,
    COUNTRIES: _read_countries,
    VO_SITES: _read_vo_sites,
}
