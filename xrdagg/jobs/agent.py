"""T_AGENT, the one table that says where each job stands (SPEC §6): its row, its lock, its
watermark, and its pause.

A job's row is created the first time anyone needs it (a run, a pause), so that pausing a job
that never ran still holds it. The pause is the exclusion protocol of every rebuild outside the
incremental runs (`xrdagg recompute`, `xrdagg topology apply`): while a job is paused by an
owner, its runs skip, so the watermark the rebuild read stays put and no run merges into rows
being rebuilt. Only the owner's label clears it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select, update

from xrdagg.db.dialect import InsertIgnoringDuplicates, db_now, lock_row
from xrdagg.db.tables import t_agent

PAUSED_BY_LEN = 256


@dataclass(frozen=True)
class AgentState:
    """A job's T_AGENT row as its run sees it."""

    watermark: datetime | None
    paused_by: str | None
    paused_since: datetime | None


def ensure_agents(conn: Connection, names: Iterable[str]) -> None:
    """Create the T_AGENT row of each named job that has none (no watermark yet)."""
    rows = [{"job_name": name, "watermark": None} for name in names]
    if rows:
        conn.execute(InsertIgnoringDuplicates(t_agent), rows)


def lock_agent(conn: Connection, name: str, *, wait: bool) -> AgentState:
    """Lock the job's row until the transaction ends and return its state.

    Raises the driver's lock error at once when another transaction holds it (unless `wait`);
    `xrdagg.db.dialect.is_lock_busy` recognises it.
    """
    lock_row(conn, t_agent, t_agent.c.job_name == name, wait=wait)
    row = conn.execute(
        select(t_agent.c.watermark, t_agent.c.paused_by, t_agent.c.paused_since).where(
            t_agent.c.job_name == name
        )
    ).one()
    return AgentState(row.watermark, row.paused_by, row.paused_since)


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


def pause_jobs(engine: Engine, names: Iterable[str], owner: str) -> None:
    """Pause each named job for `owner`, after waiting for a run in flight to finish; a job that
    never ran gets its row first, so that it is held too."""
    for name in names:
        with engine.begin() as conn:
            ensure_agents(conn, [name])
            lock_row(conn, t_agent, t_agent.c.job_name == name, wait=True)
            conn.execute(
                update(t_agent)
                .where(t_agent.c.job_name == name)
                .values(paused_by=owner[:PAUSED_BY_LEN], paused_since=db_now())
            )


def resume_jobs(conn: Connection, owner: str) -> None:
    """Lift every pause `owner` holds (another owner's pause stays)."""
    conn.execute(
        update(t_agent)
        .where(t_agent.c.paused_by == owner[:PAUSED_BY_LEN])
        .values(paused_by=None, paused_since=None)
    )
