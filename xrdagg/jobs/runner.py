"""Running one job once: window, lock, aggregation and watermark in one transaction (SPEC §6).

run_id = log "RUNNING"                      (own short transaction: visible to others)
BEGIN (snapshot isolation)
  lock the job's T_AGENT row                (another runner: JobBusyError, or wait)
  counts = the job's kind (xrdagg.jobs.kind)  (e.g. the window (watermark, min(until, now - lag)]
                                              aggregated into every statistics table)
  watermark = where the kind says
COMMIT                                      (a crash before this leaves both as they were)
log "OK"/"FAILED"/"SKIPPED" with counts

The runner only locks, logs and commits; what a run does is its kind's.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    Connection,
    Engine,
    desc,
    exc,
    insert,
    select,
    update,
)

from xrdagg.config import Settings
from xrdagg.db.dialect import (
    JOB_ISOLATION,
    db_now,
    is_lock_busy,
    is_serialization_failure,
    is_unreachable,
    isolated_transaction,
    lock_timeout,
)
from xrdagg.db.tables import t_job_run
from xrdagg.errors import JobBusyError, JobPausedError, XrdaggError
from xrdagg.jobs import agent, audit, daily, housekeeping, incremental, pause
from xrdagg.jobs.kind import JobKind, RunContext, RunCounts
from xrdagg.jobs.specs import JobSpec

log = logging.getLogger(__name__)

MAX_SNAPSHOT_RETRIES = 5
SNAPSHOT_RETRY_PAUSE_S = 0.2


class SnapshotConflictError(Exception):
    """The run lost a snapshot conflict on every try (reported as such, never as a lock)."""


# Every job kind behind one interface (xrdagg.jobs.kind): the runner never branches on kinds.
KINDS: dict[str, JobKind] = {
    "fed": incremental.run,
    "eos": incremental.run,
    "daily": daily.run,
    "housekeeping": housekeeping.run,
    "audit": audit.run,
}


@dataclass
class RunReport:
    """One run of one job, as the run log and the operator see it."""

    job: str
    outcome: str = "RUNNING"  # OK, FAILED, SKIPPED
    run_id: int | None = None
    window_lo: datetime | None = None
    window_hi: datetime | None = None
    rows_read: int = 0
    rows_bad_insert: int = 0
    rows_bad_clock: int = 0
    rows_written: int = 0
    odd_numbers: dict[str, int] = field(default_factory=dict)  # per reason, counted as 0
    new_pairs: int = 0
    days: list[datetime] = field(default_factory=list)
    days_differing: int | None = None  # audit runs only
    duration_s: float = 0.0
    message: str = ""
    unreachable: bool = False  # it failed because the database could not be reached
    paused: bool = False  # it skipped because a rebuild paused the job

    def record(self, counts: RunCounts) -> None:
        """Take a kind's counts into the report."""
        self.window_lo, self.window_hi = counts.window_lo, counts.window_hi
        self.rows_read, self.rows_written = counts.rows_read, counts.rows_written
        self.rows_bad_clock, self.rows_bad_insert = counts.rows_bad_clock, counts.rows_bad_insert
        self.new_pairs, self.days, self.message = counts.new_pairs, counts.days, counts.message
        self.odd_numbers = dict(counts.odd_numbers)
        self.days_differing = counts.days_differing

    def summary(self) -> str:
        """One line for the operator: what the run did, or why it did not."""
        if self.outcome == "SKIPPED":
            return f"{self.job}: skipped: {self.message}"
        if self.outcome == "FAILED":
            # The error's first line: the SQL and the traceback are logged, shown with -v.
            first = self.message.strip().splitlines()[0] if self.message.strip() else "?"
            return f"{self.job}: FAILED after {self.duration_s:.1f}s: {first}"
        window = f"({_fmt(self.window_lo)}, {_fmt(self.window_hi)}]"
        if self.message:
            return f"{self.job}: {self.message}, window {window}"
        bad = self.rows_bad_insert + self.rows_bad_clock
        extra = f", {bad} invalid" if bad else ""
        if self.odd_numbers:
            odd = ", ".join(f"{n} {reason}" for reason, n in sorted(self.odd_numbers.items()))
            extra += f", numbers counted as 0: {odd}"
        if self.days:
            extra += f", {len(self.days)} day(s) rolled up"
        return (
            f"{self.job}: window {window} {self.rows_read} rows{extra}, "
            f"{self.rows_written} stats rows written in {self.duration_s:.2f}s"
        )


def _refuse_a_renamed_job(conn: Connection, job: JobSpec) -> None:
    """A first run of an incremental job while another name of its source holds a watermark
    would count all history again (a renamed job, or a second one): refused, with the fix."""
    old = agent.predecessor(conn, job.name, job.kind)
    if old is not None:
        name, watermark = old
        raise XrdaggError(
            f"job {job.name} has never run, but job {name} of the same source ({job.kind}) has "
            f"counted rows up to {_fmt(watermark)} UTC: running {job.name} would count them "
            f"again. If {job.name} is {name} renamed, run `xrdagg jobs rename {name} {job.name}` "
            "to carry the watermark over"
        )


