"""Recompute chunks: a bin range of one 10-minute job, rebuilt from raw in one transaction.

A chunk [c0, c1) makes the job's statistics rows of those bins what the raw rows with
INSERT_DATE <= the job's watermark give (where it can, writing only the rows that differ:
`dialect.OwnRowsRewrite`): the rows ending in it (user activity, access pattern), arriving in it
(message rate), and active in it (the matrix: rows ending in it, or ending up to 7 days later and
starting before c1). It leaves the SPEC §6 invariant true, so a
recompute can stop between any two chunks. Chunks are planned by the raw rows ending in them:
consecutive days whose rows fit in one chunk together are one chunk, and a day holding more raw
rows than a chunk should is split into runs of whole bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Integer,
    and_,
    bindparam,
    func,
    or_,
    select,
)

from xrdagg.db.dialect import OwnRowsRewrite, prefers_scan, tune_for_aggregation, unindexed
from xrdagg.db.tables import (
    t_msg_rate,
    t_stats_access_pattern,
    t_stats_avg,
    t_user_activity,
)
from xrdagg.db.types import UtcDate
from xrdagg.jobs import contributions
from xrdagg.jobs.specs import JobSpec
from xrdagg.jobs.stage import (
    end_date_span,
    release_stage,
    share_of_span,
    stage_resolved,
    t_stage_group,
)
from xrdagg.rules import BIN_SECONDS, MAX_TRANSFER_SECONDS, midnight, seconds_since_epoch
from xrdagg.sources import SOURCES, Source

DEFAULT_MAX_CHUNK_ROWS = 1_000_000
# Consecutive days merged into one chunk, at most: progress and `--resume` stay a month fine
# even where a month's rows would fit in one chunk.
DEFAULT_MAX_CHUNK_DAYS = 31
C0 = bindparam("chunk_lo", type_=UtcDate())
C1 = bindparam("chunk_hi", type_=UtcDate())
C1_REACH = bindparam("chunk_reach", type_=UtcDate())  # c1 + 7 days: the last end a row can have
WATERMARK = bindparam("watermark", type_=UtcDate())


@dataclass(frozen=True)
class Chunk:
    """Bins [start, end) of one 10-minute job, rebuilt in one transaction."""

    job: str
    source: str
    start: datetime
    end: datetime
    raw_rows: int  # raw rows ending in [start, end): the size that chose the chunk

    @property
    def days(self) -> list[datetime]:
        """The midnights of the days the chunk's bins belong to."""
        first = midnight(self.start)
        count = math.ceil((self.end - first) / timedelta(days=1))
        return [first + timedelta(days=i) for i in range(count)]


@dataclass
class ChunkResult:
    """One rebuilt chunk: the raw rows ending in it, and how long it took."""

    chunk: Chunk
    rows_read: int
    duration_s: float


@dataclass(frozen=True)
class ChunkStatements:
    """The statements of a chunk of one source, built once, bound to the chunk's values."""

    # Per statistics table: its rows of the chunk's bins made the staged rows' contribution.
    rewrites: tuple[OwnRowsRewrite, ...]
    stage_condition: ColumnElement[bool]
    count_ending: Executable


@cache
def chunk_statements(source: Source, by_scan: bool = False) -> ChunkStatements:
    """The statements rebuilding bins [chunk_lo, chunk_hi) of `source`, rows <= watermark;
    `by_scan`, reading the raw rows by a scan of the table rather than through its date indexes
    (`dialect.unindexed`: where the chunk holds much of the table, `rebuild_chunk`)."""
    raw = source.raw
    date = unindexed if by_scan else _as_is
    insert_date, end_date = date(raw.c.insert_date), date(raw.c.end_date)
    known = insert_date <= WATERMARK
    # Spread rows overlap the chunk: they end at or after c0, and start before c1. A row starts
    # at most 7 days before its end, so END_DATE bounds the read on its index. Written as two
    # ranges, the rows ending in the chunk and those ending later that start before c1: each
    # is an index range (the later one on (END_DATE, START_DATE), revision 0011), where one
    # range with an OR inside made PostgreSQL test the OR on every row of the 7 days (a day's
    # chunk read, 1M rows: 283 ms -> 139 ms).
    spread_condition = and_(
        known,
        or_(
            and_(end_date >= C0, end_date < C1),
            and_(end_date >= C1, end_date < C1_REACH, date(raw.c.start_date) < C1),
        ),
    )
    arriving = and_(known, insert_date >= C0, insert_date < C1)
    # One staging of every row the chunk needs; each table then takes its own part of them.
    # The chunk's bounds are whole bins, so comparing bins selects the same rows as times.
    staged = t_stage_group
    lo_s = bindparam("chunk_lo_s", type_=Integer())
    hi_s = bindparam("chunk_hi_s", type_=Integer())
    ending = select(staged).where(staged.c.end_bin >= lo_s, staged.c.end_bin < hi_s).subquery("e")
    arrived = (
        select(staged).where(staged.c.insert_bin >= lo_s, staged.c.insert_bin < hi_s).subquery("a")
    )
    contributions_of = {
        t_stats_avg: contributions.stats_avg(staged, source, (lo_s, hi_s)),
        t_user_activity: contributions.user_activity(ending),
        t_stats_access_pattern: contributions.access_pattern(ending),
        t_msg_rate: contributions.msg_rate(arrived, source),
    }
    rewrites: list[OwnRowsRewrite] = []
    for table in source.feeds:
        in_chunk = and_(table.c.bin_start >= C0, table.c.bin_start < C1)
        if "source" in table.c:
            in_chunk = and_(table.c.source == source.label, in_chunk)
        rewrites.append(OwnRowsRewrite(table, in_chunk, contributions_of[table].source))
    return ChunkStatements(
        rewrites=tuple(rewrites),
        stage_condition=or_(spread_condition, arriving),
        count_ending=select(func.coalesce(func.sum(ending.c.n_rows), 0)),
    )


