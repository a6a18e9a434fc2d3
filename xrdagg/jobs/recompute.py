"""`xrdagg recompute`: rebuild the statistics of a range of days from raw, in chunks.

Each chunk is one transaction over a bin range [c0, c1) of one 10-minute job: delete the job's
rows of those bins, insert them again from the raw rows with INSERT_DATE <= the job's watermark,
record the chunk as done in the ledger. Every chunk leaves the SPEC §6 invariant true, so a
recompute can stop between any two chunks; `--resume` does the rest.

While it runs, the jobs it rebuilds are *paused* (their runs skip): their watermarks stay where
the recompute read them, and no run merges into a bin a chunk is rebuilding. Chunks of one
recompute never share bins, so they run in parallel on several connections (--workers).
The daily tables of the touched days are rolled up by the daily job at the end.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Executable,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from xrdagg.db.dialect import claim_first, db_now, lock_row
from xrdagg.db.tables import (
    BIN_SECONDS,
    MAX_TRANSFER_SECONDS,
    t_agent,
    t_msg_rate,
    t_recompute,
    t_recompute_chunk,
    t_stats_access_pattern,
    t_stats_avg,
    t_user_activity,
)
from xrdagg.db.types import UtcDate
from xrdagg.errors import XrdaggError
from xrdagg.jobs import contributions
from xrdagg.jobs.runner import BEGINNING
from xrdagg.jobs.specs import JobSpec
from xrdagg.jobs.stage import fill_stage, release_stage, staged_rows
from xrdagg.sources import SOURCES, Source
from xrdagg.topology.store import fill_resolution_cache, read_resolver

log = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_ROWS = 1_000_000
C0 = bindparam("chunk_lo", type_=UtcDate())
C1 = bindparam("chunk_hi", type_=UtcDate())
C1_REACH = bindparam("chunk_reach", type_=UtcDate())  # c1 + 7 days: the last end a row can have
WATERMARK = bindparam("watermark", type_=UtcDate())


@dataclass(frozen=True)
class Chunk:
    job: str
    source: str
    start: datetime
    end: datetime
    raw_rows: int  # raw rows ending in [start, end): the size that chose the chunk

    @property
    def days(self) -> list[datetime]:
        first = self.start.replace(hour=0, minute=0, second=0)
        count = math.ceil((self.end - first) / timedelta(days=1))
        return [first + timedelta(days=i) for i in range(count)]


@dataclass
class ChunkResult:
    chunk: Chunk
    rows_read: int
    duration_s: float


@dataclass(frozen=True)
class ChunkStatements:
    deletes: tuple[Executable, ...]
    # Plain INSERTs: the chunk's bins were just emptied, so no key can collide.
    inserts: tuple[Executable, ...]
    stage_condition: ColumnElement[bool]
    count_ending: Executable


@cache
def chunk_statements(source: Source) -> ChunkStatements:
    """The statements rebuilding bins [chunk_lo, chunk_hi) of `source`, rows <= watermark."""
    raw = source.raw
    known = raw.c.insert_date <= WATERMARK
    lo_s = bindparam("chunk_lo_s", type_=Integer())
    hi_s = bindparam("chunk_hi_s", type_=Integer())
    # Spread rows overlap the chunk: they end at or after c0, and start before c1. A row starts
    # at most 7 days before its end, so END_DATE bounds the read on its index.
    spread_condition = and_(
        known,
        raw.c.end_date >= C0,
        raw.c.end_date < C1_REACH,
        or_(raw.c.end_date < C1, raw.c.start_date < C1),
    )
    arriving = and_(known, raw.c.insert_date >= C0, raw.c.insert_date < C1)
    # One staging of every row the chunk needs; each table then takes its own part of them.
    staged = staged_rows()
    ending = select(staged).where(staged.c.end_s >= lo_s, staged.c.end_s < hi_s).subquery("e")
    arrived = (
        select(staged).where(staged.c.insert_s >= lo_s, staged.c.insert_s < hi_s).subquery("a")
    )
    contributions_of = {
        t_stats_avg: contributions.stats_avg(staged, source, (lo_s, hi_s)),
        t_user_activity: contributions.user_activity(ending),
        t_stats_access_pattern: contributions.access_pattern(ending),
        t_msg_rate: contributions.msg_rate(arrived, source),
    }
    deletes: list[Executable] = []
    for table in source.feeds:
        in_chunk = and_(table.c.bin_start >= C0, table.c.bin_start < C1)
        if "source" in table.c:
            in_chunk = and_(table.c.source == source.label, in_chunk)
        deletes.append(delete(table).where(in_chunk))
    return ChunkStatements(
        deletes=tuple(deletes),
        inserts=tuple(contributions_of[t].as_insert() for t in source.feeds),
        stage_condition=or_(spread_condition, arriving),
        count_ending=select(func.count()).select_from(ending),
    )


def rebuild_chunk(conn: Connection, chunk: Chunk, watermark: datetime) -> int:
    """Rebuild the bins of `chunk` in the caller's transaction; returns raw rows it ended."""
    source = SOURCES[chunk.source]
    statements = chunk_statements(source)
    params = {
        "chunk_lo": chunk.start,
        "chunk_hi": chunk.end,
        "chunk_reach": chunk.end + timedelta(seconds=MAX_TRANSFER_SECONDS),
        "chunk_lo_s": _epoch(chunk.start),
        "chunk_hi_s": _epoch(chunk.end),
        "watermark": watermark,
    }
    # The cache fill runs the condition as its own query: bind the chunk's values into it.
    condition = statements.stage_condition.params(params)
    fill_resolution_cache(conn, read_resolver(conn), {chunk.source: condition})
    for statement in statements.deletes:
        conn.execute(statement, params)
    fill_stage(conn, source, statements.stage_condition, params)
    for statement in statements.inserts:
        conn.execute(statement, params)
    contributions.mark_days(conn, source, chunk.days)
    rows = int(conn.execute(statements.count_ending, params).scalar_one())
    release_stage(conn)
    return rows


