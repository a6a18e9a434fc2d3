"""Daily tables rolled up from the 10-minute tables for given days (SPEC §5: never from raw;
MV_SITE_STATS sums its volumes from T_SITE_PAIR_DAY, the daily sums of T_STATS_AVG by site pair).

`rollup_days` replaces the daily rows of a day range: delete, then insert from the 10-minute
rows of those days. T_SITE is merged from the same days' T_STATS_AVG rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    select,
    tuple_,
    union_all,
)

from xrdagg.db.dialect import MergeInto, day_start, tune_for_aggregation
from xrdagg.db.tables import (
    mv_site_stats,
    t_dirty_day,
    t_site,
    t_site_country,
    t_site_pair_day,
    t_stats_access_pattern,
    t_stats_access_pattern_a,
    t_stats_avg,
    t_user_activity,
)
from xrdagg.db.types import UtcDate
from xrdagg.jobs import site_pairs
from xrdagg.jobs.agent import lowest_watermark
from xrdagg.jobs.contributions import ACCESS_PATTERN_KEYS, ACCESS_PATTERN_SUMS, REBUILT_MARK
from xrdagg.jobs.kind import RunContext, RunCounts
from xrdagg.jobs.rollup_keys import KeyFilter, of_either_site, of_site
from xrdagg.rules import UNKNOWN, midnight
from xrdagg.sources import SOURCES

log = logging.getLogger(__name__)

DAY_LO = bindparam("day_lo", type_=UtcDate())
DAY_HI = bindparam("day_hi", type_=UtcDate())


def contiguous_ranges(
    starts: Iterable[datetime], length: timedelta
) -> list[tuple[datetime, datetime]]:
    """Contiguous [first, last + length) ranges covering the periods of `length` beginning at
    `starts` (days, or 10-minute bins)."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + length)
        else:
            ranges.append((start, start + length))
    return ranges


