"""T_AGENT, the one table that says where each job stands (SPEC §6): its row, its lock and its
watermark. The pauses of the jobs (T_JOB_PAUSE) are in `xrdagg.jobs.pause`.

A job's row is created the first time anyone needs it (a run, a pause), so that pausing a job
that never ran still holds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update

from xrdagg.db.dialect import db_now, insert_missing, lock_row
from xrdagg.db.tables import t_agent, t_job_run
from xrdagg.errors import XrdaggError


@dataclass(frozen=True)
class AgentState:
    """A job's T_AGENT row as its run sees it."""

    watermark: datetime | None


def ensure_agents(conn: Connection, names: Iterable[str]) -> None:
    """Create the T_AGENT row of each named job that has none (no watermark yet)."""
    # Without waiting for a running job, which holds its row until it commits.
    insert_missing(conn, t_agent, [{"job_name": name, "watermark": None} for name in names])


def lock_agent(conn: Connection, name: str, *, wait: bool) -> AgentState:
    """Lock the job's row until the transaction ends and return its state.

    Raises the driver's lock error at once when another transaction holds it (unless `wait`);
    `xrdagg.db.dialect.is_lock_busy` recognises it.
    """
    lock_row(conn, t_agent, t_agent.c.job_name == name, wait=wait)
    row = conn.execute(select(t_agent.c.watermark).where(t_agent.c.job_name == name)).one()
    return AgentState(row.watermark)


def hold_agent(conn: Connection, name: str) -> None:
    """Lock the job's row until the transaction ends, waiting for a run in flight, by a write (a
    no-op UPDATE), not only a lock: a run that waited for the row on snapshot isolation then
    fails to serialize and starts again, seeing what this transaction wrote (a pause, a
    topology's daily rows); a mere FOR UPDATE would let it go on with its old snapshot."""
    conn.execute(
        update(t_agent).where(t_agent.c.job_name == name).values(job_name=t_agent.c.job_name)
    )


def advance_watermark(conn: Connection, name: str, watermark: datetime, run_id: int | None) -> None:
    """Set the job's watermark (in the run's transaction: with its statistics or not at all)."""
    conn.execute(
        update(t_agent)
        .where(t_agent.c.job_name == name)
        .values(watermark=watermark, last_run_id=run_id, updated_at=db_now())
    )


def watermarks(conn: Connection) -> dict[str, datetime | None]:
    """Every job's watermark, by job name (None: never ran)."""
    return {
        r.job_name: r.watermark
        for r in conn.execute(select(t_agent.c.job_name, t_agent.c.watermark))
    }


def lowest_watermark(conn: Connection, names: Iterable[str]) -> datetime | None:
    """The lowest watermark of the named jobs (None when none has one)."""
    return conn.execute(
        select(func.min(t_agent.c.watermark)).where(t_agent.c.job_name.in_(list(names)))
    ).scalar_one()


def predecessor(conn: Connection, name: str, kind: str) -> tuple[str, datetime] | None:
    """Another job of the same incremental kind whose T_AGENT row holds a watermark: the old
    name of `name` (one incremental job per source, `xrdagg.jobs.specs`), or None."""
    runs_of_kind = (
        select(t_job_run.c.job_name)
        .where(t_job_run.c.run_kind == kind, t_job_run.c.job_name != name)
        .distinct()
    )
    row = conn.execute(
        select(t_agent.c.job_name, t_agent.c.watermark)
        .where(
            t_agent.c.job_name.in_(runs_of_kind),
            t_agent.c.watermark.is_not(None),
        )
        .order_by(t_agent.c.watermark.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.job_name, row.watermark)


def rename_job(conn: Connection, old: str, new: str) -> datetime | None:
    """Carry `old`'s T_AGENT row (watermark) and run log over to `new`, in the caller's
    transaction; refuses when `new` already has a watermark or `old` has no row. Returns the
    watermark carried over."""
    ensure_agents(conn, [new])
    for name in sorted((old, new)):  # one lock order: no deadlock with a concurrent rename
        lock_row(conn, t_agent, t_agent.c.job_name == name, wait=True)
    rows = {
        r.job_name: r
        for r in conn.execute(select(t_agent).where(t_agent.c.job_name.in_([old, new])))
    }
    if old not in rows:
        raise XrdaggError(f"jobs rename: job {old!r} has no T_AGENT row: nothing to carry over")
    if rows[new].watermark is not None:
        raise XrdaggError(
            f"jobs rename: job {new!r} already has a watermark ({rows[new].watermark}): it has "
            "run under its new name; renaming would lose one of the two watermarks"
        )
    conn.execute(delete(t_agent).where(t_agent.c.job_name == new))
    conn.execute(update(t_agent).where(t_agent.c.job_name == old).values(job_name=new))
    conn.execute(update(t_job_run).where(t_job_run.c.job_name == old).values(job_name=new))
    return rows[old].watermark
