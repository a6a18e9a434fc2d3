"""What a set of normalised rows adds to each statistics table, as MERGE statements (SPEC §4-5).

Each function takes the `normalized_rows` subquery and returns one `MergeInto`: the rows'
contribution grouped by the table's keys, summed into existing rows (min/max combined). Because
every measure is a sum, a count, a min or a max, adding the contributions of disjoint sets of
rows gives the same table as aggregating them all at once: this is what makes incremental runs
equal to a from-scratch computation (SPEC §6).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Subquery, case, func, literal, select

from xrdagg.db.dialect import MergeInto, as_real, from_epoch, greatest_of, least_of
from xrdagg.db.tables import (
    BIN_SECONDS,
    DAY_SECONDS,
    t_bin_span,
    t_dirty_day,
    t_msg_rate,
    t_stats_access_pattern,
    t_stats_avg,
    t_user_activity,
)
from xrdagg.db.types import UtcDate

STATS_AVG_KEYS = ["bin_start", "source", "src_site", "src_domain", "dst_site", "dst_domain", "vo"]


def stats_avg(
    norm: Subquery,
    source: str,
    bins: tuple[ColumnElement[int], ColumnElement[int]] | None = None,
) -> MergeInto:
    """T_STATS_AVG: each row spread over the bins from its start to its end (SPEC §4).

    `bins` = (lo, hi) epoch seconds keeps only the bins in [lo, hi): a recompute chunk rebuilds
    its own bins from every row that overlaps them, and no others.
    """
    offsets = t_bin_span.alias("bin_span")
    bin_s = norm.c.start_bin + offsets.c.n * BIN_SECONDS
    spread_rows = (
        select(
            bin_s.label("bin_s"),
            norm.c.start_s,
            norm.c.end_s,
            norm.c.end_bin,
            norm.c.read_b,
            norm.c.write_b,
            norm.c.src_site,
            norm.c.src_domain,
            norm.c.dst_site,
            norm.c.dst_domain,
            norm.c.vo,
        )
        .select_from(norm)
        .join(offsets, offsets.c.span == (norm.c.end_bin - norm.c.start_bin) / BIN_SECONDS)
    )
    if bins is not None:
        spread_rows = spread_rows.where(bin_s >= bins[0], bin_s < bins[1])
    spread = spread_rows.subquery("spread")
    duration = spread.c.end_s - spread.c.start_s
    # |[start, end) ∩ [bin, bin + 600)|: zero in the end bin of a row ending on a bin boundary.
    overlap = least_of(spread.c.end_s, spread.c.bin_s + BIN_SECONDS) - greatest_of(
        spread.c.start_s, spread.c.bin_s
    )

    def share(total: ColumnElement[Any]) -> ColumnElement[Any]:
        # A zero-length transfer puts all its bytes into its end bin.
        return case((duration == 0, total), else_=as_real(total) * overlap / duration)

    keys = [
        spread.c.src_site,
        spread.c.src_domain,
        spread.c.dst_site,
        spread.c.dst_domain,
        spread.c.vo,
    ]
    grouped = (
        select(
            spread.c.bin_s,
            *keys,
            func.sum(share(spread.c.read_b)).label("read_bytes"),
            func.sum(share(spread.c.write_b)).label("write_bytes"),
            func.sum(overlap).label("active_seconds"),
            func.count().label("transfers_active"),
            func.sum(case((spread.c.bin_s == spread.c.end_bin, 1), else_=0)).label(
                "transfers_ended"
            ),
        )
        .group_by(spread.c.bin_s, *keys)
        .subquery("grouped")
    )
    rows = select(
        from_epoch(grouped.c.bin_s).label("bin_start"),
        literal(source.upper()).label("source"),
        grouped.c.src_site,
        grouped.c.src_domain,
        grouped.c.dst_site,
        grouped.c.dst_domain,
        grouped.c.vo,
        grouped.c.read_bytes,
        grouped.c.write_bytes,
        grouped.c.active_seconds,
        grouped.c.transfers_active,
        grouped.c.transfers_ended,
    )
    return MergeInto(
        t_stats_avg,
        rows,
        keys=STATS_AVG_KEYS,
        add=["read_bytes", "write_bytes", "active_seconds", "transfers_active", "transfers_ended"],
    )


def user_activity(norm: Subquery) -> MergeInto:
    """T_USER_ACTIVITY: each row counted in the bin of its end (SPEC §4)."""
    keys = [norm.c.user_dn, norm.c.vo, norm.c.src_site, norm.c.dst_site]
    grouped = (
        select(
            norm.c.end_bin,
            *keys,
            func.count().label("accesses"),
            func.sum(norm.c.read_b).label("read_bytes"),
            func.sum(norm.c.write_b).label("write_bytes"),
        )
        .group_by(norm.c.end_bin, *keys)
        .subquery("grouped")
    )
    rows = select(
        from_epoch(grouped.c.end_bin).label("bin_start"),
        *(grouped.c[k.name] for k in keys),
        grouped.c.accesses,
        grouped.c.read_bytes,
        grouped.c.write_bytes,
    )
    return MergeInto(
        t_user_activity,
        rows,
        keys=["bin_start", "user_dn", "vo", "src_site", "dst_site"],
        add=["accesses", "read_bytes", "write_bytes"],
    )


ACCESS_PATTERN_KEYS = ["src_site", "dst_site", "vo"]
ACCESS_PATTERN_SUMS = [
    "accesses", "file_size", "read_bytes", "read_single_bytes", "read_single_ops",
    "read_vector_bytes", "read_vector_ops", "write_bytes", "write_ops",
    "n_frac_lt10", "n_frac_10_50", "n_frac_50_100", "n_frac_ge100", "n_frac_unknown",
]  # fmt: skip


def access_pattern(norm: Subquery) -> MergeInto:
    """T_STATS_ACCESS_PATTERN: end-bin counts, volumes and the fraction of each file read."""
    size, read = norm.c.file_size, norm.c.read_b
    known = size > 0

    def bucket(condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.sum(case((known & condition, 1), else_=0))

    keys = [norm.c.src_site, norm.c.dst_site, norm.c.vo]
    grouped = (
        select(
            norm.c.end_bin,
            *keys,
            func.count().label("accesses"),
            func.sum(case((known, size), else_=0)).label("file_size"),
            func.sum(read).label("read_bytes"),
            func.sum(norm.c.read_single_bytes).label("read_single_bytes"),
            func.sum(norm.c.read_single_ops).label("read_single_ops"),
            func.sum(norm.c.read_vector_bytes).label("read_vector_bytes"),
            func.sum(norm.c.read_vector_ops).label("read_vector_ops"),
            func.sum(norm.c.write_b).label("write_bytes"),
            func.sum(norm.c.write_ops).label("write_ops"),
            func.min(norm.c.read_min).label("read_min"),
            func.max(norm.c.read_max).label("read_max"),
            # fraction read = read / size, compared without dividing
            bucket(read * 10 < size).label("n_frac_lt10"),
            bucket((read * 10 >= size) & (read * 2 < size)).label("n_frac_10_50"),
            bucket((read * 2 >= size) & (read < size)).label("n_frac_50_100"),
            bucket(read >= size).label("n_frac_ge100"),
            func.sum(case((known, 0), else_=1)).label("n_frac_unknown"),
        )
        .group_by(norm.c.end_bin, *keys)
        .subquery("grouped")
    )
    rows = select(
        from_epoch(grouped.c.end_bin).label("bin_start"),
        *(c for c in grouped.c if c.name != "end_bin"),
    )
    return MergeInto(
        t_stats_access_pattern,
        rows,
        keys=["bin_start", *ACCESS_PATTERN_KEYS],
        add=ACCESS_PATTERN_SUMS,
        low=["read_min"],
        high=["read_max"],
    )


def msg_rate(norm: Subquery, source: str) -> MergeInto:
    """T_MSG_RATE: rows by arrival bin and server domain, with their delay (never below 0)."""
    delay = greatest_of(norm.c.insert_s - norm.c.end_s, 0)
    grouped = (
        select(
            norm.c.insert_bin,
            norm.c.src_domain,
            func.count().label("messages"),
            func.sum(delay).label("delay_seconds"),
            func.max(delay).label("max_delay_seconds"),
        )
        .group_by(norm.c.insert_bin, norm.c.src_domain)
        .subquery("grouped")
    )
    rows = select(
        from_epoch(grouped.c.insert_bin).label("bin_start"),
        literal(source.upper()).label("source"),
        grouped.c.src_domain.label("domain"),
        grouped.c.messages,
        grouped.c.delay_seconds,
        grouped.c.max_delay_seconds,
    )
    return MergeInto(
        t_msg_rate,
        rows,
        keys=["bin_start", "source", "domain"],
        add=["messages", "delay_seconds"],
        high=["max_delay_seconds"],
    )


def mark_days(conn: Connection, source: str, days: Iterable[datetime]) -> None:
    """Mark the given days (midnights) for the daily roll-up: rows of them were rebuilt."""
    for day in days:
        mark = select(
            literal(day, UtcDate()).label("day"),
            literal(source.upper()).label("source"),
            literal(1).label("mark"),
        )
        conn.execute(MergeInto(t_dirty_day, mark, keys=["day", "source"], add=["mark"]))


def dirty_days(norm: Subquery, source: str) -> MergeInto:
    """Mark every day the rows touch (start day to end day) for the daily roll-up."""
    offsets = t_bin_span.alias("day_span")
    day_s = norm.c.start_day + offsets.c.n * DAY_SECONDS
    days = (
        select(day_s.label("day_s"))
        .select_from(norm)
        .join(offsets, offsets.c.span == (norm.c.end_day - norm.c.start_day) / DAY_SECONDS)
        .distinct()
        .subquery("days")
    )
    rows = select(
        from_epoch(days.c.day_s).label("day"),
        literal(source.upper()).label("source"),
        literal(1).label("mark"),
    )
    return MergeInto(t_dirty_day, rows, keys=["day", "source"], add=["mark"])
