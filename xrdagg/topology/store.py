"""Topology in the database: loading a directory, reading it back, and the resolution cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    select,
    union,
    update,
)

from xrdagg.db.dialect import InsertIgnoringDuplicates, analyze_table, db_now
from xrdagg.db.tables import (
    RAW_TABLES,
    t_domain_site,
    t_host_site,
    t_site,
    t_site_alias,
    t_site_country,
    t_site_vo_name,
    t_topology,
    t_topology_load,
)
from xrdagg.errors import TopologyError
from xrdagg.rules import NULL_KEY
from xrdagg.topology.files import Topology
from xrdagg.topology.resolver import Pattern, Resolver

_TOPOLOGY_TABLES = (t_topology, t_domain_site, t_site_country, t_site_vo_name, t_site_alias)


@dataclass(frozen=True)
class LoadSummary:
    """What a topology load wrote."""

    load_id: int
    patterns: int
    domains: int
    countries: int
    vo_names: int
    cached_pairs: int  # resolutions made under an earlier topology


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
    cached = conn.execute(select(func.count()).select_from(t_host_site)).scalar_one()
    return LoadSummary(
        load_id=load_id,
        patterns=len(topology.patterns),
        domains=len(topology.domain_map),
        countries=len(topology.countries),
        vo_names=len(topology.vo_sites),
        cached_pairs=cached,
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


def uncached_pairs(where: dict[str, ColumnElement[bool]]) -> CompoundSelect:
    """Distinct (host_key, domain_key) of both sides of the raw rows selected by `where` that
    the resolution cache does not hold yet. `where` maps a source ('fed', 'eos') to the
    condition on its raw table.

    Each side is anti-joined to the cache before the distinct: once the cache is warm almost
    every row drops out there, and the distinct sees only the few new pairs.
    """
    parts = []
    for source, condition in where.items():
        raw = RAW_TABLES[source]
        for host, domain in pair_sides(raw):
            host_key, domain_key = raw_pair_key(host, domain)
            parts.append(
                select(host_key.label("host_key"), domain_key.label("domain_key"))
                .where(condition, ~exists().where(matches_pair(t_host_site, host, domain)))
                .distinct()  # each side's few distinct pairs, before the union compares sides
            )
    return union(*parts)


def fill_resolution_cache(
    conn: Connection, resolver: Resolver, where: dict[str, ColumnElement[bool]]
) -> int:
    """Resolve and cache every raw (host, domain) pair of the selected rows not cached yet;
    returns how many were added."""
    missing = uncached_pairs(where)
    rows = conn.execute(missing).all()
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
    conn.execute(InsertIgnoringDuplicates(t_host_site), values)
    # The statements that follow join raw rows to the cache: let the planner see its new size.
    analyze_table(conn, t_host_site)
    return len(values)
