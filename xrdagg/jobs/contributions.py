"""What a set of normalised rows adds to each statistics table, as MERGE statements (SPEC §4-5).

Each function takes the staged groups of rows (`xrdagg.jobs.stage.t_stage_group`, or any
selectable with its columns) and returns one `MergeInto`: the rows' contribution grouped by the
table's keys, summed into existing rows (min/max combined). Because
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
)

from xrdagg.db.dialect import MergeInto, floor_to, from_epoch, whole_quotient
from xrdagg.db.tables import (
    t_bin_span,
    t_dirty_day,
    t_msg_rate,
    t_stats_access_pattern,
    t_stats_avg,
    t_user_activity,
)
from xrdagg.db.types import UtcDate
from xrdagg.jobs.stage import FRACTION_COUNTS
from xrdagg.rules import BIN_SECONDS, DAY_SECONDS, at_epoch_seconds
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


def stats_avg(
    groups: FromClause,
    source: Source,
    bins: tuple[ColumnElement[int], ColumnElement[int]] | None = None,
) -> MergeInto:
    """T_STATS_AVG: each row spread over the bins from its start to its end (SPEC §4).

    Each staged group is joined to T_BIN_SPAN (on equality, which every database hashes) for one
    row per bin it touches. A single-bin group puts its totals in its one bin; a multi-bin group
    its last-bin sums in its end bin, its first-bin sums in its start bin and its per-bin sums
    in every bin in between. `bins` = (lo, hi) epoch seconds keeps only the bins in [lo, hi): a
    recompute chunk rebuilds its own bins from every row that overlaps them, and no others.
    """
    g = groups.c
    offsets = t_bin_span.alias("bin_span")
    bin_s = g.start_bin + offsets.c.n * BIN_SECONDS
    spread_rows = (
        select(bin_s.label("bin_s"), groups)
        .select_from(groups)
        .join(offsets, offsets.c.span == whole_quotient(g.end_bin - g.start_bin, BIN_SECONDS))
    )
    if bins is not None:
        spread_rows = spread_rows.where(bin_s >= bins[0], bin_s < bins[1])
    spread = spread_rows.subquery("spread")
    s = spread.c
    single = s.start_bin == s.end_bin
    at_end, at_start = s.bin_s == s.end_bin, s.bin_s == s.start_bin

    def part(whole: Any, last: Any, first: Any, between: Any) -> ColumnElement[Any]:
        return func.sum(case((single, whole), (at_end, last), (at_start, first), else_=between))

    keys = [s[k] for k in KEY_COLUMNS]
    contribution = select(
        from_epoch(s.bin_s).label("bin_start"),
        literal(source.label).label("source"),
        *keys,
        part(s.read_b, s.read_last, s.read_first, s.read_mid).label("read_bytes"),
        part(s.write_b, s.write_last, s.write_first, s.write_mid).label("write_bytes"),
        part(s.active_last, s.active_last, s.active_first, BIN_SECONDS * s.n_rows).label(
            "active_seconds"
        ),
        func.sum(s.n_rows).label("transfers_active"),
        func.sum(case((at_end, s.n_rows), else_=0)).label("transfers_ended"),
    ).group_by(s.bin_s, *keys)
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
            func.sum(norm.c.n_rows).label("accesses"),
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
    keys = [norm.c.src_site, norm.c.dst_site, norm.c.vo]
    grouped = (
        select(
            norm.c.end_bin,
            *keys,
            func.sum(norm.c.n_rows).label("accesses"),
            func.sum(norm.c.file_size).label("file_size"),
            func.sum(norm.c.read_b).label("read_bytes"),
            func.sum(norm.c.read_single_bytes).label("read_single_bytes"),
            func.sum(norm.c.read_single_ops).label("read_single_ops"),
            func.sum(norm.c.read_vector_bytes).label("read_vector_bytes"),
            func.sum(norm.c.read_vector_ops).label("read_vector_ops"),
            func.sum(norm.c.write_b).label("write_bytes"),
            func.sum(norm.c.write_ops).label("write_ops"),
            func.min(norm.c.read_min).label("read_min"),
            func.max(norm.c.read_max).label("read_max"),
            *(func.sum(norm.c[name]).label(name) for name in FRACTION_COUNTS),
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
    grouped = (
        select(
            norm.c.insert_bin,
            norm.c.src_domain,
            func.sum(norm.c.n_rows).label("messages"),
            func.sum(norm.c.delay_seconds).label("delay_seconds"),
            func.max(norm.c.max_delay_seconds).label("max_delay_seconds"),
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


# A day's dirty mark counts the writes into its 10-minute rows since its last roll-up: 1 for
# each incremental run, REBUILT_MARK for each rebuild of the whole day from raw (a recompute
# chunk, an audit repair). A day whose mark is below it was only added to (`daily.run`).
REBUILT_MARK = 1_000_000_000


def mark_days(conn: Connection, source: Source, days: Iterable[datetime], *, rebuilt: bool) -> None:
    """Mark the given days (midnights) for the daily roll-up: rows of them were written, by a
    rebuild of the whole days from raw (`rebuilt`) or added by an incremental run."""
    for day in days:
        mark = select(
            literal(day, UtcDate()).label("day"),
            literal(source.label).label("source"),
            literal(REBUILT_MARK if rebuilt else 1).label("mark"),
        )
        conn.execute(MergeInto(t_dirty_day, mark, keys=["day", "source"], add=["mark"]))


def day_spans(groups: FromClause) -> Select[Any]:
    """The distinct (start day, end day) of the staged rows, epoch seconds: a handful, however
    many rows."""
    return select(
        floor_to(groups.c.start_bin, DAY_SECONDS).label("start_day"),
        floor_to(groups.c.end_bin, DAY_SECONDS).label("end_day"),
    ).distinct()


def mark_touched_days(conn: Connection, source: Source, spans: Select[Any]) -> None:
    """Mark every day the staged rows touch (start day to end day) for the daily roll-up."""
    days: set[int] = set()
    for start_day, end_day in conn.execute(spans):
        days.update(range(int(start_day), int(end_day) + 1, DAY_SECONDS))
    mark_days(conn, source, (at_epoch_seconds(day) for day in sorted(days)), rebuilt=False)
