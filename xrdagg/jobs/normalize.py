"""One raw row, normalised and resolved to sites, as a SQL subquery (SPEC §2 and §3).

Every statistics statement selects from `normalized_rows(...)`, so the rules live here once:
validity, the 7-day clip, byte fallbacks, 'unknown' for missing keys, and the site of each side
(SERVER_SITE through the alias map, else the cached resolution of the raw host/domain pair).
Times are epoch seconds (integers) from here on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Subquery, and_, case, func, literal, select

from xrdagg.db.dialect import epoch_seconds, floor_to, greatest_of, truncated
from xrdagg.db.tables import (
    BIN_SECONDS,
    DAY_SECONDS,
    MAX_TRANSFER_SECONDS,
    RAW_TABLES,
    SITE_LEN,
    UNKNOWN,
    USER_LEN,
    VO_LEN,
    t_host_site,
    t_site_alias,
)
from xrdagg.topology.store import matches_pair

# SPEC §6: a row whose END_DATE is more than this after its INSERT_DATE is a collector clock error.
MAX_END_AFTER_INSERT_SECONDS = DAY_SECONDS


def is_valid(source: str) -> ColumnElement[bool]:
    """SPEC §6 validity: INSERT_DATE present, END_DATE at most a day after it."""
    raw = RAW_TABLES[source]
    return and_(
        raw.c.insert_date.is_not(None),
        epoch_seconds(raw.c.end_date)
        <= epoch_seconds(raw.c.insert_date) + MAX_END_AFTER_INSERT_SECONDS,
    )


def is_clock_error(source: str) -> ColumnElement[bool]:
    raw = RAW_TABLES[source]
    return and_(
        raw.c.insert_date.is_not(None),
        epoch_seconds(raw.c.end_date)
        > epoch_seconds(raw.c.insert_date) + MAX_END_AFTER_INSERT_SECONDS,
    )


def _present(value: ColumnElement[Any]) -> ColumnElement[bool]:
    # Oracle stores '' as NULL, so "empty" is tested through LENGTH, never with = ''.
    return func.length(func.trim(value)) > 0


def _non_negative(*values: ColumnElement[Any]) -> ColumnElement[Any]:
    return greatest_of(func.coalesce(*values, 0), 0)


def normalized_rows(source: str, condition: ColumnElement[bool]) -> Subquery:
    """The valid raw rows of `source` that satisfy `condition`, normalised (SPEC §2-3).

    Columns: insert_s, end_s, start_s (clipped to 7 days), start_bin, end_bin, start_day,
    end_day (epoch seconds); read_b, write_b (>= 0); src_site, src_domain, dst_site, dst_domain,
    vo, user_dn (never NULL); file_size, read_single_bytes, read_single_ops, read_vector_bytes,
    read_vector_ops, write_ops, read_min, read_max.
    """
    raw = RAW_TABLES[source]
    client = t_host_site.alias("client_res")
    server = t_host_site.alias("server_res")
    alias = t_site_alias.alias("server_alias")

    end_s = epoch_seconds(raw.c.end_date)
    start_s = case(
        (raw.c.start_date.is_(None) | (raw.c.start_date > raw.c.end_date), end_s),
        else_=greatest_of(epoch_seconds(raw.c.start_date), end_s - MAX_TRANSFER_SECONDS),
    )
    server_site = func.trim(raw.c.server_site)
    src_site = case(
        (
            _present(raw.c.server_site),
            truncated(func.coalesce(alias.c.site, server_site), SITE_LEN),
        ),
        else_=server.c.site,
    )
    vo = case(
        (_present(raw.c.user_vo), truncated(func.lower(func.trim(raw.c.user_vo)), VO_LEN)),
        else_=literal(UNKNOWN),
    )
    user_dn = case(
        (_present(raw.c.user_dn), truncated(func.trim(raw.c.user_dn), USER_LEN)),
        (_present(raw.c.server_username), truncated(func.trim(raw.c.server_username), USER_LEN)),
        else_=literal(UNKNOWN),
    )
    joined = (
        raw.join(client, matches_pair(client, raw.c.client_host, raw.c.client_domain))
        .join(server, matches_pair(server, raw.c.server_host, raw.c.server_domain))
        .outerjoin(alias, alias.c.alias == func.upper(server_site))
    )
    inner = (
        select(
            epoch_seconds(raw.c.insert_date).label("insert_s"),
            end_s.label("end_s"),
            start_s.label("start_s"),
            _non_negative(raw.c.read_bytes_at_close, raw.c.read_bytes).label("read_b"),
            _non_negative(raw.c.write_bytes_at_close, raw.c.write_bytes).label("write_b"),
            src_site.label("src_site"),
            server.c.domain_name.label("src_domain"),
            client.c.site.label("dst_site"),
            client.c.domain_name.label("dst_domain"),
            vo.label("vo"),
            user_dn.label("user_dn"),
            raw.c.file_size,
            _non_negative(raw.c.read_single_bytes).label("read_single_bytes"),
            _non_negative(raw.c.read_single_operations).label("read_single_ops"),
            _non_negative(raw.c.read_vector_bytes).label("read_vector_bytes"),
            _non_negative(raw.c.read_vector_operations).label("read_vector_ops"),
            _non_negative(raw.c.write_operations).label("write_ops"),
            raw.c.read_min,
            raw.c.read_max,
        )
        .select_from(joined)
        .where(is_valid(source), condition)
        .subquery("raw_norm")
    )
    # Bins and days of each row, computed once from the normalised times.
    return select(
        inner,
        floor_to(inner.c.start_s, BIN_SECONDS).label("start_bin"),
        floor_to(inner.c.end_s, BIN_SECONDS).label("end_bin"),
        floor_to(inner.c.insert_s, BIN_SECONDS).label("insert_bin"),
        floor_to(inner.c.start_s, DAY_SECONDS).label("start_day"),
        floor_to(inner.c.end_s, DAY_SECONDS).label("end_day"),
    ).subquery("norm")
