"""Topology in the database: loading a directory, reading it back, and the resolution cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    union,
    union_all,
    update,
)

from xrdagg.db.dialect import (
    analyze_table,
    db_now,
    estimated_rows,
    insert_ignoring_duplicates,
    narrow_distinct_chars,
    narrow_text,
    update_each,
)
from xrdagg.db.tables import (
    RAW_TABLES,
    t_domain_site,
    t_host_site,
    t_site,
    t_site_alias,
    t_site_country,
    t_site_vo_name,
    t_stats_access_pattern,
    t_stats_avg,
    t_topology,
    t_topology_load,
    t_user_activity,
)
from xrdagg.errors import TopologyError
from xrdagg.rules import NULL_KEY
from xrdagg.topology.files import Topology, VoSite
from xrdagg.topology.resolver import Pattern, Resolution, Resolver

_TOPOLOGY_TABLES = (t_topology, t_domain_site, t_site_country, t_site_vo_name, t_site_alias)


@dataclass(frozen=True)
class LoadSummary:
    """What a topology load wrote."""

    load_id: int
    patterns: int
    domains: int
    countries: int
    vo_names: int
    has_cached_pairs: bool  # resolutions made under an earlier topology


def load_topology(conn: Connection, topology: Topology, source_dir: Path) -> LoadSummary:
    """Replace the topology tables with `topology` (the caller's transaction makes it atomic)."""
    for table in _TOPOLOGY_TABLES:
        conn.execute(delete(table))
    if topology.patterns:
        conn.execute(
            insert(t_topology),
            [
                {"rule_id": p.rule_id, "pattern": p.pattern, "site": p.site}
                for p in topology.patterns
            ],
        )
    if topology.domain_map:
        conn.execute(
            insert(t_domain_site),
            [{"from_value": k, "site": v} for k, v in sorted(topology.domain_map.items())],
        )
    if topology.countries:
        conn.execute(
            insert(t_site_country),
            [{"site": k, "country": v} for k, v in sorted(topology.countries.items())],
        )
    if topology.vo_sites:
        conn.execute(
            insert(t_site_vo_name),
            [{"vo": e.vo, "site": e.site, "vo_site": e.vo_site} for e in topology.vo_sites],
        )
        conn.execute(
            insert(t_site_alias),
            [{"alias": k, "site": v} for k, v in sorted(topology.aliases().items())],
        )
    load_id = conn.execute(
        insert(t_topology_load)
        .values(
            loaded_at=db_now(),
            source_dir=str(source_dir)[:1000],
            checksum=topology.checksum,
            n_patterns=len(topology.patterns),
            n_domains=len(topology.domain_map),
        )
        .returning(t_topology_load.c.load_id)
    ).scalar_one()
    refresh_site_countries(conn)
    return LoadSummary(
        load_id=load_id,
        patterns=len(topology.patterns),
        domains=len(topology.domain_map),
        countries=len(topology.countries),
        vo_names=len(topology.vo_sites),
        has_cached_pairs=has_cached_pairs(conn),
    )


def refresh_site_countries(conn: Connection) -> None:
    """T_SITE.COUNTRY from the loaded topology ('unknown' for a site it lacks)."""
    country = (
        select(t_site_country.c.country)
        .where(t_site_country.c.site == t_site.c.site)
        .scalar_subquery()
    )
    conn.execute(update(t_site).values(country=func.coalesce(country, "unknown")))


def has_topology(conn: Connection) -> bool:
    """Whether a topology has been loaded into the database."""
    return conn.execute(select(func.count()).select_from(t_topology_load)).scalar_one() > 0


def require_topology(conn: Connection) -> None:
    """Raise TopologyError unless a topology is loaded: no statistics without one."""
    if not has_topology(conn):
        raise TopologyError("no topology is loaded: run `xrdagg topology load` first")


def read_resolver(conn: Connection) -> Resolver:
    """The resolver of the topology loaded in the database."""
    require_topology(conn)
    patterns = [
        Pattern(rule_id=r.rule_id, pattern=r.pattern, site=r.site)
        for r in conn.execute(select(t_topology).order_by(t_topology.c.rule_id))
    ]
    domains = {r.from_value: r.site for r in conn.execute(select(t_domain_site))}
    aliases = {r.alias: r.site for r in conn.execute(select(t_site_alias))}
    return Resolver(patterns, domains, aliases)


def read_topology(conn: Connection) -> Topology:
    """The topology loaded in the database, as its files would give it."""
    require_topology(conn)
    return Topology(
        patterns=[
            Pattern(rule_id=r.rule_id, pattern=r.pattern, site=r.site)
            for r in conn.execute(select(t_topology).order_by(t_topology.c.rule_id))
        ],
        domain_map={r.from_value: r.site for r in conn.execute(select(t_domain_site))},
        countries={r.site: r.country for r in conn.execute(select(t_site_country))},
        vo_sites=[
            VoSite(r.vo, r.site, r.vo_site)
            for r in conn.execute(
                select(t_site_vo_name).order_by(t_site_vo_name.c.vo, t_site_vo_name.c.vo_site)
            )
        ],
    )


def statistics_exist(conn: Connection) -> bool:
    """Whether any statistics row holds a resolved site (the tables a topology change rebuilds)."""
    return any(
        conn.execute(select(table.c.bin_start).limit(1)).first() is not None
        for table in (t_stats_avg, t_user_activity, t_stats_access_pattern)
    )


def stored_sites(conn: Connection) -> set[str] | None:
    """The sites the database already knows (T_SITE, and every site of the loaded topology);
    None before the first topology load."""
    if not has_topology(conn):
        return None
    statements = [select(t_site.c.site), select(t_site_country.c.site)]
    statements += [select(t.c.site) for t in (t_topology, t_domain_site, t_site_vo_name)]
    return {site for statement in statements for site in conn.execute(statement).scalars()}


@dataclass(frozen=True)
class ResolutionChange:
    """A cached (host, domain) pair, or a SERVER_SITE alias, that a new topology resolves to
    another site."""

    what: str  # the raw host, or the SERVER_SITE name
    domain: str  # the normalised domain ('' for an alias)
    old_site: str
    new_site: str


def resolution_changes(conn: Connection, topology: Topology) -> list[ResolutionChange]:
    """What loading `topology` would change in the sites of the cached hosts and of the
    SERVER_SITE aliases (a name a map lacks is kept as written, SPEC §3 rule 1); nothing is
    written. One pass over the cache: thousands of distinct pairs, not raw rows."""
    resolver = topology.resolver()
    changes = []
    for row in conn.execute(select(t_host_site)):
        new = resolver.resolve(row.host_key, row.domain_key).site
        if new != row.site:
            shown = "-" if row.host_key == NULL_KEY else row.host_key
            changes.append(ResolutionChange(shown, row.domain_name, row.site, new))
    old_aliases = {r.alias: r.site for r in conn.execute(select(t_site_alias))}
    new_aliases = topology.aliases()
    for alias in sorted(set(old_aliases) | set(new_aliases)):
        old, new = old_aliases.get(alias, alias), new_aliases.get(alias, alias)
        if old != new:
            changes.append(ResolutionChange(alias, "", old, new))
    return changes


def update_changed_resolutions(conn: Connection, resolver: Resolver) -> int:
    """Resolve the cached pairs again and rewrite those whose site changes; returns how many.
    Only for a database without statistics (`topology load`): with statistics, a change must go
    through `topology apply`, which rebuilds what the old sites fed."""
    changed = []
    for row in conn.execute(select(t_host_site)).all():
        r = resolver.resolve(row.host_key, row.domain_key)
        if (r.site, r.rule, r.ref) != (row.site, row.rule_kind, row.rule_ref):
            changed.append((row.host_key, row.domain_key, r))
    rewrite_resolutions(conn, changed, conn.execute(select(db_now())).scalar_one())
    return len(changed)


def rewrite_resolutions(
    conn: Connection, changed: Sequence[tuple[str, str, Resolution]], resolved_at: datetime
) -> None:
    """Store the new resolution (site, rule, reference) of each cached (host, domain) pair."""
    update_each(
        conn,
        t_host_site,
        ("domain_key", "host_key"),  # a domain's pairs with the same new values: one UPDATE
        [
            {
                "host_key": h,
                "domain_key": d,
                "site": r.site,
                "rule_kind": r.rule,
                "rule_ref": r.ref,
                "resolved_at": resolved_at,
            }
            for h, d, r in changed
        ],
    )


def pair_sides(raw: Any) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """The (host, domain) columns of a raw table's two sides: client, then server."""
    return (raw.c.client_host, raw.c.client_domain), (raw.c.server_host, raw.c.server_domain)


def raw_pair_key(host: Any, domain: Any) -> tuple[ColumnElement[str], ColumnElement[str]]:
    """The T_HOST_SITE key of a raw (host, domain): the raw values, NULL spelled NULL_KEY."""
    return func.coalesce(host, NULL_KEY), func.coalesce(domain, NULL_KEY)


def matches_pair(cache: Any, host: Any, domain: Any) -> ColumnElement[bool]:
    """Join condition of a raw row's side to its cached resolution."""
    host_key, domain_key = raw_pair_key(host, domain)
    return and_(cache.c.host_key == host_key, cache.c.domain_key == domain_key)


# Raw rows a window may have per cached pair and still resolve its pairs by index lookups in the
# cache rather than by hashing the whole cache (`dialect.joining_by_index_lookups`): a 20k-row batch
# against 112k cached pairs (0.18) gained, a first catch-up of 1M rows against them would not.
LOOKUP_ROWS_PER_CACHED_PAIR = 0.25


def few_rows_for_cache(conn: Connection, raw_rows: int) -> bool:
    """Whether `raw_rows` raw rows are few against the resolution cache: their pairs are best
    looked up in the cache's index, one by one (False where the database gives no estimate
    of the cache's size)."""
    cached = estimated_rows(conn, t_host_site)
    return cached is not None and raw_rows <= cached * LOOKUP_ROWS_PER_CACHED_PAIR


def has_cached_pairs(conn: Connection) -> bool:
    """Whether the resolution cache holds any pair: one row read, where a count would read a
    cache that grows with every host ever seen (49 ms of a topology apply at 112k pairs)."""
    return conn.execute(select(t_host_site.c.host_key).limit(1)).first() is not None


def uncached_pairs(
    where: dict[str, ColumnElement[bool]], narrow: int | None = None, *, wide_only: bool = False
) -> Select[Any]:
    """Distinct (host_key, domain_key) of both sides of the raw rows selected by `where` that
    the resolution cache does not hold yet. `where` maps a source ('fed', 'eos') to the
    condition on its raw table.

    The distinct pairs first, then each probed in the cache: anti-joining the rows first made
    PostgreSQL hash the whole cache for every row (measured 0.46 s of a 20k-row batch for a
    112k-pair cache). It may still hash the cache to probe the distinct pairs: an incremental
    window of few rows runs this with hash joins and scans off
    (`dialect.joining_by_index_lookups`; with 1.1M cached pairs, a 20k-row batch's pairs
    0.39-0.43 s hashed against 0.03-0.06 s probed).

    With `narrow` (`dialect.narrow_distinct_chars`), only the pairs whose two keys have at most
    `narrow` bytes each are found, their keys declared that narrow (`dialect.narrow_text`), and
    a third column `wide` is 1 for one row standing for every longer pair the cache lacks (its
    keys empty), 0 otherwise; with `wide_only` as well, only the longer pairs, at their full
    width.
    """
    if wide_only and narrow is None:
        raise ValueError("wide_only needs the narrow width it is wider than")
    # Each raw row read once and paired with each of its two sides, distinct per source before
    # the union: a scan of the raw table per side, all pairs deduplicated together, cost more
    # (the pairs of 1M raw rows: PostgreSQL 2.2 -> 0.7 s with the cache full, 1.0 -> 0.8 s with
    # it empty, and MariaDB, whose buffer pool does not hold the table, 6.8 -> 5.5 s; SQLite,
    # which reads it from its page cache, pays the CASEs: 1.33 -> 1.48 s).
    sides = union_all(select(literal(0).label("side")), select(literal(1).label("side")))
    side = sides.subquery("side")
    parts = []
    for source, condition in where.items():
        raw = RAW_TABLES[source]
        (client_host, client_domain), (server_host, server_domain) = pair_sides(raw)
        host = case((side.c.side == 0, client_host), else_=server_host)
        domain = case((side.c.side == 0, client_domain), else_=server_domain)
        host_key, domain_key = raw_pair_key(host, domain)
        columns: list[ColumnElement[Any]] = [
            host_key.label("host_key"),
            domain_key.label("domain_key"),
        ]
        if narrow is not None:
            # Bytes (MySQL's LENGTH), not characters: no text is scanned to count them, and a
            # key of at most `narrow` bytes has at most as many characters.
            wide = or_(func.length(host_key) > narrow, func.length(domain_key) > narrow)
            if wide_only:
                condition = and_(condition, wide)
            else:
                # A longer pair the cache holds raises no flag (probed at its full width, only
                # for such rows): a host that keeps coming back with a long name would otherwise
                # cost every later run the second statement.
                cached_wide = exists().where(matches_pair(t_host_site, host, domain))
                condition = and_(condition, or_(~wide, ~cached_wide))
                columns = [
                    case((wide, ""), else_=narrow_text(host_key, narrow)).label("host_key"),
                    case((wide, ""), else_=narrow_text(domain_key, narrow)).label("domain_key"),
                    case((wide, 1), else_=0).label("wide"),
                ]
        parts.append(
            select(*columns).select_from(raw.join(side, literal(True))).where(condition).distinct()
        )
    pairs = union(*parts).subquery("pairs")
    cached = exists().where(
        t_host_site.c.host_key == pairs.c.host_key,
        t_host_site.c.domain_key == pairs.c.domain_key,
    )
    if narrow is not None and not wide_only:
        return select(pairs.c.host_key, pairs.c.domain_key, pairs.c.wide).where(
            or_(pairs.c.wide == 1, ~cached)
        )
    return select(pairs.c.host_key, pairs.c.domain_key).where(~cached)


def _missing_pairs(
    conn: Connection, where: dict[str, ColumnElement[bool]]
) -> list[tuple[str, str]]:
    """The raw (host, domain) keys of the rows selected by `where` the cache lacks
    (`uncached_pairs`). Where keys are best found narrow first (MySQL/MariaDB), the longer
    ones cost a second read of the rows, only if there are any: on MariaDB the pairs of a
    1M-row catch-up took 7.3 s at full width and 3.9 s narrow, and a single statement reading
    the rows twice (narrow, then wide) 4.1 s in the client where the narrow read took 2.8 s.
    """
    narrow = narrow_distinct_chars(conn.dialect.name)
    if narrow is None:
        return [(h, d) for h, d in conn.execute(uncached_pairs(where)).all()]
    rows = conn.execute(uncached_pairs(where, narrow)).all()
    pairs = [(h, d) for h, d, wide in rows if not wide]
    if len(pairs) < len(rows):
        wide_pairs = conn.execute(uncached_pairs(where, narrow, wide_only=True)).all()
        pairs += [(h, d) for h, d in wide_pairs]
    return pairs


def fill_resolution_cache(
    conn: Connection, resolver: Resolver, where: dict[str, ColumnElement[bool]]
) -> int:
    """Resolve and cache every raw (host, domain) pair of the selected rows not cached yet;
    returns how many were added."""
    rows = _missing_pairs(conn, where)
    if not rows:
        return 0
    now = conn.execute(select(db_now())).scalar_one()
    values = []
    for host_key, domain_key in rows:
        r = resolver.resolve(host_key, domain_key)
        values.append(
            {
                "host_key": host_key,
                "domain_key": domain_key,
                "fqdn": (r.fqdn or "")[:2048] or NULL_KEY,
                "domain_name": r.domain,
                "site": r.site,
                "rule_kind": r.rule,
                "rule_ref": r.ref,
                "resolved_at": now,
            }
        )
    insert_ignoring_duplicates(conn, t_host_site, values)
    # The statements that follow join raw rows to the cache: let the planner see its new size.
    analyze_table(conn, t_host_site, len(values))
    return len(values)