def _as_is(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return column


def rebuild_chunk(conn: Connection, chunk: Chunk, watermark: datetime) -> int:
    """Rebuild the bins of `chunk` in the caller's transaction; returns raw rows it ended."""
    source = SOURCES[chunk.source]
    # A chunk holding much of the raw table (by its share of the END_DATE span) reads it by a
    # scan where the database would go through the date indexes anyway (SQLite: each row found
    # there is looked up in the table again; 1M raw rows, a chunk of every day: its staging
    # 10.3-10.5 s by the indexes, 8.4-8.5 s by a scan, a quarter of them 2.7-3.0 s and 2.5 s).
    span = end_date_span(conn, source)
    by_scan = prefers_scan(conn.dialect.name, share_of_span(span, [(chunk.start, chunk.end)]))
    statements = chunk_statements(source, by_scan)
    params = {
        "chunk_lo": chunk.start,
        "chunk_hi": chunk.end,
        "chunk_reach": chunk.end + timedelta(seconds=MAX_TRANSFER_SECONDS),
        "chunk_lo_s": seconds_since_epoch(chunk.start),
        "chunk_hi_s": seconds_since_epoch(chunk.end),
        "watermark": watermark,
    }
    tune_for_aggregation(conn)
    stage_resolved(conn, source, statements.stage_condition, params, new_data=False)
    for rewrite in statements.rewrites:
        rewrite.execute(conn, params)
    contributions.mark_days(conn, source, chunk.days, rebuilt=True)
    rows = int(conn.execute(statements.count_ending, params).scalar_one())
    release_stage(conn)
    return rows


# --- planning ---------------------------------------------------------------------------------


def plan_chunks(
    conn: Connection,
    jobs: Sequence[JobSpec],
    day_from: datetime,
    day_to: datetime,
    max_rows: int = DEFAULT_MAX_CHUNK_ROWS,
    *,
    max_days: int = DEFAULT_MAX_CHUNK_DAYS,
    workers: int = 1,
) -> list[Chunk]:
    """The chunks of each job over the days [day_from, day_to], sized by the raw rows ending in
    them: consecutive days whose rows together are at most `max_rows` (at most `max_days` of
    them) are one chunk, and a day with more than `max_rows` is split into equal runs of whole
    10-minute bins. A chunk of several days holds at most a `workers`-th of the job's rows, so
    that the workers have chunks to take (a day is not split for them).

    Every chunk reads its own rows and, for the rows active in it, the 7 days after it, and
    stages them in one statement: a few large chunks cost less than many small ones (a recompute
    of 1M rows over 4 days on PostgreSQL, a chunk a day against one: 7.6-8.0 s against 6.3-6.4
    s; `docs/decisions.md`, "Chunks are sized by raw rows")."""
    chunks: list[Chunk] = []
    for job in jobs:
        if job.source is None:
            continue
        days = _rows_per_day(conn, SOURCES[job.source], day_from, day_to)
        merge_up_to = min(max_rows, math.ceil(sum(rows for _, rows in days) / max(workers, 1)))
        chunks += _job_chunks(job.name, job.source, days, max_rows, max_days, merge_up_to)
    return chunks


def _job_chunks(
    job: str,
    source: str,
    days: Sequence[tuple[datetime, int]],
    max_rows: int,
    max_days: int,
    merge_up_to: int,
) -> list[Chunk]:
    """The chunks of one job over consecutive `days` (each with its raw rows): runs of days
    with at most `merge_up_to` rows and `max_days` days, and the days with more than `max_rows`
    split."""
    chunks: list[Chunk] = []
    first: datetime | None = None  # the first day of the run of days being merged
    run_days = run_rows = 0
    for day, rows in days:
        mergeable = rows <= max_rows
        if first is not None and (
            not mergeable or run_days >= max_days or run_rows + rows > merge_up_to
        ):
            chunks.append(Chunk(job, source, first, day, run_rows))  # the run ends at this day
            first = None
        if not mergeable:
            chunks += _split_day(job, source, day, rows, max_rows)
        elif first is None:
            first, run_days, run_rows = day, 1, rows
        else:
            run_days, run_rows = run_days + 1, run_rows + rows
    if first is not None:
        chunks.append(Chunk(job, source, first, days[-1][0] + timedelta(days=1), run_rows))
    return chunks


def _rows_per_day(
    conn: Connection, source: Source, day_from: datetime, day_to: datetime
) -> list[tuple[datetime, int]]:
    """Each day of [day_from, day_to] and the raw rows of `source` ending in it (one count a
    day, which the END_DATE index answers)."""
    raw = source.raw
    days = []
    day = day_from
    while day <= day_to:
        nxt = day + timedelta(days=1)
        rows = conn.execute(
            select(func.count()).select_from(raw).where(raw.c.end_date >= day, raw.c.end_date < nxt)
        ).scalar_one()
        days.append((day, int(rows)))
        day = nxt
    return days


def _split_day(job: str, source: str, day: datetime, rows: int, max_rows: int) -> list[Chunk]:
    """`day` in equal runs of whole 10-minute bins, each with about `max_rows` rows or fewer."""
    parts = math.ceil(rows / max_rows)
    bins_per_part = math.ceil(144 / parts)
    end_of_day = day + timedelta(days=1)
    chunks = []
    start = day
    while start < end_of_day:
        end = min(start + timedelta(seconds=bins_per_part * BIN_SECONDS), end_of_day)
        chunks.append(Chunk(job, source, start, end, rows // parts))
        start = end
    return chunks
