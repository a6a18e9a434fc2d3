"""`xrdagg recompute`: rebuild the statistics of a range of days from raw, in chunks.

A recompute is a ledger (T_RECOMPUTE, T_RECOMPUTE_CHUNK) of chunks (`xrdagg.jobs.chunks`), each
rebuilt in its own transaction and marked done in it. Every chunk leaves the SPEC §6 invariant
true, so a recompute can stop between any two chunks; `--resume` does the rest, and a resume on
another host while it runs shares the work (chunks are claimed with SKIP LOCKED).

While it runs, the jobs it rebuilds are *paused* (their runs skip: `xrdagg.jobs.pause`): their
watermarks stay where the recompute read them, and no run merges into a bin a chunk is
rebuilding. The pause names the days rebuilt, so a second recompute (or an apply) over any of
those days is refused, naming this one: two chunks rebuilding one bin at once would both delete
before either inserts, and count it twice. Each chunk renews the pause in its own transaction,
so a chunk never runs without it. When the process ends, however it ends, its pause goes (a
signal releases it; a kill -9 lets its lease expire): the runs then go on from the watermark,
which keeps the invariant, and `--resume` reads the watermarks again. Chunks of one recompute
never share bins, so they run in parallel on several connections (--workers).
The daily tables of the touched days are rolled up by the daily job at the end.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    exc,
    func,
    insert,
    select,
    update,
)

from xrdagg.db.dialect import (
    CHUNK_ISOLATION,
    claim_first,
    db_now,
    is_serialization_failure,
    isolated_transaction,
)
from xrdagg.db.tables import (
    t_recompute,
    t_recompute_chunk,
)
from xrdagg.errors import XrdaggError
from xrdagg.jobs import agent
from xrdagg.jobs.chunks import (
    DEFAULT_MAX_CHUNK_DAYS,
    Chunk,
    ChunkResult,
    plan_chunks,
    rebuild_chunk,
)
from xrdagg.jobs.kind import BEGINNING
from xrdagg.jobs.pause import DEFAULT_LEASE_SECONDS, PauseLease, RebuildBusyError, release_owner
from xrdagg.jobs.specs import JobSpec

log = logging.getLogger(__name__)


# A worker takes a chunk again after a deadlock or a serialization failure (its transaction rolled
# back: nothing of it stays) up to this many times in a row, pausing a little longer each time.
MAX_CHUNK_CONFLICTS = 5
CHUNK_CONFLICT_PAUSE_S = 0.5


def _pause_label(recompute_id: int) -> str:
    return f"recompute {recompute_id}"


def claim_next_chunk(conn: Connection, recompute_id: int) -> Any:
    """Lock and return the next PENDING chunk of the recompute that no other transaction holds
    (None when there is none), for the rest of the caller's transaction.

    In the ledger's primary-key order (job, then chunk start): InnoDB locks every row it reads,
    and ordered otherwise it read and sorted them all, so the first claimer locked every pending
    chunk and the other workers, finding none, stopped (MariaDB, `--workers 4`: 1.00x; now the
    workers run at once, though each chunk's DELETE then waits for its neighbour's inserts).
    """
    pending = (
        select(t_recompute_chunk)
        .where(
            t_recompute_chunk.c.recompute_id == recompute_id,
            t_recompute_chunk.c.state == "PENDING",
        )
        .order_by(t_recompute_chunk.c.job_name, t_recompute_chunk.c.chunk_start)
    )
    return claim_first(conn, pending, t_recompute_chunk.c.recompute_id == recompute_id)


# --- running ----------------------------------------------------------------------------------


ProgressCallback = Callable[[ChunkResult, int, int], None]


class Recompute:
    """One `xrdagg recompute`, new or resumed, recorded in the ledger."""

    def __init__(
        self,
        engine: Engine,
        jobs: Sequence[JobSpec],
        *,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.engine = engine
        self.jobs = [j for j in jobs if j.source is not None]
        self.host = socket.gethostname()
        self.lease_seconds = lease_seconds
        self.lease: PauseLease | None = None

    def start(
        self,
        day_from: datetime,
        day_to: datetime,
        max_rows: int,
        *,
        max_days: int = DEFAULT_MAX_CHUNK_DAYS,
        workers: int = 1,
    ) -> tuple[int, list[Chunk]]:
        """Pause the jobs, plan the chunks (`plan_chunks`: for `workers` at once) and record
        them; returns (recompute id, chunks)."""
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
            chunks = plan_chunks(
                conn, self.jobs, day_from, day_to, max_rows, max_days=max_days, workers=workers
            )
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
        try:
            self._pause(recompute_id, day_from, day_to)
        except RebuildBusyError:
            # Refused before it touched anything: no ledger for `--resume` to find.
            with self.engine.begin() as conn:
                for table in (t_recompute_chunk, t_recompute):
                    conn.execute(delete(table).where(table.c.recompute_id == recompute_id))
            raise
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
        self._pause(row.recompute_id, row.day_from, row.day_to)
        return row.recompute_id, chunks

    def _pause(self, recompute_id: int, day_from: datetime, day_to: datetime) -> None:
        # The same owner from every process that joins the recompute (they share its chunks,
        # not its days with anyone else); each holds its own row, and whichever finishes the
        # recompute removes them all.
        self.lease = PauseLease(
            self.engine,
            [j.name for j in self.jobs],
            _pause_label(recompute_id),
            reason=f"rebuilding {day_from:%Y-%m-%d}..{day_to:%Y-%m-%d}",
            day_from=day_from,
            day_to=day_to,
            lease_seconds=self.lease_seconds,
        ).acquire()

    def release(self) -> None:
        """Lift this process's pause (the end of the process, however it ends)."""
        if self.lease is not None:
            self.lease.release()

    def watermarks(self) -> dict[str, datetime | None]:
        """Every job's watermark now: what the recompute rebuilds up to."""
        with self.engine.connect() as conn:
            return agent.watermarks(conn)

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
            conflicts = 0
            while True:
                try:
                    done = self._rebuild_next(recompute_id, sources, watermarks)
                except exc.DBAPIError as error:
                    # A deadlock or a lost snapshot is no fault of the chunk, and rolling back
                    # gave it back to the ledger: take it (or another) again, a few times.
                    if not is_serialization_failure(error) or conflicts >= MAX_CHUNK_CONFLICTS:
                        raise
                    conflicts += 1
                    log.warning(
                        "recompute %s: a chunk lost a conflict with a concurrent transaction "
                        "(%s); rolled back, taking it again",
                        recompute_id,
                        str(error.orig).splitlines()[0],
                    )
                    time.sleep(CHUNK_CONFLICT_PAUSE_S * conflicts)
                    continue
                if done is None:
                    return
                conflicts = 0
                with lock:
                    results.append(done)
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

    def _rebuild_next(
        self,
        recompute_id: int,
        sources: dict[str, str],
        watermarks: dict[str, datetime | None],
    ) -> ChunkResult | None:
        """Claim the next chunk, rebuild it and mark it done, in one transaction; None when no
        chunk is left to take."""
        started = time.monotonic()
        with isolated_transaction(self.engine, CHUNK_ISOLATION) as conn:
            claimed = claim_next_chunk(conn, recompute_id)
            if claimed is None:
                return None
            if self.lease is not None:
                self.lease.verify(conn)  # the jobs are still paused, by this process
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
        return ChunkResult(chunk, rows, duration)

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
        """Mark the recompute done and lift its pause on the jobs (every process's)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(t_recompute)
                .where(t_recompute.c.recompute_id == recompute_id)
                .values(state="DONE", finished_at=db_now())
            )
            release_owner(conn, _pause_label(recompute_id))
        if self.lease is not None:
            self.lease.release()

    def interrupted(self, recompute_id: int) -> None:
        """Ctrl-C, a signal or an error: the done chunks stay (each kept the invariant); the
        caller releases the pause, and `--resume` does the rest."""
        with self.engine.begin() as conn:
            conn.execute(
                update(t_recompute)
                .where(t_recompute.c.recompute_id == recompute_id)
                .values(state="INTERRUPTED")
            )
