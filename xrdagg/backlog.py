"""Where each job stands, read from the database when asked: for `xrdagg run`'s lines and for the
Prometheus metrics computed at scrape time (never from what one process remembers)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from xrdagg.config import Settings
from xrdagg.db.dialect import db_now
from xrdagg.db.tables import t_agent, t_job_run
from xrdagg.jobs.pause import pauses
from xrdagg.jobs.specs import JobSpec
from xrdagg.sources import SOURCES


def safety_lag(spec: JobSpec, settings: Settings) -> int:
    """The job's safety lag in seconds: its own, else the configured one."""
    return (
        settings.safety_lag_seconds if spec.safety_lag_seconds is None else spec.safety_lag_seconds
    )


def rows_behind_safety_lag(
    conn: Connection, spec: JobSpec, settings: Settings, now: datetime | None = None
) -> int | None:
    """Raw rows of the job's source inserted after its watermark and within the safety lag of
    database now: they have arrived and wait for the next run after the lag (None: not a raw
    source job)."""
    source = SOURCES.get(spec.source or "")
    if source is None:
        return None
    now = now or conn.execute(select(db_now())).scalar_one()
    watermark = conn.execute(
        select(t_agent.c.watermark).where(t_agent.c.job_name == spec.name)
    ).scalar()
    lower = now - timedelta(seconds=safety_lag(spec, settings))
    if watermark is not None and watermark > lower:
        lower = watermark
    raw = source.raw
    return int(
        conn.execute(
            select(func.count()).select_from(raw).where(raw.c.insert_date > lower)
        ).scalar_one()
    )


@dataclass(frozen=True)
class JobState:
    """One job as the metrics show it; times as naive UTC datetimes."""

    name: str
    watermark: datetime | None
    lag_seconds: float | None
    last_success: datetime | None
    paused: bool
    rows_behind_safety_lag: int | None


def job_states(conn: Connection, specs: Iterable[JobSpec], settings: Settings) -> list[JobState]:
    """Every enabled job's state, read now from T_AGENT, T_JOB_RUN and the raw tables."""
    now = conn.execute(select(db_now())).scalar_one()
    agents = {r.job_name: r for r in conn.execute(select(t_agent.c.job_name, t_agent.c.watermark))}
    paused = {p.job_name for p in pauses(conn)}
    runs = t_job_run
    success: dict[str, datetime] = {
        name: finished
        for name, finished in conn.execute(
            select(runs.c.job_name, func.max(runs.c.finished_at))
            .where(runs.c.outcome == "OK")
            .group_by(runs.c.job_name)
        )
    }
    states = []
    for spec in specs:
        if not spec.enabled:
            continue
        agent = agents.get(spec.name)
        watermark = agent.watermark if agent is not None else None
        lag = (now - watermark).total_seconds() if watermark and spec.has_watermark else None
        states.append(
            JobState(
                name=spec.name,
                watermark=watermark,
                lag_seconds=lag,
                last_success=success.get(spec.name),
                paused=spec.name in paused,
                rows_behind_safety_lag=rows_behind_safety_lag(conn, spec, settings, now),
            )
        )
    return states
