"""Recompute scales out: several `recompute` processes (on one host or many) share one ledger,
each chunk is rebuilt by exactly one of them, and the result is the from-scratch computation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.helpers import Harness, check_invariant, generated_rows
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.dialect import CHUNK_ISOLATION, isolated_transaction, lock_timeout
from xrdagg.db.tables import t_job_pause, t_recompute, t_recompute_chunk
from xrdagg.jobs import agent
from xrdagg.jobs.chunks import Chunk, rebuild_chunk
from xrdagg.jobs.recompute import Recompute, claim_next_chunk

T0 = datetime(2024, 3, 1)


def _both_sources_counted(
    db: Harness, fed_rows: int, eos_rows: int, seed: int
) -> tuple[list[dict], list[dict]]:
    """FED and EOS rows over three days, counted by the incremental jobs."""
    fed = generated_rows(fed_rows, start=T0, days=3, seed=seed)
    eos = generated_rows(eos_rows, start=T0, days=3, seed=seed + 1, source="eos")
    db.insert_raw("fed", fed)
    db.insert_raw("eos", eos)
    db.run("fed10", T0 + timedelta(days=10))
    db.run("eos10", T0 + timedelta(days=10))
    return fed, eos


def test_two_processes_share_one_recompute_and_rebuild_each_chunk_once(db: Harness) -> None:
    fed, eos = _both_sources_counted(db, 4000, 1500, seed=21)
    # One host plans the recompute (small chunks: many to share); two processes then take
    # chunks from its ledger at the same time, as `recompute --resume` on two hosts would.
    recompute = Recompute(db.engine, [db.jobs["fed10"], db.jobs["eos10"]])
    recompute_id, chunks = recompute.start(T0 - timedelta(days=1), T0 + timedelta(days=3), 300)
    assert len(chunks) > 20
    workers = "1" if db.dialect == "sqlite" else "2"  # SQLite has one writer: no threads
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "xrdagg.cli", "recompute", "--resume", "--workers", workers],
            cwd=PROJECT_ROOT,
            env={**os.environ, **db.backend.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    rebuilt = [
        line
        for output in outputs
        for line in output.splitlines()
        if re.match(r"chunk \d+/\d+ ", line)
    ]
    # Every chunk rebuilt, and by one process only (a rebuild is idempotent, so only the
    # progress lines can tell a chunk done twice).
    assert len(rebuilt) == len(chunks), outputs
    with db.engine.connect() as conn:
        states = conn.execute(
            select(t_recompute_chunk.c.state).where(
                t_recompute_chunk.c.recompute_id == recompute_id
            )
        ).scalars()
        assert set(states) == {"DONE"}
        assert (
            conn.execute(
                select(t_recompute.c.state).where(t_recompute.c.recompute_id == recompute_id)
            ).scalar_one()
            == "DONE"
        )
        assert conn.execute(select(t_job_pause)).all() == []  # every process's pause lifted
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed] + [("eos", r) for r in eos])


def test_a_chunk_in_flight_leaves_the_others_to_take(db: Harness) -> None:
    # While one transaction holds a chunk, another claims the next one, not nothing: on MariaDB a
    # claim ordered against the ledger's key locked every pending chunk, and the other workers
    # stopped as if the recompute were done.
    if db.dialect == "sqlite":
        pytest.skip("SQLite has one writer: its claimers take turns (the test above)")
    db.insert_raw("fed", generated_rows(600, start=T0, days=3, seed=23))
    db.run("fed10", T0 + timedelta(days=10))
    recompute = Recompute(db.engine, [db.jobs["fed10"]])
    recompute_id, chunks = recompute.start(T0, T0 + timedelta(days=2), 1_000_000, max_days=1)
    try:
        assert len(chunks) == 3
        with (
            db.engine.connect() as first,
            db.engine.connect() as second,
            first.begin(),
            second.begin(),
        ):
            held = claim_next_chunk(first, recompute_id)
            taken = claim_next_chunk(second, recompute_id)
            assert held is not None and taken is not None
            assert taken.chunk_start != held.chunk_start
    finally:
        recompute.release()


def test_a_chunk_in_flight_holds_up_no_other_chunk(db: Harness) -> None:
    # Chunks rebuild disjoint bins, so none may wait for another. InnoDB's range DELETE locked
    # every row its scan read, in READ COMMITTED too: the other source's rows of the same bins
    # (the statistics keys lead with BIN_START) and the first row after the range, the next
    # chunk's. Each chunk waited for its neighbours to commit, and a 4-worker recompute of 1M rows
    # on MariaDB failed with a lock wait timeout.
    if db.dialect == "sqlite":
        pytest.skip("SQLite has one writer: its chunks never run at once")
    fed, eos = _both_sources_counted(db, 900, 600, seed=24)
    with db.engine.connect() as conn:
        watermarks = agent.watermarks(conn)

    def chunk(job: str, day: int) -> Chunk:
        start = T0 + timedelta(days=day)
        return Chunk(job, job[:3], start, start + timedelta(days=1), 0)

    with isolated_transaction(db.engine, CHUNK_ISOLATION) as held:
        rebuild_chunk(held, chunk("fed10", 1), watermarks["fed10"])  # not committed yet
        with (
            isolated_transaction(db.engine, CHUNK_ISOLATION) as other,
            lock_timeout(other, wait=False),  # MySQL: give up on a lock after 1 s, not 50
        ):
            if db.dialect == "postgresql":  # which lock_timeout leaves waiting for ever
                other.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            for neighbour in (chunk("fed10", 0), chunk("eos10", 1), chunk("fed10", 2)):
                rebuild_chunk(other, neighbour, watermarks[neighbour.job])
    db.run("daily")
    check_invariant(db, [("fed", r) for r in fed] + [("eos", r) for r in eos])
