"""Running one job once: window, lock, aggregation and watermark in one transaction (SPEC §6).

run_id = log "RUNNING"                      (own short transaction: visible to others)
BEGIN (snapshot isolation)
  lock the job's T_AGENT row                (another runner: JobBusyError, or wait)
  window = (watermark, min(until, db now - lag)]
  fill the resolution cache for the window's new (host, domain) pairs
  merge the window's contributions into every statistics table
  watermark = window end
COMMIT                                      (a crash before this leaves both as they were)
log "OK"/"FAILED"/"SKIPPED" with counts
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    desc,
    exc,
    func,
    insert,
    select,
    tuple_,
    update,
)

from xrdagg.config import Settings
from xrdagg.db.dialect import (
    JOB_ISOLATION,
    InsertIgnoringDuplicates,
    db_now,
    is_lock_busy,
    is_serialization_failure,
    lock_row,
    lock_timeout,
)
from xrdagg.db.tables import metadata, t_agent, t_dirty_day, t_job_run
from xrdagg.errors import JobBusyError
from xrdagg.jobs import incremental
from xrdagg.jobs.daily import rollup_days
from xrdagg.jobs.specs import JobSpec
from xrdagg.sources import SOURCES

log = logging.getLogger(__name__)

# Before the first run a job has no watermark: it starts from the beginning of the raw table.
BEGINNING = datetime(1900, 1, 1)
MAX_SNAPSHOT_RETRIES = 5


@dataclass
class RunReport:
    job: str
    outcome: str = "RUNNING"  # OK, FAILED, SKIPPED
    run_id: int | None = None
    window_lo: datetime | None = None
    window_hi: datetime | None = None
    rows_read: int = 0
    rows_bad_insert: int = 0
    rows_bad_clock: int = 0
    rows_written: int = 0
    new_pairs: int = 0
    days: list[datetime] = field(default_factory=list)
    duration_s: float = 0.0
    message: str = ""

    def summary(self) -> str:
        if self.outcome == "SKIPPED":
            return f"{self.job}: skipped: {self.message}"
        if self.outcome == "FAILED":
            return f"{self.job}: FAILED after {self.duration_s:.1f}s: {self.message}"
        window = f"({_fmt(self.window_lo)}, {_fmt(self.window_hi)}]"
        if self.message:
            return f"{self.job}: {self.message}, window {window}"
        bad = self.rows_bad_insert + self.rows_bad_clock
        extra = f", {bad} invalid" if bad else ""
        if self.days:
            extra += f", {len(self.days)} day(s) rolled up"
        return (
            f"{self.job}: window {window} {self.rows_read} rows{extra}, "
            f"{self.rows_written} stats rows written in {self.duration_s:.2f}s"
        )


def _fmt(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def rollup_dirty_days(conn: Connection, report: RunReport) -> None:
    """The daily job: roll up the days marked dirty, then clear exactly the marks it saw."""
    marks = conn.execute(select(t_dirty_day.c.day, t_dirty_day.c.source, t_dirty_day.c.mark)).all()
    if not marks:
        return
    report.days = sorted({m.day for m in marks})
    report.rows_written = rollup_days(conn, report.days)
    # A 10-minute job that marked a day again meanwhile raised its mark: that row stays.
    conn.execute(
        delete(t_dirty_day).where(
            tuple_(t_dirty_day.c.day, t_dirty_day.c.source, t_dirty_day.c.mark).in_(
                [(m.day, m.source, m.mark) for m in marks]
            )
        )
    )


def housekeeping(conn: Connection, job: JobSpec, now: datetime, report: RunReport) -> None:
    """Delete run-log rows and 10-minute statistics older than the job's retention settings.

    Trimmed 10-minute rows no longer equal the from-scratch computation (that is the point);
    the daily tables keep the history, and `xrdagg recompute` rebuilds trimmed days from raw.
    """
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
    report.rows_written = deleted
    report.message = f"{deleted} old rows deleted"


class JobRunner:
    """Runs jobs against one engine, each once, as SPEC §6 says."""

    def __init__(self, engine: Engine, settings: Settings, jobs: Sequence[JobSpec]) -> None:
        self.engine = engine
        self.settings = settings
        self.host = socket.gethostname()
        # The daily tables reflect what the 10-minute jobs have committed.
        self.upstream = [j.name for j in jobs if j.source is not None]

    def run(self, job: JobSpec, *, until: datetime | None = None, wait: bool = False) -> RunReport:
        report = RunReport(job=job.name)
        started = time.monotonic()
        try:
            report.run_id = self._log_start(job, wait)
        except exc.DBAPIError as error:
            if not is_lock_busy(error):
                raise
            # SQLite: another process writes (it has one writer at a time); the skip cannot be
            # logged in the database either, so it is only reported.
            report.outcome, report.message = "SKIPPED", self._busy_message(job, None)
            return report
        try:
            for attempt in range(MAX_SNAPSHOT_RETRIES):
                try:
                    self._run_transaction(job, until, wait, report)
                    break
                except exc.DBAPIError as error:
                    # Waiting for the lock ends in a serialization failure on snapshot isolation
                    # (the holder changed the row): start again with a fresh snapshot.
                    if (
                        wait
                        and is_serialization_failure(error)
                        and attempt + 1 < MAX_SNAPSHOT_RETRIES
                    ):
                        report.rows_written = 0
                        continue
                    if is_lock_busy(error):
                        raise JobBusyError(self._busy_message(job, report.run_id)) from None
                    raise
            report.outcome = "OK"
        except JobBusyError as busy:
            report.outcome, report.message = "SKIPPED", str(busy)
        except Exception as error:
            report.outcome, report.message = "FAILED", f"{type(error).__name__}: {error}"[:2000]
            log.exception("job %s failed", job.name)
        report.duration_s = time.monotonic() - started
        self._log_finish(report)
        return report

    def _run_transaction(
        self, job: JobSpec, until: datetime | None, wait: bool, report: RunReport
    ) -> None:
        with self.engine.connect() as conn:
            isolation = JOB_ISOLATION.get(conn.dialect.name)
            if isolation:
                conn = conn.execution_options(isolation_level=isolation)
            with conn.begin():
                lock_row(conn, t_agent, t_agent.c.job_name == job.name, wait=wait)
                agent = conn.execute(
                    select(t_agent.c.watermark, t_agent.c.paused_by, t_agent.c.paused_since).where(
                        t_agent.c.job_name == job.name
                    )
                ).one()
                if agent.paused_by is not None:
                    raise JobBusyError(
                        f"job {job.name} is paused by {agent.paused_by} "
                        f"since {_fmt(agent.paused_since)} UTC"
                    )
                watermark = agent.watermark
                now = conn.execute(select(db_now())).scalar_one()
                if job.kind == "housekeeping":
                    report.window_lo, report.window_hi = watermark, now
                    housekeeping(conn, job, now, report)
                    hi = now
                elif job.kind == "daily":
                    report.window_lo = watermark
                    report.window_hi = now
                    rollup_dirty_days(conn, report)
                    hi = self._upstream_watermark(conn) or watermark
                else:
                    lag = job.safety_lag_seconds
                    if lag is None:
                        lag = self.settings.safety_lag_seconds
                    hi = now - timedelta(seconds=lag)
                    if until is not None:
                        hi = min(hi, until)
                    lo = watermark or BEGINNING
                    report.window_lo, report.window_hi = watermark, hi
                    if hi <= lo:
                        report.message = "nothing new: the window is empty"
                        return
                    counts = incremental.aggregate_window(conn, SOURCES[job.kind], lo, hi)
                    report.rows_read = counts.rows_read
                    report.rows_bad_clock = counts.rows_bad_clock
                    report.rows_bad_insert = counts.rows_bad_insert
                    report.rows_written = counts.rows_written
                    report.new_pairs = counts.new_pairs
                conn.execute(
                    update(t_agent)
                    .where(t_agent.c.job_name == job.name)
                    .values(watermark=hi, last_run_id=report.run_id, updated_at=db_now())
                )

    def _upstream_watermark(self, conn: Connection) -> datetime | None:
        """The lowest watermark of the 10-minute jobs: the daily tables include at least that."""
        return conn.execute(
            select(func.min(t_agent.c.watermark)).where(t_agent.c.job_name.in_(self.upstream))
        ).scalar_one()

    def _log_start(self, job: JobSpec, wait: bool) -> int:
        with self.engine.connect() as conn, lock_timeout(conn, wait=wait), conn.begin():
            conn.execute(
                InsertIgnoringDuplicates(t_agent),
                [{"job_name": job.name, "watermark": None}],
            )
            return conn.execute(
                insert(t_job_run)
                .values(
                    job_name=job.name,
                    run_kind=job.kind,
                    host_name=self.host[:256],
                    process_id=os.getpid(),
                    started_at=db_now(),
                    outcome="RUNNING",
                )
                .returning(t_job_run.c.run_id)
            ).scalar_one()

    def _log_finish(self, report: RunReport) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(t_job_run)
                    .where(t_job_run.c.run_id == report.run_id)
                    .values(
                        finished_at=db_now(),
                        window_lo=report.window_lo,
                        window_hi=report.window_hi,
                        rows_read=report.rows_read,
                        rows_bad_insert=report.rows_bad_insert,
                        rows_bad_clock=report.rows_bad_clock,
                        rows_written=report.rows_written,
                        duration_s=round(report.duration_s, 3),
                        outcome=report.outcome,
                        message=report.message[:2000] or None,
                    )
                )
        except exc.SQLAlchemyError:
            # The run itself is committed or rolled back already; losing its log line is
            # better than reporting a finished run as failed.
            log.exception("could not record the end of run %s", report.run_id)

    def _busy_message(self, job: JobSpec, own_run_id: int | None) -> str:
        with self.engine.connect() as conn:
            holder = conn.execute(
                select(t_job_run.c.host_name, t_job_run.c.process_id, t_job_run.c.started_at)
                .where(
                    t_job_run.c.job_name == job.name,
                    t_job_run.c.outcome == "RUNNING",
                    t_job_run.c.run_id != own_run_id,
                )
                .order_by(desc(t_job_run.c.run_id))
                .limit(1)
            ).first()
        if holder is None:
            return f"job {job.name} is locked by another session (the database is busy)"
        return (
            f"job {job.name} is running since {_fmt(holder.started_at)} UTC "
            f"on host {holder.host_name} (pid {holder.process_id})"
        )