def _pause_label(recompute_id: int) -> str:
    return f"recompute {recompute_id}"


def _epoch(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1)).total_seconds())


def claim_next_chunk(conn: Connection, recompute_id: int) -> Any:
    """Lock and return the next PENDING chunk of the recompute that no other transaction holds
    (None when there is none), for the rest of the caller's transaction."""
    pending = (
        select(t_recompute_chunk)
        .where(
            t_recompute_chunk.c.recompute_id == recompute_id,
            t_recompute_chunk.c.state == "PENDING",
        )
        .order_by(t_recompute_chunk.c.chunk_start, t_recompute_chunk.c.job_name)
    )
    return claim_first(conn, pending, t_recompute_chunk.c.recompute_id == recompute_id)


# --- planning ---------------------------------------------------------------------------------


def plan_chunks(
    conn: Connection,
    jobs: Sequence[JobSpec],
    day_from: datetime,
    day_to: datetime,
    max_rows: int = DEFAULT_MAX_CHUNK_ROWS,
) -> list[Chunk]:
    """A chunk per job and day in [day_from, day_to]; a day with more than `max_rows` raw rows
    ending in it is split into equal runs of whole 10-minute bins."""
    chunks: list[Chunk] = []
    for job in jobs:
        if job.source is None:
            continue
        raw = SOURCES[job.source].raw
        day = day_from
        while day <= day_to:
            nxt = day + timedelta(days=1)
            rows = conn.execute(
                select(func.count())
                .select_from(raw)
                .where(raw.c.end_date >= day, raw.c.end_date < nxt)
            ).scalar_one()
            parts = max(1, math.ceil(rows / max_rows))
            bins_per_part = math.ceil(144 / parts)
            start = day
            while start < nxt:
                end = min(start + timedelta(seconds=bins_per_part * BIN_SECONDS), nxt)
                chunks.append(Chunk(job.name, job.source, start, end, rows // parts))
                start = end
            day = nxt
    return chunks


# --- pausing the incremental jobs -------------------------------------------------------------


def pause_jobs(engine: Engine, jobs: Sequence[JobSpec], by: str) -> None:
    """Mark each job paused `by` someone, after waiting for a run in flight to finish."""
    for job in jobs:
        with engine.begin() as conn:
            lock_row(conn, t_agent, t_agent.c.job_name == job.name, wait=True)
            conn.execute(
                update(t_agent)
                .where(t_agent.c.job_name == job.name)
                .values(paused_by=by[:256], paused_since=db_now())
            )


def resume_jobs(conn: Connection, by: str) -> None:
    conn.execute(
        update(t_agent)
        .where(t_agent.c.paused_by == by[:256])
        .values(paused_by=None, paused_since=None)
    )


# --- running ----------------------------------------------------------------------------------


ProgressCallback = Callable[[ChunkResult, int, int], None]


class Recompute:
    """One `xrdagg recompute`, new or resumed, recorded in the ledger."""

    def __init__(self, engine: Engine, jobs: Sequence[JobSpec]) -> None:
        self.engine = engine
        self.jobs = [j for j in jobs if j.source is not None]
        self.host = socket.gethostname()

    def start(self, day_from: datetime, day_to: datetime, max_rows: int) -> tuple[int, list[Chunk]]:
        """Pause the jobs, plan the chunks and record them; returns (recompute id, chunks)."""
        with self.engine.begin() as conn:
            recompute_id = conn.execute(
                insert(t_recompute)
                .values(
                    created_at=db_now(),
                    host_name=self.host[:256],
                    day_from=day_from,
                    day_to=day_to,
                    jobs=",".join(j.name for j in self.jobs),
                    state="RUNNING",
                )
                .returning(t_recompute.c.recompute_id)
            ).scalar_one()
            chunks = plan_chunks(conn, self.jobs, day_from, day_to, max_rows)
            if chunks:
                conn.execute(
                    insert(t_recompute_chunk),
                    [
                        {
                            "recompute_id": recompute_id,
                            "job_name": c.job,
                            "chunk_start": c.start,
                            "chunk_end": c.end,
                            "state": "PENDING",
                            "rows_read": c.raw_rows,
                        }
                        for c in chunks
                    ],
                )
        self._pause(recompute_id)
        return recompute_id, chunks

    def resume(self) -> tuple[int, list[Chunk]]:
        """The newest unfinished recompute and its chunks still to do."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t_recompute)
                .where(t_recompute.c.state != "DONE")
                .order_by(t_recompute.c.recompute_id.desc())
                .limit(1)
            ).first()
            if row is None:
                raise XrdaggError("no unfinished recompute to resume")
            names = row.jobs.split(",")
            self.jobs = [j for j in self.jobs if j.name in names]
            sources = {j.name: j.source for j in self.jobs}
            pending = conn.execute(
                select(t_recompute_chunk)
                .where(
                    t_recompute_chunk.c.recompute_id == row.recompute_id,
                    t_recompute_chunk.c.state == "PENDING",
                )
                .order_by(t_recompute_chunk.c.chunk_start, t_recompute_chunk.c.job_name)
            ).all()
        chunks = [
            Chunk(
                c.job_name, str(sources[c.job_name]), c.chunk_start, c.chunk_end, c.rows_read or 0
            )
            for c in pending
        ]
        self._pause(row.recompute_id)
        return row.recompute_id, chunks

    def _pause(self, recompute_id: int) -> None:
        # The same label from every host that joins the recompute: whichever finishes it
        # resumes the jobs (its host is in the ledger).
        pause_jobs(self.engine, self.jobs, _pause_label(recompute_id))

    def watermarks(self) -> dict[str, datetime | None]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t_agent.c.job_name, t_agent.c.watermark)).all()
        return {r.job_name: r.watermark for r in rows}

    def run(
        self,
        recompute_id: int,
        chunks: Sequence[Chunk],
        *,
        workers: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[ChunkResult]:
        """Rebuild chunks of the recompute until none is left to take; then finish it (unpause
        the jobs) if no chunk is left at all.

        Chunks are taken from the ledger, not from `chunks` (which only sizes the progress): each
        worker, here or in a `recompute --resume` on another host, locks the next PENDING chunk
        with SKIP LOCKED for the length of the transaction that rebuilds it, so each chunk is
        rebuilt by exactly one of them, and a worker that dies hands its chunk back by rolling
        back.
        """
        watermarks = self.watermarks()
        sources = {j.name: str(j.source) for j in self.jobs}
        results: list[ChunkResult] = []
        lock = threading.Lock()

        def work() -> None:
            while True:
                started = time.monotonic()
                with self.engine.begin() as conn:
                    claimed = claim_next_chunk(conn, recompute_id)
                    if claimed is None:
                        return
                    chunk = Chunk(
                        claimed.job_name,
                        sources[claimed.job_name],
                        claimed.chunk_start,
                        claimed.chunk_end,
                        claimed.rows_read or 0,
                    )
                    # A job that never ran counts no row: its chunk is only cleared.
                    rows = rebuild_chunk(conn, chunk, watermarks.get(chunk.job) or BEGINNING)
                    duration = time.monotonic() - started
                    conn.execute(
                        update(t_recompute_chunk)
                        .where(
                            t_recompute_chunk.c.recompute_id == recompute_id,
                            t_recompute_chunk.c.job_name == chunk.job,
                            t_recompute_chunk.c.chunk_start == chunk.start,
                        )
                        .values(
                            state="DONE",
                            rows_read=rows,
                            duration_s=round(duration, 3),
                            finished_at=db_now(),
                        )
                    )
                with lock:
                    results.append(ChunkResult(chunk, rows, duration))
                    if progress:
                        progress(results[-1], len(results), len(chunks))

        if workers <= 1:
            work()
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recompute") as pool:
                for future in [pool.submit(work) for _ in range(workers)]:
                    future.result()
        if self.pending(recompute_id) == 0:
            self.finish(recompute_id)
        return results

    def pending(self, recompute_id: int) -> int:
        """Chunks of the recompute not done yet (PENDING, or being rebuilt elsewhere)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(t_recompute_chunk)
                    .where(
                        t_recompute_chunk.c.recompute_id == recompute_id,
                        t_recompute_chunk.c.state != "DONE",
                    )
                ).scalar_one()
            )

    def finish(self, recompute_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t_recompute)
                .where(t_recompute.c.recompute_id == recompute_id)
                .values(state="DONE", finished_at=db_now())
            )
            resume_jobs(conn, _pause_label(recompute_id))

    def interrupted(self, recompute_id: int) -> None:
        """Ctrl-C or an error: the done chunks stay (each kept the invariant); the jobs stay
        paused until `--resume` finishes the rest."""
        with self.engine.begin() as conn:
            conn.execute(
                update(t_recompute)
                .where(t_recompute.c.recompute_id == recompute_id)
                .values(state="INTERRUPTED")
            )
