"""`xrdagg serve`: the jobs of jobs/ on their schedules, for months, on one or several hosts.

- APScheduler 3.x in a background thread; every job with `coalesce=True` (a backlog of missed
  runs is one run: the watermark window catches up anyway), `max_instances=1`, and an explicit
  `misfire_grace_time` (3.x skips a run more than 1 s late by default, silently).
- Several instances on several hosts are safe: each run takes its job's T_AGENT row lock; the
  instance that does not get it logs that it skipped. `max_instances` only counts in-process.
- A database outage never kills the service: the run fails, is logged, and is retried with
  exponential backoff until the database answers; the watermark then catches up.
- SIGTERM/SIGINT: no new runs start; a run in flight finishes (or, killed, rolls back: every run
  is one transaction).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, exc, select

from xrdagg.config import Settings
from xrdagg.db.dialect import db_now, is_unreachable
from xrdagg.db.tables import t_agent
from xrdagg.jobs.runner import JobRunner, RunReport
from xrdagg.jobs.specs import JobSpec

log = logging.getLogger("xrdagg.serve")

BACKOFF_FIRST_S = 2.0
BACKOFF_MAX_S = 300.0


class Metrics:
    """Prometheus metrics, through the standard client library (optional endpoint)."""

    def __init__(self, port: int | None, address: str = "0.0.0.0") -> None:
        self.enabled = port is not None
        if port is None:
            return
        from prometheus_client import Counter, Gauge, start_http_server

        self.lag = Gauge("xrdagg_job_lag_seconds", "Watermark behind database now", ["job"])
        self.rows = Counter("xrdagg_rows_processed_total", "Raw rows aggregated", ["job"])
        self.duration = Gauge("xrdagg_run_duration_seconds", "Duration of the last run", ["job"])
        self.runs = Counter("xrdagg_runs_total", "Runs by outcome", ["job", "outcome"])
        self.failures = Counter("xrdagg_run_failures_total", "Failed runs", ["job"])
        start_http_server(port, addr=address)

    def observe(self, report: RunReport, lag_seconds: float | None) -> None:
        """Record a finished run in the metrics (lag in seconds when known)."""
        if not self.enabled:
            return
        self.runs.labels(report.job, report.outcome).inc()
        if report.outcome == "FAILED":
            self.failures.labels(report.job).inc()
        if report.outcome == "OK":
            self.rows.labels(report.job).inc(report.rows_read)
            self.duration.labels(report.job).set(report.duration_s)
        if lag_seconds is not None:
            self.lag.labels(report.job).set(lag_seconds)


class Service:
    """`xrdagg serve`: the jobs on their schedules, with retries, metrics and a clean stop."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        jobs: Sequence[JobSpec],
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.jobs = [j for j in jobs if j.enabled]
        self.runner = JobRunner(engine, settings, jobs)
        self.metrics = metrics or Metrics(None)
        self.stopping = threading.Event()
        self.scheduler = BackgroundScheduler(timezone=UTC)

    def run_job(self, job: JobSpec) -> None:
        """One scheduled run; on a database outage, retried with backoff until it answers."""
        delay = BACKOFF_FIRST_S
        while not self.stopping.is_set():
            try:
                report = self.runner.run(job)
            except exc.SQLAlchemyError as error:  # the run log itself could not be written
                report = RunReport(
                    job=job.name,
                    outcome="FAILED",
                    message=_first_line(error),
                    unreachable=is_unreachable(error),
                )
            self._log(report)
            if report.outcome != "FAILED" or not report.unreachable:
                self.metrics.observe(report, self._lag_seconds(job))
                return
            self.metrics.observe(report, None)
            log.warning("%s: database unreachable, retrying in %.0fs", job.name, delay)
            if self.stopping.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _log(self, report: RunReport) -> None:
        level = {"OK": logging.INFO, "SKIPPED": logging.INFO}.get(report.outcome, logging.ERROR)
        log.log(level, report.summary())

    def _lag_seconds(self, job: JobSpec) -> float | None:
        if not job.has_watermark:
            return None
        try:
            with self.engine.connect() as conn:
                watermark = conn.execute(
                    select(t_agent.c.watermark).where(t_agent.c.job_name == job.name)
                ).scalar()
                now = conn.execute(select(db_now())).scalar_one()
        except exc.SQLAlchemyError:
            return None
        return None if watermark is None else (now - watermark).total_seconds()

    def schedule(self) -> None:
        """Add every job to the scheduler with its interval or cron trigger."""
        for job in self.jobs:
            trigger: Any
            if job.cron:
                trigger = CronTrigger.from_crontab(job.cron, timezone=UTC)
            else:
                trigger = IntervalTrigger(seconds=(job.interval_minutes or 10) * 60, timezone=UTC)
            self.scheduler.add_job(
                self.run_job,
                trigger,
                args=[job],
                id=job.name,
                name=job.name,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=job.misfire_grace_seconds,
                # Interval jobs start at once, so that a restarted service catches up now.
                next_run_time=None if job.cron else datetime.now(UTC),
            )

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT; then let the run in flight finish."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.schedule()
        self.scheduler.start()
        names = ", ".join(
            f"{j.name} ({j.cron or f'every {j.interval_minutes} min'})" for j in self.jobs
        )
        log.info("serving %s", names)
        while not self.stopping.wait(1.0):
            pass
        log.info("stopping: waiting for runs in flight")
        self.scheduler.shutdown(wait=True)
        log.info("stopped")

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stopping.set()


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0][:500] if str(error) else type(error).__name__
