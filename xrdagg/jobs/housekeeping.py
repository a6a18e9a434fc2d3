"""The 'housekeeping' kind: run-log retention, and optional 10-minute statistics retention."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete

from xrdagg.db.tables import metadata, t_job_run
from xrdagg.jobs.kind import RunContext, RunCounts
from xrdagg.rules import midnight


def retained_from(now: datetime, days: int) -> datetime:
    """The first bin a retention of `days` days keeps at `now`: the start of the UTC day `days`
    days ago, so that a table is trimmed by whole days, never part of one.

    A topology apply finds the days to rebuild through the 10-minute rows an affected key has
    left, and rolls up those days' daily rows of the delta sites from them: on a day trimmed
    part-way in every table (the day at a cutoff of `now - days`) it found the rest of the day
    and rolled its daily rows up short, losing the trimmed part's share of the only history
    left of it. A day trimmed whole holds no row, so an apply leaves its daily rows as they
    were (under the old topology, until a recompute of the day); and the daily job keeps them
    when a row arriving later ends on it (`daily.trimmed_days`)."""
    return midnight(now - timedelta(days=days))


def run(conn: Connection, context: RunContext) -> RunCounts:
    """Delete run-log rows and 10-minute statistics older than the job's retention settings;
    returns the rows deleted (as rows_written) and a message.

    Trimmed 10-minute rows no longer equal the from-scratch computation (that is the point);
    the daily tables keep the history, and `xrdagg recompute` rebuilds trimmed days from raw.
    """
    job, now = context.job, context.now
    deleted = 0
    if job.run_log_days:
        cutoff = now - timedelta(days=job.run_log_days)
        deleted += conn.execute(
            delete(t_job_run).where(
                t_job_run.c.started_at < cutoff, t_job_run.c.outcome != "RUNNING"
            )
        ).rowcount
    for name, days in (job.retention_days or {}).items():
        table = metadata.tables[name]
        deleted += conn.execute(
            delete(table).where(table.c.bin_start < retained_from(now, days))
        ).rowcount
    return RunCounts(
        window_lo=context.watermark,
        window_hi=now,
        watermark=now,
        rows_written=deleted,
        message=f"{deleted} old rows deleted",
    )