def day_ranges(days: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Contiguous [first, last + 1 day) ranges covering `days` (midnights)."""
    return contiguous_ranges(days, timedelta(days=1))


def _access_pattern_daily(only: KeyFilter | None) -> tuple[object, object]:
    src = t_stats_access_pattern
    in_range = and_(
        src.c.bin_start >= DAY_LO,
        src.c.bin_start < DAY_HI,
        of_either_site(only, src.c.src_site, src.c.dst_site),
    )
    with_day = select(day_start(src.c.bin_start).label("day"), src).where(in_range).subquery()
    keys = [with_day.c[k] for k in ACCESS_PATTERN_KEYS]
    rows = select(
        with_day.c.day,
        *keys,
        *(func.sum(with_day.c[m]).label(m) for m in ACCESS_PATTERN_SUMS),
        func.min(with_day.c.read_min).label("read_min"),
        func.max(with_day.c.read_max).label("read_max"),
    ).group_by(with_day.c.day, *keys)
    target = t_stats_access_pattern_a
    columns = ["day", *ACCESS_PATTERN_KEYS, *ACCESS_PATTERN_SUMS, "read_min", "read_max"]
    clear = delete(target).where(
        target.c.day >= DAY_LO,
        target.c.day < DAY_HI,
        of_either_site(only, target.c.src_site, target.c.dst_site),
    )
    return clear, target.insert().from_select(columns, rows)


def _site_stats_daily(only: KeyFilter | None) -> tuple[object, object]:
    # The volumes from T_SITE_PAIR_DAY, rolled up first (`statements`): its rows hold the same
    # sums by day, source and both sites, and are a few hundred a day where T_STATS_AVG holds
    # every bin and domain pair (tens of thousands; each read twice, once for either role).
    pairs = t_site_pair_day
    in_range = and_(pairs.c.day >= DAY_LO, pairs.c.day < DAY_HI)
    local = and_(pairs.c.src_site == pairs.c.dst_site, pairs.c.src_site != UNKNOWN)
    sides = []
    for role, site in (("SERVER", pairs.c.src_site), ("CLIENT", pairs.c.dst_site)):
        sides.append(
            select(
                pairs.c.day,
                site.label("site"),
                literal(role).label("role"),
                pairs.c.source,
                pairs.c.read_bytes,
                pairs.c.write_bytes,
                pairs.c.transfers_ended,
                case((local, pairs.c.read_bytes), else_=0).label("local_read"),
            ).where(in_range, of_site(only, site))
        )
    both = union_all(*sides).subquery("sides")
    volumes = (
        select(
            both.c.day,
            both.c.site,
            both.c.role,
            both.c.source,
            func.sum(both.c.read_bytes).label("read_bytes"),
            func.sum(both.c.write_bytes).label("write_bytes"),
            func.sum(both.c.transfers_ended).label("transfers"),
            func.sum(both.c.local_read).label("local_read_bytes"),
        )
        .group_by(both.c.day, both.c.site, both.c.role, both.c.source)
        .subquery("volumes")
    )
    ua = t_user_activity
    ua_in_range = and_(ua.c.bin_start >= DAY_LO, ua.c.bin_start < DAY_HI)
    user_sides = [
        select(
            day_start(ua.c.bin_start).label("day"),
            site.label("site"),
            literal(role).label("role"),
            ua.c.user_dn,
        ).where(ua_in_range, of_site(only, site))
        for role, site in (("SERVER", ua.c.src_site), ("CLIENT", ua.c.dst_site))
    ]
    user_rows = union_all(*user_sides).subquery("user_rows")
    users = (
        select(
            user_rows.c.day,
            user_rows.c.site,
            user_rows.c.role,
            func.count(user_rows.c.user_dn.distinct()).label("users"),
        )
        .group_by(user_rows.c.day, user_rows.c.site, user_rows.c.role)
        .subquery("users")
    )
    joined = volumes.outerjoin(
        users,
        and_(
            users.c.day == volumes.c.day,
            users.c.site == volumes.c.site,
            users.c.role == volumes.c.role,
            volumes.c.source == "FED",
        ),
    )
    rows = select(
        volumes.c.day,
        volumes.c.site,
        volumes.c.role,
        volumes.c.source,
        volumes.c.read_bytes,
        volumes.c.write_bytes,
        volumes.c.transfers,
        volumes.c.local_read_bytes,
        (volumes.c.read_bytes - volumes.c.local_read_bytes).label("remote_read_bytes"),
        # USERS is kept for FED only (SPEC §5): EOS has no user activity table.
        case((volumes.c.source == "FED", func.coalesce(users.c.users, 0)), else_=None).label(
            "users"
        ),
    ).select_from(joined)
    columns = [c.name for c in rows.selected_columns]
    clear = delete(mv_site_stats).where(
        mv_site_stats.c.day >= DAY_LO,
        mv_site_stats.c.day < DAY_HI,
        of_site(only, mv_site_stats.c.site),
    )
    return clear, mv_site_stats.insert().from_select(columns, rows)


def _site_merge(only: KeyFilter | None) -> MergeInto:
    avg = t_stats_avg
    in_range = and_(avg.c.bin_start >= DAY_LO, avg.c.bin_start < DAY_HI)
    sides = [
        select(
            site.label("site"),
            literal(server).label("is_server"),
            literal(client).label("is_client"),
            avg.c.bin_start,
        ).where(in_range, site != UNKNOWN, of_site(only, site))
        for site, server, client in ((avg.c.src_site, "Y", "N"), (avg.c.dst_site, "N", "Y"))
    ]
    seen = union_all(*sides).subquery("seen")
    grouped = (
        select(
            seen.c.site,
            func.max(seen.c.is_server).label("is_server"),  # 'Y' > 'N'
            func.max(seen.c.is_client).label("is_client"),
            func.min(seen.c.bin_start).label("first_seen"),
            func.max(seen.c.bin_start).label("last_seen"),
        )
        .group_by(seen.c.site)
        .subquery("grouped")
    )
    rows = select(
        grouped.c.site,
        func.coalesce(t_site_country.c.country, UNKNOWN).label("country"),
        grouped.c.is_server,
        grouped.c.is_client,
        grouped.c.first_seen,
        grouped.c.last_seen,
    ).select_from(grouped.outerjoin(t_site_country, t_site_country.c.site == grouped.c.site))
    return MergeInto(
        t_site,
        rows,
        keys=["site"],
        low=["first_seen"],
        high=["is_server", "is_client", "last_seen"],
    )


def statements(only: KeyFilter | None = None) -> list[Any]:
    """The roll-up's statements, in order: of whole days, or of the rows `only` keeps."""
    return [
        *_access_pattern_daily(only),
        *site_pairs.statements(only),  # before MV_SITE_STATS, which sums its rows
        *_site_stats_daily(only),
        _site_merge(only),
    ]


_STATEMENTS = statements()


def run(conn: Connection, context: RunContext) -> RunCounts:
    """The daily kind: roll up the days marked dirty, then clear exactly the marks it saw. Its
    watermark becomes the lowest of the 10-minute jobs': its tables include at least that.

    A day whose 10-minute rows were trimmed and then only added to (rows arriving now that fall
    on it) is not rolled up: its 10-minute rows are those rows alone, and its daily rows the
    only history of the rest (`trimmed_days`); the run says so, and logs a warning. A recompute
    of the day rebuilds its 10-minute rows from raw first, and its roll-up then goes ahead."""
    counts = RunCounts(window_lo=context.watermark, window_hi=context.now)
    marks = conn.execute(select(t_dirty_day.c.day, t_dirty_day.c.source, t_dirty_day.c.mark)).all()
    if marks:
        # Each day's statements group every 10-minute row of the day (a recompute's or a first
        # catch-up's days by the hundred thousand): the bulk settings, work_mem among them
        # (with the server's default their sorts spilled to disk on PostgreSQL, and MariaDB's
        # groupings outgrew its in-memory temporary tables).
        tune_for_aggregation(conn)
        kept = trimmed_days(conn, marks, context.retention_days, context.now)
        counts.days = sorted({m.day for m in marks} - kept)
        counts.rows_written = rollup_days(conn, counts.days)
        if kept:
            counts.message = _kept_message(kept, len(counts.days), counts.rows_written)
            log.warning("daily job %s: %s", context.job.name, counts.message)
        # A 10-minute job that marked a day again meanwhile raised its mark: that row stays.
        conn.execute(
            delete(t_dirty_day).where(
                tuple_(t_dirty_day.c.day, t_dirty_day.c.source, t_dirty_day.c.mark).in_(
                    [(m.day, m.source, m.mark) for m in marks]
                )
            )
        )
    counts.watermark = lowest_watermark(conn, context.upstream) or context.watermark
    return counts


# The 10-minute tables the daily tables are rolled up from (T_MSG_RATE has no daily twin).
_ROLLED_UP = (t_stats_avg, t_user_activity, t_stats_access_pattern)


# Days at least this old are looked at for trimming whatever the retention (a dropped partition
# has none, and the jobs a runner is given may not include housekeeping): a normal run's dirty
# days are its window's, and the start days of the transfers ending in it, which SPEC §2 clips
# to 7 days. A housekeeping job keeping a table for fewer days brings the horizon closer.
TRIM_HORIZON_DAYS = 8


def trimmed_days(
    conn: Connection,
    marks: Sequence[Any],
    retention_days: Mapping[str, int],
    now: datetime,
) -> set[datetime]:
    """Of the days of `marks` (T_DIRTY_DAY rows), those the roll-up would shrink: where a source
    that no rebuild marked counts fewer transfers in its 10-minute rows than in its daily rows,
    a table was trimmed there (housekeeping's `retention_days`, a dropped partition) and only
    rows that arrived since were added. A source a rebuild marked was rebuilt whole from raw
    (`contributions.REBUILT_MARK`): its roll-up must go ahead, even where it shrinks (purged raw
    rows). Only days older than the horizon are looked at (`TRIM_HORIZON_DAYS`, or the
    shortest retention of a table the daily tables read): a few sums over each."""
    shortest = [retention_days[t.name] for t in _ROLLED_UP if t.name in retention_days]
    horizon = midnight(now - timedelta(days=min([TRIM_HORIZON_DAYS, *shortest])))
    rebuilt: dict[datetime, set[str]] = {}
    for mark in marks:
        sources = rebuilt.setdefault(mark.day, set())
        if mark.mark >= REBUILT_MARK:
            sources.add(mark.source)
    return {
        day for day, whole in rebuilt.items() if day < horizon and _holds_less(conn, day, whole)
    }


def _holds_less(conn: Connection, day: datetime, rebuilt: set[str]) -> bool:
    """Whether the 10-minute rows of `day` count fewer transfers than its daily rows, for a
    source not in `rebuilt`: per source, T_STATS_AVG's ended transfers against
    T_SITE_PAIR_DAY's; for FED, T_STATS_ACCESS_PATTERN's and T_USER_ACTIVITY's accesses
    against T_STATS_ACCESS_PATTERN_A's. A 10-minute run only adds rows, so where a day's
    tables are whole they hold at least what its daily rows count. The daily side first: a
    day never rolled up (a first catch-up's) holds no daily row, and its 10-minute rows are
    not summed at all."""
    params = {"day_lo": day, "day_hi": day + timedelta(days=1)}
    counted = {
        str(source): int(n or 0)
        for source, n in conn.execute(_PAIR_DAY_ENDED, params)
        if source not in rebuilt and n
    }
    if counted:
        ten_minute = {
            str(source): int(n or 0) for source, n in conn.execute(_ENDED_BY_SOURCE, params)
        }
        if any(ten_minute.get(source, 0) < n for source, n in counted.items()):
            return True
    if SOURCES["fed"].label in rebuilt:
        return False
    accesses = int(conn.execute(_DAILY_ACCESSES, params).scalar() or 0)
    return accesses > 0 and any(
        int(conn.execute(statement, params).scalar() or 0) < accesses for statement in _ACCESSES
    )


def _kept_message(kept: set[datetime], rolled_up: int, written: int) -> str:
    """The run log's line for days kept as they were: which, why, and what counts the rest."""
    runs = day_ranges(kept)
    shown = [
        f"{lo:%Y-%m-%d}"
        if hi - lo == timedelta(days=1)
        else f"{lo:%Y-%m-%d} to {hi - timedelta(days=1):%Y-%m-%d}"
        for lo, hi in runs[:5]
    ]
    if len(runs) > 5:
        shown.append(f"{len(runs) - 5} more run(s) of days")
    first, last = runs[0][0], runs[-1][1] - timedelta(days=1)
    return (
        f"{rolled_up} day(s) rolled up, {written} daily rows written; kept the daily rows of "
        f"{len(kept)} day(s) as they were ({'; '.join(shown)}): their 10-minute rows were "
        "trimmed (retention_days, or a dropped partition), and the rows that arrived since and "
        "fall on them are in the 10-minute tables only. While the raw rows of those days are "
        f"kept, `xrdagg recompute --from {first:%Y-%m-%d} --to {last:%Y-%m-%d}` counts them "
        "(every job: a recompute of purged days would lose their statistics)"
    )


def _ended_by_source(table: Any, day_column: str) -> Select[Any]:
    """`table`'s ended transfers per source, over the rows whose `day_column` lies in the day."""
    day = table.c[day_column]
    return (
        select(table.c.source, func.sum(table.c.transfers_ended))
        .where(day >= DAY_LO, day < DAY_HI)
        .group_by(table.c.source)
    )


_ENDED_BY_SOURCE = _ended_by_source(t_stats_avg, "bin_start")
_PAIR_DAY_ENDED = _ended_by_source(t_site_pair_day, "day")
_DAILY_ACCESSES = select(func.sum(t_stats_access_pattern_a.c.accesses)).where(
    t_stats_access_pattern_a.c.day >= DAY_LO, t_stats_access_pattern_a.c.day < DAY_HI
)
_ACCESSES = tuple(
    select(func.sum(table.c.accesses)).where(
        table.c.bin_start >= DAY_LO, table.c.bin_start < DAY_HI
    )
    for table in (t_stats_access_pattern, t_user_activity)
)
# Every statement of that test, for the Oracle offline check: they run only on days marked more
# than TRIM_HORIZON_DAYS after they happened, so it compiles them whatever its workflow reaches.
TRIMMED_DAY_CHECKS = (_ENDED_BY_SOURCE, _PAIR_DAY_ENDED, _DAILY_ACCESSES, *_ACCESSES)


def rollup_days(
    conn: Connection,
    days: Iterable[datetime],
    rollup: Sequence[Any] = _STATEMENTS,
    params: Mapping[str, Any] | None = None,
) -> int:
    """Rebuild the daily rows of `days` from the 10-minute tables (with `rollup`, a `statements`
    list of some keys, and the `params` they take: only those rows); returns rows written."""
    written = 0
    for lo, hi in day_ranges(days):
        for statement in rollup:
            result = conn.execute(statement, {**(params or {}), "day_lo": lo, "day_hi": hi})
            if not getattr(statement, "is_delete", False):
                written += max(result.rowcount, 0)
    return written
