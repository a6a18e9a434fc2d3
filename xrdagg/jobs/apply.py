"""`xrdagg topology apply`: a new topology, and only the statistics it changes, rebuilt.

In one transaction, with the 10-minute jobs paused:
1. load the new topology and re-resolve the cached (host, domain) pairs it can change (all of
   them when a pattern changed, else those under a changed domain-map entry);
2. put in T_TOPOLOGY_DELTA the (domain, site) keys a changed host leaves or joins, and the sites
   whose SERVER_SITE aliases changed;
3. find the days that hold statistics of those keys, and delete those rows (T_STATS_AVG by
   domain and site; T_USER_ACTIVITY and T_STATS_ACCESS_PATTERN, which have no domain, by site);
4. for each run of consecutive such days, stage the raw rows under each job's watermark that
   end in it, in the 10-minute bins where rows of the affected keys (FED: of the delta sites)
   end, read from the statistics in step 3 before the deletes, and can feed an affected key (a
   prefilter on the affected pairs and names), and insert their contributions to the affected
   keys in that run's bins. Where a day's staged rows are not as many as the statistics
   counted there before the deletes, it stops and changes nothing (`RebuildRefusedError`):
   fewer, and raw rows are gone (purged by the collectors); more, and T_STATS_AVG was trimmed
   where the site tables were kept, so the daily rows summed from it would come out short.
   `from_day` rebuilds the days from it on only;
5. roll up the daily rows of those keys on those days (and merge T_SITE for the delta sites):
   every other daily row keeps its value, as the 10-minute rows it sums stay or are rebuilt
   with the same sums on its side. The daily job, which rolls whole days up, is held off
   meanwhile (`_hold_off_daily_jobs`).
The key set is closed: a row whose key changes has its old and its new key in it, and an
unchanged row keeps its key, so every deleted row is rebuilt from exactly the rows that feed it.
A changed row is active only in bins its old key has rows in, so the days of step 3 hold all the
work, and the rows to read end in the bins of step 4, and the daily rows to roll up are the
affected keys' on those days: the cost follows the bins the change touches, not the length of
history.
T_MSG_RATE is keyed by domain only: a topology change never touches it.
`--dry-run` does all of it, reports, and rolls back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Executable,
    FromClause,
    Integer,
    Select,
    String,
    Subquery,
    and_,
    bindparam,
    delete,
    exc,
    func,
    insert,
    or_,
    select,
    tuple_,
)

from xrdagg.db.dialect import (
    day_start,
    db_now,
    floor_to,
    is_lock_busy,
    prefers_scan,
    sqlite_shortcut,
    tune_for_aggregation,
    unindexed,
)
from xrdagg.db.tables import (
    t_domain_site,
    t_host_site,
    t_site_alias,
    t_stats_access_pattern,
    t_stats_avg,
    t_topology,
    t_topology_delta,
    t_user_activity,
)
from xrdagg.db.types import UtcDate
from xrdagg.errors import JobBusyError, RebuildRefusedError
from xrdagg.jobs import contributions, daily
from xrdagg.jobs.agent import ensure_agents, hold_agent
from xrdagg.jobs.agent import watermarks as read_watermarks
from xrdagg.jobs.daily import contiguous_ranges, day_ranges
from xrdagg.jobs.pause import DEFAULT_LEASE_SECONDS, PauseLease
from xrdagg.jobs.rollup_keys import KeyFilter
from xrdagg.jobs.specs import JobSpec
from xrdagg.jobs.stage import (
    end_date_span,
    release_stage,
    share_of_span,
    stage_resolved,
    t_stage_group,
)
from xrdagg.rules import (
    ANY_DOMAIN,
    BIN_SECONDS,
    DAY_SECONDS,
    NULL_KEY,
    at_epoch_seconds,
    midnight,
    seconds_since_epoch,
)
from xrdagg.sources import SOURCES, Source
from xrdagg.topology.files import Topology
from xrdagg.topology.resolver import Resolution, parent_domains
from xrdagg.topology.store import load_topology, pair_sides, raw_pair_key, rewrite_resolutions

# Changed domain-map entries up to this many select the cached pairs to resolve again in the
# database; more, and every cached pair is read and tested here.
PREFILTER_MAX_DOMAINS = 64
# The raw-row filter of a rebuild names the affected domains, sites and SERVER_SITE aliases as
# lists of values when each has at most this many (Oracle takes 1,000 expressions in an IN list);
# more, and it reads them from subqueries.
PREFILTER_MAX_VALUES = 1000
# A rebuild reads the raw rows that end in the 10-minute bins where rows of the affected keys end;
# a run of days reads them as at most this many END_DATE ranges (bind slots of one statement),
# the ranges closest to each other joined first.
MAX_READ_RANGES = 16

WATERMARK = bindparam("watermark", type_=UtcDate())
RUN_LO = bindparam("run_lo", type_=UtcDate())
RUN_HI = bindparam("run_hi", type_=UtcDate())
READ_RANGES = tuple(
    (bindparam(f"read_lo_{i}", type_=UtcDate()), bindparam(f"read_hi_{i}", type_=UtcDate()))
    for i in range(MAX_READ_RANGES)
)
REBUILD_FROM = bindparam("rebuild_from", type_=UtcDate())
EVERY_DAY = datetime(1970, 1, 1)  # REBUILD_FROM when every day is rebuilt
RUN_LO_S = bindparam("run_lo_s", type_=Integer())
RUN_HI_S = bindparam("run_hi_s", type_=Integer())
AFFECTED_DOMAINS = bindparam("affected_domains", expanding=True, type_=String())
DELTA_SITES = bindparam("delta_sites", expanding=True, type_=String())
DELTA_NAMES = bindparam("delta_names", expanding=True, type_=String())


@dataclass(frozen=True)
class PairChange:
    """A cached (host, domain) pair whose site the new topology changes."""

    host_key: str
    domain_key: str
    domain: str
    old_site: str
    new_site: str
    raw_rows: int | None = None  # counted by a dry run only: it costs a pass over the days

    @property
    def host_shown(self) -> str:
        """The raw host as an operator reads it ('-' where the record had none)."""
        return "-" if self.host_key == NULL_KEY else self.host_key


@dataclass
class ApplyReport:
    """What a topology apply changed, and what it cost."""

    changes: list[PairChange] = field(default_factory=list)
    alias_changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    pairs_checked: int = 0  # cached pairs resolved again
    stats_rows_deleted: int = 0
    stats_rows_written: int = 0
    raw_rows_read: int = 0  # raw rows staged (prefiltered) for the rebuild
    days: list[datetime] = field(default_factory=list)
    daily_rows_written: int = 0  # the affected keys' daily rows, rolled up again
    from_day: datetime | None = None  # days before it were left as they were


# --- which keys -----------------------------------------------------------------------------------


def _delta_hit(domain: Any, site: Any) -> ColumnElement[bool]:
    """The key (domain, site) is one a changed host leaves or joins. Uncorrelated INs: the
    database reads the few delta rows once (SQLite ran a correlated EXISTS per statistics row)."""
    d = t_topology_delta
    return or_(
        tuple_(domain, site).in_(select(d.c.domain_name, d.c.site)),
        site.in_(select(d.c.site).where(d.c.domain_name == ANY_DOMAIN)),
    )


def _delta_sites(as_values: bool) -> Any:
    """The delta sites: the list of values DELTA_SITES (`_Affected`), or read from
    T_TOPOLOGY_DELTA."""
    return DELTA_SITES if as_values else select(t_topology_delta.c.site)


def _site_hit(site: Any, sites: Any = None) -> ColumnElement[bool]:
    """`site` is a delta site (one of `sites`; else read from T_TOPOLOGY_DELTA)."""
    return site.in_(_delta_sites(as_values=False) if sites is None else sites)


def _avg_hit(row: Any, sites: Any = None) -> ColumnElement[bool]:
    """T_STATS_AVG keys: a (domain, site) of either side. With `sites` (the delta sites, as
    values or a subquery) each side first tests its site alone: every affected key's site is a
    delta site, so the test keeps the same rows, and it lets the database find them through the
    site indexes (ix_stats_avg_src, ix_stats_avg_dst) instead of reading the whole table."""
    if sites is None:
        return or_(
            _delta_hit(row.src_domain, row.src_site), _delta_hit(row.dst_domain, row.dst_site)
        )
    return or_(
        and_(_site_hit(row.src_site, sites), _delta_hit(row.src_domain, row.src_site)),
        and_(_site_hit(row.dst_site, sites), _delta_hit(row.dst_domain, row.dst_site)),
    )


def _sites_hit(row: Any, sites: Any = None) -> ColumnElement[bool]:
    """Keys without a domain (user activity, access pattern): a site of either side (a delta
    site: `sites`, else read from T_TOPOLOGY_DELTA)."""
    return or_(_site_hit(row.src_site, sites), _site_hit(row.dst_site, sites))


_TABLES = (
    (t_stats_avg, _avg_hit),
    (t_user_activity, _sites_hit),
    (t_stats_access_pattern, _sites_hit),
)


@cache
def _clearing_statements(as_values: bool) -> tuple[_Clearing, ...]:
    """Per statistics table: where it holds rows of the affected keys, and their DELETE. With
    `as_values` the delta sites are the list of values DELTA_SITES (`_Affected`), which the
    database can look up in a site index before it reads a row: on 1M raw rows, PostgreSQL found
    the days of T_STATS_AVG in 2 ms instead of a 137 ms scan of its 181k rows."""
    sites = _delta_sites(as_values)
    statements = []
    for table, hit in _TABLES:
        condition = and_(table.c.bin_start >= REBUILD_FROM, hit(table.c, sites))
        keyed_by_end = table is not t_stats_avg
        # The site tables are keyed by the end bin: their bins are end bins of the rows to read
        # (`_ends_statement`), found by the same read (T_USER_ACTIVITY has no site index:
        # on the worst mix a second scan of it took 0.11 s of a 1.9 s apply, PostgreSQL).
        found = table.c.bin_start if keyed_by_end else day_start(table.c.bin_start)
        statements.append(
            _Clearing(
                select(found).where(condition).distinct(),
                delete(table).where(condition),
                keyed_by_end,
            )
        )
    return tuple(statements)


@dataclass(frozen=True)
class _Clearing:
    """One table's part of step 3: where its affected rows are (the days holding them, or, for
    a table keyed by the end bin, their bins), and their DELETE."""

    find: Select[Any]
    delete: Executable
    keyed_by_end: bool


@cache
def _rollup_statements(as_values: bool) -> tuple[Any, ...]:
    """The daily roll-up of the affected keys only: the rows of a delta site (on either side),
    and the unresolved rows of an affected (domain, 'unknown') key. With `as_values` the delta
    sites are the list of values DELTA_SITES, which the site indexes of T_STATS_AVG look up.
    An unresolved row's site is tested first, as `_avg_hit` does: unless 'unknown' is a delta
    site none passes, and MariaDB tested the (domain, site) pair of every unresolved row of the
    days against T_TOPOLOGY_DELTA (the benchmark's one-domain apply: 0.53 s for nothing)."""
    sites = _delta_sites(as_values)

    def unresolved(domain: Any, site: Any) -> ColumnElement[bool]:
        return and_(_site_hit(site, sites), _delta_hit(domain, site))

    return tuple(
        daily.statements(KeyFilter(site=lambda site: _site_hit(site, sites), unresolved=unresolved))
    )


@cache
def _ends_statement(source: Source, as_values: bool) -> Select[Any]:
    """From REBUILD_FROM on, the 10-minute bins in which the raw rows of `source` that the apply
    must read end, and how many end in each, as T_STATS_AVG counts them (TRANSFERS_ENDED), read
    before the deletes. The bins are where the rebuild reads (`_read_ranges`); the counts, summed
    by day, what it must find there (`RebuildRefusedError` when it finds another number).

    Each table names the end bins of the rows it deletes, so that none depends on another's
    being kept (housekeeping's `retention_days`, or a dropped partition, trims them
    separately): here T_STATS_AVG's; with users, the bins of T_USER_ACTIVITY and
    T_STATS_ACCESS_PATTERN (keyed by the end bin) with a delta site on one side are the ones
    their own clearing finds (`_clearing_statements`). With users T_STATS_AVG is asked by site
    as well: where those two were trimmed its bins stand in, and the rows of a delta site
    re-created there must be all of that site's, of every domain, as its daily rows sum them."""
    avg = t_stats_avg.c
    return (
        select(avg.bin_start, func.sum(avg.transfers_ended))
        .where(
            avg.source == source.label,
            avg.bin_start >= REBUILD_FROM,
            avg.transfers_ended > 0,
            _read_hit(source, avg, _delta_sites(as_values)),
        )
        .group_by(avg.bin_start)
    )


def _read_hit(source: Source, row: Any, sites: Any = None) -> ColumnElement[bool]:
    """The rows of `source` a rebuild must read all of, as T_STATS_AVG (or a staged group) holds
    them: with users, those of a delta site on either side (the site tables delete by site);
    else those of an affected (domain, site) key. Either set is the same raw rows under the old
    topology and the new: a side whose site changes has its old and its new site (key) in the
    delta, and an unchanged side keeps its own."""
    return _sites_hit(row, sites) if source.has_users else _avg_hit(row, sites)


@dataclass(frozen=True)
class _Affected:
    """What the raw-row filter of a rebuild looks for: the domains of the cached pairs whose site
    is a delta site, the delta sites, and the SERVER_SITE aliases of those sites."""

    domains: tuple[str, ...]
    sites: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def as_values(self) -> bool:
        """Whether the filter names them as lists of values (else it reads subqueries)."""
        return max(len(self.domains), len(self.sites), len(self.names)) <= PREFILTER_MAX_VALUES

    def params(self) -> dict[str, Any]:
        if not self.as_values:
            return {}
        return {
            "affected_domains": list(self.domains),
            "delta_sites": list(self.sites),
            "delta_names": list(self.names),
        }


def _affected_domains(sites: Any = None) -> Select[Any]:
    """The domains of the cached pairs whose site is a delta site (one of `sites`, which the
    cache's site index looks up; else read from T_TOPOLOGY_DELTA)."""
    return select(t_host_site.c.domain_key).where(_site_hit(t_host_site.c.site, sites))


def _delta_names() -> Select[Any]:
    """The SERVER_SITE aliases of the delta sites."""
    return select(t_site_alias.c.alias).where(_site_hit(t_site_alias.c.site))


def _affected(conn: Connection, delta_sites: set[str]) -> _Affected:
    """The values the raw-row filter looks for, read once per apply (after the cache rewrite),
    for the delta sites the apply has just written to T_TOPOLOGY_DELTA."""
    sites = tuple(sorted(delta_sites))
    by_value = len(sites) <= PREFILTER_MAX_VALUES
    domains = conn.execute(
        _affected_domains(_delta_sites(by_value)).distinct(),
        {"delta_sites": list(sites)} if by_value else {},
    ).scalars()
    return _Affected(
        domains=tuple(sorted(domains)),
        sites=sites,
        names=tuple(sorted(conn.execute(_delta_names()).scalars())),
    )


def _raw_prefilter(raw: Any, as_values: bool) -> ColumnElement[bool]:
    """Raw rows that can feed an affected key: a side's cached site, or the SERVER_SITE name (as
    aliased, or as written), is a delta site. A superset of the rows the exact key filters keep,
    decided before the rows are normalised.

    Every raw row of the days is tested, so the cheap tests go first: a side's domain among the
    affected pairs' domains (one short key) rules out almost every row, and only the rest probe
    the (host, domain) pairs; a row without SERVER_SITE skips the name tests. With `as_values`
    the domains, sites and aliases are lists of values (`_Affected`), which every database tests
    in memory: MariaDB ran each IN (subquery) as a dependent subquery per raw row (1M rows and a
    1.4 % domain: the apply's staging 16-17 s). Without, they are uncorrelated IN (subquery),
    which the database hashes once, and the shortcuts are taken on SQLite only
    (`sqlite_shortcut`: MariaDB ran a domain subquery per row, PostgreSQL gained nothing)."""
    domains: Any
    sites: Any
    names: Any
    if as_values:
        domains, sites, names = AFFECTED_DOMAINS, DELTA_SITES, DELTA_NAMES
        cheap_first: Callable[[Any, Any], ColumnElement[bool]] = and_
    else:
        domains, sites, names = _affected_domains(), select(t_topology_delta.c.site), _delta_names()
        cheap_first = sqlite_shortcut
    # The affected pairs, by the delta sites: as values, the cache's site index finds them (1M
    # raw rows, PostgreSQL: each parallel worker hashed them from a 112k-row scan, 35 ms each).
    pairs = select(t_host_site.c.host_key, t_host_site.c.domain_key).where(
        _site_hit(t_host_site.c.site, sites)
    )

    def side(host: Any, domain: Any) -> ColumnElement[bool]:
        host_key, domain_key = raw_pair_key(host, domain)
        return cheap_first(domain_key.in_(domains), tuple_(host_key, domain_key).in_(pairs))

    named = func.trim(raw.c.server_site)
    return or_(
        side(raw.c.client_host, raw.c.client_domain),
        side(raw.c.server_host, raw.c.server_domain),
        cheap_first(
            raw.c.server_site.is_not(None),
            or_(named.in_(sites), func.upper(named).in_(names)),
        ),
    )


# --- the rebuild of one run of days ---------------------------------------------------------------


@dataclass(frozen=True)
class _RunStatements:
    stage_condition: ColumnElement[bool]
    inserts: tuple[Executable, ...]
    # Per day (epoch seconds), the staged rows that `_ends_statement` counts.
    ending_by_day: Select[Any]


@cache
def _run_statements(source: Source, as_values: bool, by_scan: bool) -> _RunStatements:
    """Statements rebuilding the affected keys in bins [run_lo, run_hi) of `source`. They read
    the raw rows ending in the READ_RANGES, or, `by_scan`, every row ending in the run, where
    a scan of the raw table is cheaper than reading the ranges through an index
    (`dialect.prefers_scan`)."""
    raw = source.raw
    # A row that feeds an affected key has statistics rows of that key in every bin it is active
    # in, so all those days are in the set, and a run of consecutive days holds the whole of
    # such a row: the rows ending in the run are all there is to read (no 7-day reach, unlike a
    # recompute chunk), and of those only the ones ending in the bins where such rows end
    # (`_read_ranges`). The contributions are still clipped to the run's bins below.
    if by_scan:
        end_date = unindexed(raw.c.end_date)
        rows_ending = and_(
            unindexed(raw.c.insert_date) <= WATERMARK, end_date >= RUN_LO, end_date < RUN_HI
        )
    else:
        rows_ending = and_(
            raw.c.insert_date <= WATERMARK,
            or_(*(and_(raw.c.end_date >= lo, raw.c.end_date < hi) for lo, hi in READ_RANGES)),
        )
    staged = t_stage_group
    avg_rows = _where(staged, _avg_hit(staged.c))
    merges = [contributions.stats_avg(avg_rows, source, (RUN_LO_S, RUN_HI_S))]
    if source.has_users:
        ending = and_(staged.c.end_bin >= RUN_LO_S, staged.c.end_bin < RUN_HI_S)
        site_rows = _where(staged, and_(ending, _sites_hit(staged.c)))
        merges += [contributions.user_activity(site_rows), contributions.access_pattern(site_rows)]
    # The rows `_ends_statement` counts, by end day: grouped by a column of a subquery,
    # not by the expression, which Oracle may refuse with bind parameters in it (ORA-00979
    # under cursor sharing).
    counted = (
        select(floor_to(staged.c.end_bin, DAY_SECONDS).label("end_day"), staged.c.n_rows)
        .where(
            staged.c.end_bin >= RUN_LO_S,
            staged.c.end_bin < RUN_HI_S,
            _read_hit(source, staged.c),
        )
        .subquery("counted")
    )
    # Every key these rows go to was deleted in these bins: plain INSERTs, nothing can collide.
    # The filter before the dates: SQLite reads a row's columns in order, and the domains come
    # before the dates in the raw row (an apply on 1M rows: -14 % of its instructions).
    return _RunStatements(
        stage_condition=and_(_raw_prefilter(raw, as_values), rows_ending),
        inserts=tuple(m.as_insert() for m in merges),
        ending_by_day=select(counted.c.end_day, func.sum(counted.c.n_rows)).group_by(
            counted.c.end_day
        ),
    )


def _where(rows: FromClause, condition: ColumnElement[bool]) -> Subquery:
    return select(rows).where(condition).subquery("hit")


def _read_ranges(
    end_bins: Sequence[datetime], lo: datetime, hi: datetime
) -> list[tuple[datetime, datetime]]:
    """[start, end) END_DATE ranges covering the bins of `end_bins` within [lo, hi), at most
    MAX_READ_RANGES: consecutive bins joined, then the ranges across the smallest gaps."""
    in_run = (b for b in end_bins if lo <= b < hi)
    ranges = contiguous_ranges(in_run, timedelta(seconds=BIN_SECONDS))
    if len(ranges) > MAX_READ_RANGES:
        gaps = range(len(ranges) - 1)  # gap k lies between ranges k and k + 1
        widest = sorted(gaps, key=lambda k: ranges[k + 1][0] - ranges[k][1], reverse=True)
        kept = sorted(widest[: MAX_READ_RANGES - 1])
        joined, first = [], 0
        for k in [*kept, len(ranges) - 1]:
            joined.append((ranges[first][0], ranges[k][1]))
            first = k + 1
        ranges = joined
    return ranges


def _range_params(
    ranges: Sequence[tuple[datetime, datetime]], empty_at: datetime
) -> dict[str, datetime]:
    """The values of the READ_RANGES slots: `ranges`, then empty ranges for the slots left."""
    assert len(ranges) <= len(READ_RANGES), "more ranges than the statement has slots"
    params = {}
    for i, (lo_slot, hi_slot) in enumerate(READ_RANGES):
        lo, hi = ranges[i] if i < len(ranges) else (empty_at, empty_at)
        params[lo_slot.key], params[hi_slot.key] = lo, hi
    return params


def _rebuild_run(
    conn: Connection,
    source: Source,
    lo: datetime,
    hi: datetime,
    watermark: datetime,
    affected: _Affected,
    ranges: Sequence[tuple[datetime, datetime]],
    by_scan: bool,
) -> _RunResult:
    """Rebuild the affected keys of `source` in bins [lo, hi) from the raw rows ending in the
    END_DATE `ranges` (`by_scan`: ending in the run, read by a scan)."""
    if not ranges:
        return _RunResult()  # no row of an affected key ends here: nothing to insert
    statements = _run_statements(source, affected.as_values, by_scan)
    params = {
        **affected.params(),
        **_range_params(ranges, lo),
        "run_lo": lo,
        "run_hi": hi,
        "run_lo_s": seconds_since_epoch(lo),
        "run_hi_s": seconds_since_epoch(hi),
        "watermark": watermark,
    }
    staged = stage_resolved(conn, source, statements.stage_condition, params, new_data=False)
    result = _RunResult(staged=staged.rows)
    if staged.rows:
        for day_s, rows in conn.execute(statements.ending_by_day, params):
            result.ending[at_epoch_seconds(int(day_s))] = int(rows)
        for statement in statements.inserts:
            result.written += max(conn.execute(statement, params).rowcount, 0)
    release_stage(conn)
    return result


@dataclass
class _RunResult:
    staged: int = 0  # raw rows staged
    written: int = 0  # statistics rows written
    # Per day, the staged rows that `_ends_statement` counts.
    ending: dict[datetime, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Mismatch:
    """A day whose raw rows of `source` that a rebuild must read are not the ones the statistics
    count: fewer (`found` < `counted`: raw rows purged) or more (T_STATS_AVG trimmed)."""

    source: Source
    day: datetime
    counted: int
    found: int


def _runs_of_days(mismatches: Sequence[_Mismatch]) -> list[str]:
    """The mismatched days per raw table, as runs of consecutive days with their counts."""
    runs = []
    for source in sorted({m.source for m in mismatches}, key=lambda source: source.label):
        of_source = {m.day: m for m in mismatches if m.source == source}
        for lo, hi in day_ranges(of_source):
            days = [of_source[d] for d in of_source if lo <= d < hi]
            last = hi - timedelta(days=1)
            span = f"{lo:%Y-%m-%d}" + ("" if last == lo else f" to {last:%Y-%m-%d}")
            runs.append(
                f"{source.raw.name.upper()} {span}: the statistics count "
                f"{sum(d.counted for d in days)} raw rows of the affected sites ending there, "
                f"the raw table holds {sum(d.found for d in days)}"
            )
    return runs


def _refusal(mismatches: Sequence[_Mismatch]) -> RebuildRefusedError:
    """The error of an apply that would lose statistics: the days, in runs, what to do about
    them, and the day from which an apply can rebuild everything it deletes."""
    parts = []
    purged = [m for m in mismatches if m.found < m.counted]
    if purged:
        parts.append(
            "raw rows behind the statistics it would rebuild are gone (purged by the "
            f"collectors?): {'; '.join(_runs_of_days(purged))}. Restore them (a recompute or "
            "an audit repair of those days would lose their statistics)"
        )
    trimmed = [m for m in mismatches if m.found > m.counted]
    if trimmed:
        first, last = min(m.day for m in trimmed), max(m.day for m in trimmed)
        parts.append(
            "the raw table holds more rows than the statistics count (T_STATS_AVG trimmed by "
            "housekeeping or a dropped partition where other rows of those days were kept, or "
            "raw rows that arrived behind the watermark), and the daily rows summed from it "
            f"would be rebuilt short: {'; '.join(_runs_of_days(trimmed))}. Rebuild those days "
            f"from the raw rows first (`xrdagg recompute --from {first:%Y-%m-%d} --to "
            f"{last:%Y-%m-%d}`)"
        )
    resume = max(m.day for m in mismatches) + timedelta(days=1)
    return RebuildRefusedError(
        f"topology apply: {'. And '.join(parts)}; or apply from a later day with "
        f"`--from-day {resume:%Y-%m-%d}`, which leaves the statistics before it as they are "
        "(under the old topology). Rebuilding would lose statistics, so nothing was changed"
    )


# --- the whole apply ------------------------------------------------------------------------------


def apply_topology(
    engine: Engine,
    topology: Topology,
    source_dir: Path,
    jobs: Sequence[JobSpec],
    *,
    dry_run: bool = False,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    from_day: datetime | None = None,
) -> ApplyReport:
    """Load `topology` and rebuild the statistics it changes, in one transaction, with the
    10-minute jobs paused (not with `dry_run`, which rolls everything back); returns what
    changed and what it cost. A dry run also counts the raw rows behind each changed host, for
    the operator's review; the apply itself spends no pass on that.

    With `from_day` (a midnight) only the statistics of that day and later are rebuilt; those
    before keep the sites of the old topology. Where the raw rows behind statistics it would
    rebuild are gone, it raises `RebuildRefusedError` and changes nothing."""
    if from_day is not None and from_day != midnight(from_day):
        raise ValueError(f"from_day must be a midnight, not {from_day}")
    ten_minute = [j for j in jobs if j.source is not None]
    # Every day may hold affected keys: the pause covers all days (no range), so a recompute
    # and an apply never rebuild at once. A dry run rolls back: it pauses nothing, but holds the
    # daily job off for as long as it runs, as the apply does (`_hold_off_daily_jobs`).
    lease = PauseLease(
        engine,
        [j.name for j in ten_minute],
        "topology apply",
        reason=f"topology from {source_dir}",
        lease_seconds=lease_seconds,
    )
    if not dry_run:
        lease.acquire()
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                report = _apply(
                    conn,
                    topology,
                    source_dir,
                    ten_minute,
                    count_rows=dry_run,
                    daily_jobs=[j.name for j in jobs if j.kind == "daily"],
                    from_day=from_day,
                )
            except BaseException:
                transaction.rollback()
                raise
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
    finally:
        lease.release()
    return report


def _apply(
    conn: Connection,
    topology: Topology,
    source_dir: Path,
    jobs: Sequence[JobSpec],
    *,
    count_rows: bool,
    daily_jobs: Sequence[str],
    from_day: datetime | None = None,
) -> ApplyReport:
    report = ApplyReport(from_day=from_day)
    _hold_off_daily_jobs(conn, daily_jobs)
    tune_for_aggregation(conn)
    old_aliases = {r.alias: r.site for r in conn.execute(select(t_site_alias))}
    old_patterns = [
        tuple(r) for r in conn.execute(select(t_topology).order_by(t_topology.c.rule_id))
    ]
    old_domains = {r.from_value: r.site for r in conn.execute(select(t_domain_site))}
    load_topology(conn, topology, source_dir)
    new_aliases = topology.aliases()
    for alias in set(old_aliases) | set(new_aliases):
        if old_aliases.get(alias) != new_aliases.get(alias):
            report.alias_changes[alias] = (old_aliases.get(alias), new_aliases.get(alias))
    patterns_changed = old_patterns != [(p.rule_id, p.pattern, p.site) for p in topology.patterns]
    changed_domains = {
        key
        for key in set(old_domains) | set(topology.domain_map)
        if old_domains.get(key) != topology.domain_map.get(key)
    }
    now = conn.execute(select(db_now())).scalar_one()
    _resolve_again(conn, topology, report, now, None if patterns_changed else changed_domains)

    delta = {(c.domain, s) for c in report.changes for s in (c.old_site, c.new_site)}
    for alias, (old, new) in report.alias_changes.items():
        # A SERVER_SITE the map no longer (or newly) knows is kept as it is written.
        delta |= {(ANY_DOMAIN, old or alias), (ANY_DOMAIN, new or alias)}
    if report.alias_changes:
        # As written means in any case ('t2_ch_cern'), where the map looks names up in upper
        # case: each spelling of a changed alias in the raw rows is a site of its own.
        delta |= {(ANY_DOMAIN, name) for name in _spellings(conn, jobs, report.alias_changes)}
    conn.execute(delete(t_topology_delta))
    if not delta:
        return report
    conn.execute(
        insert(t_topology_delta), [{"domain_name": d, "site": s} for d, s in sorted(delta)]
    )
    affected = _affected(conn, {site for _, site in delta})
    values = {**affected.params(), "rebuild_from": from_day or EVERY_DAY}
    # Where rows of the affected keys end, per job, and how many end on each day, read before
    # their statistics are deleted.
    watermarks = read_watermarks(conn)
    rebuilt = [(job, w) for job in jobs if (w := watermarks.get(job.name)) is not None]
    end_bins: dict[str, list[datetime]] = {}
    ended_by_day: dict[str, dict[datetime, int]] = {}
    for job, _ in rebuilt:
        ends = conn.execute(_ends_statement(SOURCES[job.kind], affected.as_values), values).all()
        end_bins[job.name] = [end_bin for end_bin, _ in ends]
        by_day: defaultdict[datetime, int] = defaultdict(int)
        for end_bin, rows in ends:
            by_day[midnight(end_bin)] += int(rows)
        ended_by_day[job.name] = by_day
    # The days holding statistics of the affected keys, then those statistics, gone.
    days: set[datetime] = set()
    for clearing in _clearing_statements(affected.as_values):
        held = set(conn.execute(clearing.find, values).scalars())
        if clearing.keyed_by_end:  # end bins of the rows of FED, the one source with users
            for job, _ in rebuilt:
                if SOURCES[job.kind].has_users:
                    end_bins[job.name] += held
            held = {midnight(b) for b in held}
        days |= held
        report.stats_rows_deleted += conn.execute(clearing.delete, values).rowcount
    report.days = sorted(days)

    mismatches = []
    for job, watermark in rebuilt:
        source = SOURCES[job.kind]
        span = end_date_span(conn, source)
        for lo, hi in day_ranges(report.days):
            ranges = _read_ranges(end_bins[job.name], lo, hi)
            by_scan = prefers_scan(conn.dialect.name, share_of_span(span, ranges))
            run = _rebuild_run(conn, source, lo, hi, watermark, affected, ranges, by_scan)
            report.raw_rows_read += run.staged
            report.stats_rows_written += run.written
            # Fewer rows than the statistics counted: raw rows are gone (purged by the
            # collectors), and the statistics just deleted cannot be rebuilt. More: T_STATS_AVG
            # lacks rows the other tables kept (trimmed), and the daily rows summed from it
            # would be rolled up short. Either would lose statistics.
            counted_days = ended_by_day[job.name]
            for day in sorted({d for d in counted_days if lo <= d < hi} | set(run.ending)):
                counted, found = counted_days.get(day, 0), run.ending.get(day, 0)
                if found != counted:
                    mismatches.append(_Mismatch(source, day, counted, found))
    if mismatches:
        raise _refusal(mismatches)
    report.daily_rows_written = daily.rollup_days(
        conn, report.days, _rollup_statements(affected.as_values), values
    )
    if count_rows:
        _count_affected_rows(conn, report, now, jobs, watermarks)
    conn.execute(delete(t_topology_delta))
    return report


def _spellings(conn: Connection, jobs: Sequence[JobSpec], aliases: Iterable[str]) -> set[str]:
    """The SERVER_SITE values of the raw rows, as written (trimmed), that the map looks up as one
    of `aliases`: a scan of each raw table, only when an apply changes aliases (rarely)."""
    keys = sorted(aliases)
    names: set[str] = set()
    for source in {SOURCES[job.kind] for job in jobs}:
        names |= set(conn.execute(_spellings_statement(source), {"alias_keys": keys}).scalars())
    return names


@cache
def _spellings_statement(source: Source) -> Select[Any]:
    named = func.trim(source.raw.c.server_site)
    keys = bindparam("alias_keys", expanding=True, type_=String())
    return select(named).where(func.upper(named).in_(keys)).distinct()


def _hold_off_daily_jobs(conn: Connection, names: Sequence[str]) -> None:
    """Step 5's daily rows get one writer: the daily jobs' T_AGENT rows, held for this
    transaction before any other row (in name order, as `PauseLease` takes them). A daily run
    in flight finishes first; one that starts meanwhile finds its row busy and skips, or,
    waiting for it (`xrdagg recompute` runs the daily job so), fails to serialize once the
    apply has committed and starts again, rolling its days up from what the apply wrote (with a
    mere FOR UPDATE it went on with its earlier snapshot, and committed daily rows of the old
    topology: `hold_agent`)."""
    ensure_agents(conn, names)
    for name in sorted(names):
        try:
            hold_agent(conn, name)
        except exc.DBAPIError as error:
            if not is_lock_busy(error):
                raise
            raise JobBusyError(
                f"topology apply: a run of the {name} job held its lock longer than the "
                "database waits for it; nothing was changed. Run the apply again when it has "
                "finished (`xrdagg status` shows the runs)"
            ) from error


def _resolve_again(
    conn: Connection,
    topology: Topology,
    report: ApplyReport,
    now: datetime,
    changed_domains: set[str] | None,
) -> None:
    """Resolve the cached pairs again with `topology` and update those whose site changes.

    With `changed_domains` (the patterns are unchanged), only pairs whose FQDN lies under a
    changed domain-map entry can change: the others are not resolved again.
    """
    if changed_domains is not None and not changed_domains:
        return  # neither a pattern nor a domain-map entry changed: no pair can
    resolver = topology.resolver()
    changed: list[tuple[str, str, Resolution]] = []
    cache = t_host_site.c
    # Only the columns needed: the cache holds a pair per host ever seen (120k for 1M raw rows)
    # and converting each one's resolved_at took a third of a one-domain apply on SQLite.
    query = select(cache.host_key, cache.domain_key, cache.domain_name, cache.fqdn, cache.site)
    if changed_domains is not None and len(changed_domains) <= PREFILTER_MAX_DOMAINS:
        # A prefilter in the database (the FQDN is, or lies under, a changed entry); the exact
        # test below stays (LIKE ignores case on some databases: it only admits more rows).
        query = query.where(
            or_(
                *(
                    or_(cache.fqdn == domain, cache.fqdn.endswith("." + domain, autoescape=True))
                    for domain in sorted(changed_domains)
                )
            )
        )
    for row in conn.execute(query).all():
        if changed_domains is not None and not any(
            parent in changed_domains for parent in parent_domains(row.fqdn)
        ):
            continue
        report.pairs_checked += 1
        result = resolver.resolve(row.host_key, row.domain_key)
        if result.site != row.site:
            report.changes.append(
                PairChange(row.host_key, row.domain_key, row.domain_name, row.site, result.site)
            )
            changed.append((row.host_key, row.domain_key, result))
    rewrite_resolutions(conn, changed, now)


def _count_affected_rows(
    conn: Connection,
    report: ApplyReport,
    now: datetime,
    jobs: Sequence[JobSpec],
    watermarks: dict[str, datetime | None],
) -> None:
    """Raw rows (under the watermark) behind each changed pair, on either side. The changed
    pairs are the cache rows resolved at `now`: this transaction's (the jobs are paused). Every
    row of a changed pair fed a deleted key, so it ends within the days rebuilt: only that range
    is counted, never the whole history."""
    if not report.changes or not report.days:
        return
    first, last = report.days[0], report.days[-1] + timedelta(days=1)
    changed = select(t_host_site.c.host_key, t_host_site.c.domain_key).where(
        t_host_site.c.resolved_at == now
    )
    counts: dict[tuple[str, str], int] = {}
    for job in jobs:
        watermark = watermarks.get(job.name)
        if watermark is None:
            continue
        raw = SOURCES[job.kind].raw
        in_range = and_(
            raw.c.insert_date <= watermark,
            raw.c.end_date >= first,
            raw.c.end_date < last,
        )
        for host, domain in pair_sides(raw):
            h, d = raw_pair_key(host, domain)
            statement = (
                select(h, d, func.count()).where(in_range, tuple_(h, d).in_(changed)).group_by(h, d)
            )
            for key_h, key_d, n in conn.execute(statement):
                counts[(key_h, key_d)] = counts.get((key_h, key_d), 0) + n
    report.changes = [
        PairChange(
            c.host_key,
            c.domain_key,
            c.domain,
            c.old_site,
            c.new_site,
            counts.get((c.host_key, c.domain_key), 0),
        )
        for c in report.changes
    ]
