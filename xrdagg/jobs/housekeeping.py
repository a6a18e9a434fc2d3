"""The 'housekeeping' kind: run-log retention, and optional 10-minute statistics retention."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete

from xrdagg.db.tables import metadata, t_job_run
from xrdagg.jobs.kind import RunContext, RunCounts


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
            delete(table).where(table.c.bin_start < now - timedelta(days=days))
        ).rowcount
    return RunCounts(
        window_lo=context.watermark,
        window_hi=now,
        watermark=now,
        rows_written=deleted,
        message=f"{deleted} old rows deleted",
    )
