"""Host/domain normalisation and site resolution, exactly as SPEC §2 and §3 define them.

Resolution runs in Python over the *distinct* raw (host, domain) pairs only (thousands, not
millions), and its results are cached in T_HOST_SITE; the aggregation then joins that cache.
Patterns are matched with RE2 (`xrdagg.topology.regex`: linear time, whatever the pattern) in
the subset of syntax that Oracle's REGEXP_LIKE reads the same way (`xrdagg.topology.files`
refuses the rest), so a pattern means the same in both and no pattern can hang a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from xrdagg.rules import DOMAIN_LEN, NULL_KEY, UNKNOWN
from xrdagg.topology.regex import compile_pattern, compile_pattern_set

RULE_SERVER_SITE = "SERVER_SITE"
RULE_PATTERN = "PATTERN"
RULE_DOMAIN_MAP = "DOMAIN_MAP"
RULE_NONE = "NONE"


@dataclass(frozen=True)
class Pattern:
    """One row of T_TOPOLOGY: a regular expression and the site it names."""

    rule_id: int  # 1-based position in topology_patterns.json
    pattern: str
    site: str

    def compiled(self) -> Any:
        """The pattern compiled for case-insensitive, linear-time search."""
        return compile_pattern(self.pattern)


class Resolution(NamedTuple):
    """The site of one side of a row, and the rule of SPEC §3 that gave it.

    A named tuple, not a frozen dataclass: a first catch-up makes one for each of ~112k new
    pairs, and a frozen dataclass's constructor (a guarded `__setattr__` per field) took 0.15 s
    of them, a tuple's 0.02 s."""

    fqdn: str | None
    domain: str  # normalised domain, or 'unknown'
    site: str  # GOCDB site, or 'unknown'
    rule: str  # RULE_*
    ref: str | None  # the pattern's rule id, the domain-map key, or the SERVER_SITE value

    def explain(self) -> str:
        """Which rule of SPEC §3 answered, in words (e.g. "rule 2, topology pattern #3")."""
        return {
            RULE_SERVER_SITE: f"rule 1, SERVER_SITE {self.ref!r} through the VO-name alias map",
            RULE_PATTERN: f"rule 2, topology pattern #{self.ref}",
            RULE_DOMAIN_MAP: f"rule 3, domain map entry {self.ref!r}",
            RULE_NONE: "unresolved: no rule answered",
        }[self.rule]


def normalize_part(value: str | None) -> str | None:
    """Trimmed, lower-cased, trailing dots removed; None when nothing is left."""
    if value is None or value == NULL_KEY:
        return None
    value = value.strip().lower().rstrip(".")
    return value or None


def normalize(host: str | None, domain: str | None) -> tuple[str | None, str | None]:
    """(FQDN, domain) of a raw host/domain pair, per SPEC §2.

    The FQDN is the host when it already ends with `.domain` (or is the domain itself), else
    `host.domain`; a missing part is left out. A missing domain is taken from the FQDN: everything
    after its first dot.
    """
    h, d = normalize_part(host), normalize_part(domain)
    fqdn: str | None
    if h and d:
        fqdn = h if h == d or h.endswith("." + d) else f"{h}.{d}"
    else:
        fqdn = h or d
    if d is None and h is not None and "." in h:
        d = h.split(".", 1)[1]
    return fqdn, d


def parent_domains(fqdn: str) -> Iterator[str]:
    """`a.lal.in2p3.fr` -> a.lal.in2p3.fr, lal.in2p3.fr, in2p3.fr, fr: longest first, each cut
    from the last as it is asked for (the resolver mostly stops at the second or third; building
    the whole list by split and join cost twice the time of a first catch-up's 112k lookups)."""
    candidate = fqdn
    while True:
        yield candidate
        dot = candidate.find(".")
        if dot < 0:
            return
        candidate = candidate[dot + 1 :]


class Resolver:
    """Resolves one side of a row to a site with the rules of SPEC §3, in order."""

    def __init__(
        self,
        patterns: Iterable[Pattern],
        domain_map: Mapping[str, str],
        aliases: Mapping[str, str],
    ) -> None:
        self._patterns = [(p, p.compiled()) for p in patterns]
        self._any_pattern = _any_of(self._patterns)
        self._pattern_set = (
            compile_pattern_set([p.pattern for p, _ in self._patterns]) if self._patterns else None
        )
        self._domain_map = dict(domain_map)
        self._aliases = {k.upper(): v for k, v in aliases.items()}

    def server_site(self, server_site: str | None) -> str | None:
        """Rule 1: a row's SERVER_SITE through the VO-name alias map (unknown names are kept)."""
        if server_site is None or not server_site.strip():
            return None
        name = server_site.strip()
        return self._aliases.get(name.upper(), name)

    def resolve(
        self, host: str | None, domain: str | None, server_site: str | None = None
    ) -> Resolution:
        """The resolution of a raw (host, domain), with the row's SERVER_SITE for the server side
        (SPEC §2-3)."""
        fqdn, dom = normalize(host, domain)
        shown_domain = (dom or UNKNOWN)[:DOMAIN_LEN]
        site = self.server_site(server_site)
        if site is not None:
            return Resolution(fqdn, shown_domain, site, RULE_SERVER_SITE, server_site)
        if fqdn is None:
            return Resolution(None, shown_domain, UNKNOWN, RULE_NONE, None)
        best = self._best_pattern(fqdn)
        if best is not None:
            return Resolution(fqdn, shown_domain, best.site, RULE_PATTERN, str(best.rule_id))
        for candidate in parent_domains(fqdn):
            site = self._domain_map.get(candidate)
            if site is not None:
                return Resolution(fqdn, shown_domain, site, RULE_DOMAIN_MAP, candidate)
        return Resolution(fqdn, shown_domain, UNKNOWN, RULE_NONE, None)

    def _best_pattern(self, fqdn: str) -> Pattern | None:
        """Longest matched text wins, then the longer pattern, then the lower rule id."""
        # Most hosts match no pattern: one search instead of one per pattern, of the UTF-8 bytes
        # (whether there is a match does not depend on the form; the str form costs the
        # wrapper's offset conversions, 0.19 s against 0.13 s for a catch-up's 112k hosts).
        if self._any_pattern is None or self._any_pattern.search(fqdn.encode()) is None:
            return None
        # The patterns that match, in one pass of the set (a catch-up resolves 115k hosts: one
        # search per pattern and matching host was half of their resolution time); all of them
        # when the set answers nothing although one matched (its DFA ran out of memory).
        indices = self._pattern_set.Match(fqdn) if self._pattern_set is not None else None
        candidates = [self._patterns[i] for i in sorted(indices)] if indices else self._patterns
        best: tuple[int, int, int] | None = None
        winner: Pattern | None = None
        for pattern, regex in candidates:
            match = regex.search(fqdn)
            if match is None:
                continue
            rank = (len(match.group(0)), len(pattern.pattern), -pattern.rule_id)
            if best is None or rank > best:
                best, winner = rank, pattern
        return winner


def _any_of(patterns: list[tuple[Pattern, Any]]) -> Any:
    """One regular expression that matches where any of `patterns` matches (None without
    patterns). RE2 has no backreferences, so an alternation cannot change what one matches."""
    if not patterns:
        return None
    return compile_pattern("|".join(f"(?:{p.pattern})" for p, _ in patterns))
