"""What a set of normalised rows adds to each statistics table, as MERGE statements (SPEC §4-5).

Each function takes the staged rows (`xrdagg.jobs.stage`, or any selectable with its columns)
and returns one `MergeInto`: the rows'
contribution grouped by the table's keys, summed into existing rows (min/max combined). Because
every measure is a sum, a count, a min or a max, adding the contributions of disjoint sets of
rows gives the same table as aggregating them all at once: this is what makes incremental runs
equal to a from-scratch computation (SPEC §6).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    Table,
    case,
    func,
    literal,
    select,
    union_all,
)

from xrdagg.db.dialect import (
    MergeInto,
    as_real,
    floor_to,
    from_epoch,
    greatest_of,
    least_of,
    whole_quotient,
)
from xrdagg.db.tables import (
    t_bin_span,
    t_dirty_day,
    t_msg_rate,
    t_stats_access_pattern,
    t_stats_avg,
    t_user_activity,
)
from xrdagg.db.types import UtcDate
from xrdagg.rules import BIN_SECONDS, DAY_SECONDS
from xrdagg.sources import Source


def primary_key(table: Table) -> list[str]:
    """The merge keys of a statistics table: its primary key columns."""
    return [c.name for c in table.primary_key.columns]


def measures(table: Table) -> list[str]:
    """The measure columns of a statistics table: every column outside its primary key."""
    keys = set(primary_key(table))
    return [c.name for c in table.columns if c.name not in keys]


KEY_COLUMNS = ("src_site", "src_domain", "dst_site", "dst_domain", "vo")
MATRIX_MEASURES = (
    "read_bytes", "write_bytes", "active_seconds", "transfers_active", "transfers_ended"
)  # fmt: skip


def _single_bin(
    rows: FromClause, bins: tuple[ColumnElement[int], ColumnElement[int]] | None
) -> Select[Any]:
    """Rows that start and end in one bin (most of them), grouped straight into it: all their
    bytes, their whole duration, active and ended there. No spreading, no join."""
    keys = [rows.c[k] for k in KEY_COLUMNS]
    single = select(
        rows.c.end_bin.label("bin_s"),
        *keys,
        func.sum(rows.c.read_b).label("read_bytes"),
        func.sum(rows.c.write_b).label("write_bytes"),
        func.sum(rows.c.end_s - rows.c.start_s).label("active_seconds"),
        func.count().label("transfers_active"),
        func.count().label("transfers_ended"),
    ).where(rows.c.start_bin == rows.c.end_bin)
    if bins is not None:
        single = single.where(rows.c.end_bin >= bins[0], rows.c.end_bin < bins[1])
    return single.group_by(rows.c.end_bin, *keys)


def _multi_bin(
    rows: FromClause, bins: tuple[ColumnElement[int], ColumnElement[int]] | None
) -> Select[Any]:
    """Rows active in several bins, joined to T_BIN_SPAN (on equality, which every database
    hashes) for one row per bin they touch, each with its share (SPEC §4), grouped by bin."""
    offsets = t_bin_span.alias("bin_span")
    bin_s = rows.c.start_bin + offsets.c.n * BIN_SECONDS
    spread_rows = (
        select(
            bin_s.label("bin_s"),
            rows.c.start_s,
            rows.c.end_s,
            rows.c.end_bin,
            rows.c.read_b,
            rows.c.write_b,
            *(rows.c[k] for k in KEY_COLUMNS),
        )
        .select_from(rows)
        .join(
            offsets,
            offsets.c.span == whole_quotient(rows.c.end_bin - rows.c.start_bin, BIN_SECONDS),
        )
        .where(rows.c.start_bin < rows.c.end_bin)
    )
    if bins is not None:
        spread_rows = spread_rows.where(bin_s >= bins[0], bin_s < bins[1])
    spread = spread_rows.subquery("spread")
    duration = spread.c.end_s - spread.c.start_s  # > 0: the row spans several bins
    # |[start, end) ∩ [bin, bin + 600)|: zero in the end bin of a row ending on a bin boundary.
    overlap = least_of(spread.c.end_s, spread.c.bin_s + BIN_SECONDS) - greatest_of(
        spread.c.start_s, spread.c.bin_s
    )
    keys = [spread.c[k] for k in KEY_COLUMNS]
    return select(
        spread.c.bin_s,
        *keys,
        func.sum(as_real(spread.c.read_b) * overlap / duration).label("read_bytes"),
        func.sum(as_real(spread.c.write_b) * overlap / duration).label("write_bytes"),
        func.sum(overlap).label("active_seconds"),
        func.count().label("transfers_active"),
        func.sum(case((spread.c.bin_s == spread.c.end_bin, 1), else_=0)).label("transfers_ended"),
    ).group_by(spread.c.bin_s, *keys)


def stats_avg(
    rows: FromClause,
    source: Source,
    bins: tuple[ColumnElement[int], ColumnElement[int]] | None = None,
) -> MergeInto:
    """T_STATS_AVG: each row spread over the bins from its start to its end (SPEC §4).

    `bins` = (lo, hi) epoch seconds keeps only the bins in [lo, hi): a recompute chunk rebuilds
    its own bins from every row that overlaps them, and no others. Single-bin and multi-bin rows
    are grouped apart (the first need no spreading) and their groups added up.
    """
    parts = union_all(_single_bin(rows, bins), _multi_bin(rows, bins)).subquery("parts")
    keys = [parts.c[k] for k in KEY_COLUMNS]
    grouped = (
        select(
            parts.c.bin_s,
            *keys,
            *(func.sum(parts.c[m]).label(m) for m in MATRIX_MEASURES),
        )
        .group_by(parts.c.bin_s, *keys)
        .subquery("grouped")
    )
    contribution = select(
        from_epoch(grouped.c.bin_s).label("bin_start"),
        literal(source.label).label("source"),
        *(grouped.c[k.name] for k in keys),
        *(grouped.c[m] for m in measures(t_stats_avg)),
    )
    return MergeInto(
        t_stats_avg, contribution, keys=primary_key(t_stats_avg), add=measures(t_stats_avg)
    )


def user_activity(norm: FromClause) -> MergeInto:
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
        t_user_activity, rows, keys=primary_key(t_user_activity), add=measures(t_user_activity)
    )


# The keys after the time column, and the measures that add up (read_min/read_max do not).
ACCESS_PATTERN_KEYS = primary_key(t_stats_access_pattern)[1:]
ACCESS_PATTERN_SUMS = [
    m for m in measures(t_stats_access_pattern) if m not in ("read_min", "read_max")
]


def access_pattern(norm: FromClause) -> MergeInto:
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
        keys=primary_key(t_stats_access_pattern),
        add=ACCESS_PATTERN_SUMS,
        low=["read_min"],
        high=["read_max"],
    )


def msg_rate(norm: FromClause, source: Source) -> MergeInto:
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
        literal(source.label).label("source"),
        grouped.c.src_domain.label("domain"),
        grouped.c.messages,
        grouped.c.delay_seconds,
        grouped.c.max_delay_seconds,
    )
    return MergeInto(
        t_msg_rate,
        rows,
        keys=primary_key(t_msg_rate),
        add=["messages", "delay_seconds"],
        high=["max_delay_seconds"],
    )


def mark_days(conn: Connection, source: Source, days: Iterable[datetime]) -> None:
    """Mark the given days (midnights) for the daily roll-up: rows of them were rebuilt."""
    for day in days:
        mark = select(
            literal(day, UtcDate()).label("day"),
            literal(source.label).label("source"),
            literal(1).label("mark"),
        )
        conn.execute(MergeInto(t_dirty_day, mark, keys=["day", "source"], add=["mark"]))


def dirty_days(norm: FromClause, source: Source) -> MergeInto:
    """Mark every day the rows touch (start day to end day) for the daily roll-up."""
    # The distinct (start day, end day) spans first: a handful, however many rows.
    spans = (
        select(
            floor_to(norm.c.start_bin, DAY_SECONDS).label("start_day"),
            floor_to(norm.c.end_bin, DAY_SECONDS).label("end_day"),
        )
        .distinct()
        .subquery("spans")
    )
    offsets = t_bin_span.alias("day_span")
    day_s = spans.c.start_day + offsets.c.n * DAY_SECONDS
    days = (
        select(day_s.label("day_s"))
        .select_from(spans)
        .join(
            offsets,
            offsets.c.span == whole_quotient(spans.c.end_day - spans.c.start_day, DAY_SECONDS),
        )
        .distinct()
        .subquery("days")
    )
    rows = select(
        from_epoch(days.c.day_s).label("day"),
        literal(source.label).label("source"),
        literal(1).label("mark"),
    )
    return MergeInto(t_dirty_day, rows, keys=["day", "source"], add=["mark"])