def shortest_retention(jobs: Sequence[JobSpec]) -> dict[str, int]:
    """Per 10-minute table, the fewest days any housekeeping job keeps of it (disabled jobs
    too: one may have run before it was disabled)."""
    days: dict[str, int] = {}
    for job in jobs:
        for table, kept in (job.retention_days or {}).items():
            days[table] = min(kept, days.get(table, kept))
    return days


def _fmt(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


class JobRunner:
    """Runs jobs against one engine, each once, as SPEC §6 says."""

    def __init__(self, engine: Engine, settings: Settings, jobs: Sequence[JobSpec]) -> None:
        self.engine = engine
        self.settings = settings
        self.host = socket.gethostname()
        # The daily tables reflect what the 10-minute jobs have committed.
        self.upstream_jobs = tuple(j for j in jobs if j.source is not None)
        self.upstream = tuple(j.name for j in self.upstream_jobs)
        self.retention_days = shortest_retention(jobs)

    def run(self, job: JobSpec, *, until: datetime | None = None, wait: bool = False) -> RunReport:
        """Run `job` once (SPEC §6) and return its report: OK, SKIPPED (another run holds the job,
        or a rebuild paused it) or FAILED (the error is in the report and the run log; nothing
        was committed)."""
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
                    # A serialization failure on snapshot isolation is no lock held by anyone:
                    # a concurrent transaction (the other source's run writing the shared
                    # resolution cache, a rebuild pausing the job, the holder of the lock we
                    # waited for) committed a row this one also changes. Start again with a
                    # fresh snapshot; if it keeps happening, say so, not "locked".
                    if is_serialization_failure(error):
                        if attempt + 1 < MAX_SNAPSHOT_RETRIES:
                            report.rows_written = 0
                            time.sleep(SNAPSHOT_RETRY_PAUSE_S * (attempt + 1))
                            continue
                        raise SnapshotConflictError(
                            f"job {job.name}: concurrent transactions changed the same rows "
                            f"{MAX_SNAPSHOT_RETRIES} times in a row (serialization failure: "
                            f"{str(error.orig).splitlines()[0]}); nothing was committed, the "
                            "next run takes the window again"
                        ) from None
                    if is_lock_busy(error):
                        raise JobBusyError(self._busy_message(job, report.run_id)) from None
                    raise
            report.outcome = "OK"
        except JobBusyError as busy:
            report.outcome, report.message = "SKIPPED", str(busy)
            report.paused = isinstance(busy, JobPausedError)
        except Exception as error:
            report.outcome, report.message = "FAILED", f"{type(error).__name__}: {error}"[:2000]
            report.unreachable = is_unreachable(error)
            # INFO: `xrdagg -v` and the service's log show the traceback and the SQL; a plain
            # `xrdagg run` prints the one line of the report.
            log.info("job %s failed", job.name, exc_info=True)
        report.duration_s = time.monotonic() - started
        self._log_finish(report)
        return report

    def _run_transaction(
        self, job: JobSpec, until: datetime | None, wait: bool, report: RunReport
    ) -> None:
        kind = KINDS[job.kind]
        with isolated_transaction(self.engine, JOB_ISOLATION) as conn:
            state = agent.lock_agent(conn, job.name, wait=wait)
            now = conn.execute(select(db_now())).scalar_one()
            held = pause.live_pauses(conn, [job.name], now)
            if held:
                raise JobPausedError(
                    f"job {job.name} is paused by "
                    + "; and by ".join(p.describe(now) for p in held)
                )
            if state.watermark is None and job.source is not None:
                _refuse_a_renamed_job(conn, job)
            lag = job.safety_lag_seconds
            context = RunContext(
                job=job,
                watermark=state.watermark,
                now=now,
                until=until,
                safety_lag_seconds=self.settings.safety_lag_seconds if lag is None else lag,
                upstream=self.upstream,
                upstream_jobs=self.upstream_jobs,
                retention_days=self.retention_days,
            )
            counts = kind(conn, context)
            report.record(counts)
            if counts.watermark is not None:
                agent.advance_watermark(conn, job.name, counts.watermark, report.run_id)

    def _log_start(self, job: JobSpec, wait: bool) -> int:
        with self.engine.connect() as conn, lock_timeout(conn, wait=wait), conn.begin():
            agent.ensure_agents(conn, [job.name])
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
                        rows_bad_nan=report.odd_numbers.get("NaN", 0),
                        rows_bad_infinite=report.odd_numbers.get("infinite", 0),
                        rows_bad_range=report.odd_numbers.get("out of range", 0),
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
