"""One raw row, normalised and resolved to sites, as a SQL subquery (SPEC §2 and §3).

Every rebuild stages `normalized_rows(...)` once (`xrdagg.jobs.stage`), so the rules live here once:
validity, the 7-day clip, byte fallbacks, 'unknown' for missing keys, and the site of each side
(SERVER_SITE through the alias map, else the cached resolution of the raw host/domain pair).
Times are epoch seconds (integers) from here on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, cast, func, select

from xrdagg.db.dialect import (
    epoch_seconds,
    greatest_of,
    least_of,
    nonblank,
    plus_seconds,
    truncated,
)
from xrdagg.db.tables import t_host_site, t_site_alias
from xrdagg.db.types import Number
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


def _non_negative(*values: ColumnElement[Any]) -> ColumnElement[Any]:
    return _measure(greatest_of(func.coalesce(*values, 0), 0))


def _measure(value: ColumnElement[Any]) -> ColumnElement[Any]:
    # Raw NUMERIC becomes the statistics' measure type once, here: summing doubles is several
    # times faster than summing NUMERIC on PostgreSQL, and the targets hold doubles anyway.
    return cast(value, Number())


def normalized_rows(source: Source, condition: ColumnElement[bool]) -> Select[Any]:
    """The valid raw rows of `source` that satisfy `condition`, normalised (SPEC §2-3), in the
    columns of the staging table (`xrdagg.jobs.stage`).

    Every value is computed once per row: the raw times as epoch seconds (start_given is NULL
    when START_DATE is), bytes >= 0, and the keys src_site, src_domain, dst_site, dst_domain,
    vo, user_dn never NULL. The clipped start and the bins are derived from these integers by
    `stage.staged_rows`, which is far cheaper than converting dates again for each of them.
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
            _measure(raw.c.file_size).label("file_size"),
            _non_negative(raw.c.read_single_bytes).label("read_single_bytes"),
            _non_negative(raw.c.read_single_operations).label("read_single_ops"),
            _non_negative(raw.c.read_vector_bytes).label("read_vector_bytes"),
            _non_negative(raw.c.read_vector_operations).label("read_vector_ops"),
            _non_negative(raw.c.write_operations).label("write_ops"),
            _measure(raw.c.read_min).label("read_min"),
            _measure(raw.c.read_max).label("read_max"),
        )
        .select_from(joined)
        .where(is_valid(source), condition)
    )


def clipped_start(start_given: Any, end_s: Any) -> ColumnElement[int]:
    """SPEC §2: the start, or the end when the start is missing or later than the end, and
    never more than 7 days before the end (epoch seconds)."""
    return greatest_of(
        least_of(func.coalesce(start_given, end_s), end_s), end_s - MAX_TRANSFER_SECONDS
    )
