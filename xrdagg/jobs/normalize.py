"""One raw row, normalised and resolved to sites, as a SQL subquery (SPEC §2 and §3).

Every rebuild stages `normalized_rows(...)` once (`xrdagg.jobs.stage`), so the rules live here once:
validity, the 7-day clip, byte fallbacks, 'unknown' for missing keys, and the site of each side
(SERVER_SITE through the alias map, else the cached resolution of the raw host/domain pair).
Times are epoch seconds (integers) from here on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select

from xrdagg.db.dialect import (
    beyond_measure,
    epoch_seconds,
    finite_or,
    greatest_of,
    least_of,
    nonblank,
    plus_seconds,
    truncated,
)
from xrdagg.db.tables import t_host_site, t_site_alias
from xrdagg.rules import DAY_SECONDS, MAX_TRANSFER_SECONDS, SITE_LEN, UNKNOWN, USER_LEN, VO_LEN
from xrdagg.sources import Source
from xrdagg.topology.store import matches_pair

# SPEC §6: a row whose END_DATE is more than this after its INSERT_DATE is a collector clock error.
MAX_END_AFTER_INSERT_SECONDS = DAY_SECONDS


def is_valid(source: Source) -> ColumnElement[bool]:
    """SPEC §6 validity: INSERT_DATE present, END_DATE at most a day after it."""
    raw = source.raw
    # Compared as dates: no per-row conversion to seconds, and the planner sees plain columns.
    return and_(
        raw.c.insert_date.is_not(None),
        raw.c.end_date <= plus_seconds(raw.c.insert_date, MAX_END_AFTER_INSERT_SECONDS),
    )


def is_clock_error(source: Source) -> ColumnElement[bool]:
    """SPEC §6: END_DATE more than a day after INSERT_DATE (a collector's clock error)."""
    raw = source.raw
    return and_(
        raw.c.insert_date.is_not(None),
        raw.c.end_date > plus_seconds(raw.c.insert_date, MAX_END_AFTER_INSERT_SECONDS),
    )


# The raw numbers the statistics read (SPEC §1 names), in the order a row's odd reason is taken.
MEASURES = (
    "read_bytes_at_close", "read_bytes", "write_bytes_at_close", "write_bytes", "file_size",
    "read_single_bytes", "read_single_operations", "read_vector_bytes", "read_vector_operations",
    "write_operations", "read_min", "read_max",
)  # fmt: skip


def has_odd_number(source: Source) -> ColumnElement[bool]:
    """Whether a raw row holds a number that is no measurement (NaN, ±inf, beyond ±1e18, or on
    SQLite a text), which `finite_or` replaces.

    One range test per number, as `finite_or` makes it (NaN and text sort above every number
    on PostgreSQL and SQLite, so they fail it like +inf does), OR-ed: cheaper than the GREATEST
    and LEAST over all twelve it replaces (1M rows, SQLite 0.45 s -> 0.20 s over reading the
    numbers, PostgreSQL 0.89 s -> 0.66 s in all). The reason (`xrdagg.jobs.numbers`) is only
    worked out for the few rows this flags.
    """
    return or_(*(beyond_measure(source.raw.c[name]) for name in MEASURES))


def _non_negative(*values: ColumnElement[Any]) -> ColumnElement[Any]:
    # NaN, ±inf and out-of-range values count as 0, like negative ones (finite_or). Still the
    # raw NUMBER type: the staging converts what it sums (`stage.grouped_rows`).
    return greatest_of(func.coalesce(*(finite_or(v, 0) for v in values), 0), 0)


def normalized_rows(source: Source, condition: ColumnElement[bool]) -> Select[Any]:
    """The raw rows of `source` with an INSERT_DATE that satisfy `condition`, normalised (SPEC
    §2-3), in the columns of the staging table (`xrdagg.jobs.stage`). Whether a row is valid
    is left to the caller, on the seconds computed here (`is_valid_seconds`): the date
    arithmetic of `is_valid` on each raw row was 2 % of SQLite's staging (callgrind).

    Every value is computed once per row: the raw times as epoch seconds (start_given is NULL
    when START_DATE is), bytes >= 0 (in the raw NUMBER type), and the keys src_site,
    src_domain, dst_site, dst_domain, vo, user_dn never NULL. The clipped start and the bins
    are derived from these integers by `stage.grouped_rows`, which is far cheaper than
    converting dates again for each of them.
    """
    raw = source.raw
    client = t_host_site.alias("client_res")
    server = t_host_site.alias("server_res")
    alias = t_site_alias.alias("server_alias")

    server_site = nonblank(raw.c.server_site)
    # Rule 1: SERVER_SITE through the alias map, else as written; else the server's resolution.
    # A join, not a scalar subquery: PostgreSQL runs a subquery in the leader only, which would
    # keep the whole normalisation out of its parallel workers.
    src_site = func.coalesce(alias.c.site, truncated(server_site, SITE_LEN), server.c.site)
    vo = truncated(func.lower(func.coalesce(nonblank(raw.c.user_vo), UNKNOWN)), VO_LEN)
    user_dn = truncated(
        func.coalesce(nonblank(raw.c.user_dn), nonblank(raw.c.server_username), UNKNOWN),
        USER_LEN,
    )
    # Outer joins: a pair the cache lacks leaves its side's domain NULL, which the staging
    # notices (resolving the pair and staging again) instead of losing the row.
    joined = (
        raw.outerjoin(client, matches_pair(client, raw.c.client_host, raw.c.client_domain))
        .outerjoin(server, matches_pair(server, raw.c.server_host, raw.c.server_domain))
        .outerjoin(alias, alias.c.alias == func.upper(server_site))
    )
    return (
        select(
            epoch_seconds(raw.c.insert_date).label("insert_s"),
            epoch_seconds(raw.c.end_date).label("end_s"),
            epoch_seconds(raw.c.start_date).label("start_given"),
            _non_negative(raw.c.read_bytes_at_close, raw.c.read_bytes).label("read_b"),
            _non_negative(raw.c.write_bytes_at_close, raw.c.write_bytes).label("write_b"),
            src_site.label("src_site"),
            server.c.domain_name.label("src_domain"),
            client.c.site.label("dst_site"),
            client.c.domain_name.label("dst_domain"),
            vo.label("vo"),
            user_dn.label("user_dn"),
            finite_or(raw.c.file_size, None).label("file_size"),
            _non_negative(raw.c.read_single_bytes).label("read_single_bytes"),
            _non_negative(raw.c.read_single_operations).label("read_single_ops"),
            _non_negative(raw.c.read_vector_bytes).label("read_vector_bytes"),
            _non_negative(raw.c.read_vector_operations).label("read_vector_ops"),
            _non_negative(raw.c.write_operations).label("write_ops"),
            finite_or(raw.c.read_min, None).label("read_min"),
            finite_or(raw.c.read_max, None).label("read_max"),
            case((has_odd_number(source), 1), else_=0).label("odd"),
        )
        .select_from(joined)
        # `condition` first: a caller's cheap prefilter then rules a row out before INSERT_DATE,
        # near the end of the raw row, is read (SQLite reads a row's columns in order).
        .where(condition, raw.c.insert_date.is_not(None))
    )


def is_valid_seconds(insert_s: Any, end_s: Any) -> ColumnElement[bool]:
    """SPEC §6 validity of a row with an INSERT_DATE, on its epoch seconds (`is_valid`, as the
    audit tests it too): END_DATE at most a day after INSERT_DATE."""
    return end_s <= insert_s + MAX_END_AFTER_INSERT_SECONDS


def clipped_start(start_given: Any, end_s: Any) -> ColumnElement[int]:
    """SPEC §2: the start, or the end when the start is missing or later than the end, and
    never more than 7 days before the end (epoch seconds)."""
    return greatest_of(
        least_of(func.coalesce(start_given, end_s), end_s), end_s - MAX_TRANSFER_SECONDS
    )
