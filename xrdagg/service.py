"""`xrdagg serve`: the jobs of jobs/ on their schedules, for months, on one or several hosts.

- APScheduler 3.x in a background thread; every job with `coalesce=True` (a backlog of missed
  runs is one run: the watermark window catches up anyway), `max_instances=1`, and an explicit
  `misfire_grace_time` (3.x skips a run more than 1 s late by default, silently).
- Several instances on several hosts are safe: each run takes its job's T_AGENT row lock; the
  instance that does not get it logs that it skipped. `max_instances` only counts in-process.
  Interval runs carry a small random delay, so that instances started together take turns.
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
from sqlalchemy import Engine, exc

from xrdagg.config import Settings
from xrdagg.db.dialect import is_unreachable
from xrdagg.jobs.runner import JobRunner, RunReport
from xrdagg.jobs.specs import JobSpec

log = logging.getLogger("xrdagg.serve")

BACKOFF_FIRST_S = 2.0
BACKOFF_MAX_S = 300.0
# Each interval run starts up to this share of its interval late (at most JITTER_MAX_S): two
# instances started together would otherwise fire in lock-step for ever, the same one always
# taking the job's lock and the other always skipping; with the jitter they take turns, so a
# standby instance is seen to work before it is needed.
JITTER_SHARE, JITTER_MAX_S = 0.1, 30.0


class Metrics:
    """Prometheus metrics, through the standard client library (optional endpoint): counters of
    this process's runs, and the jobs' state read from the database at each scrape
    (`xrdagg.scrape`: watermark, lag, last success, paused, rows behind the safety lag)."""

    def __init__(self, port: int | None, address: str = "0.0.0.0") -> None:
        self.enabled = port is not None
        if port is None:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        # A registry of its own: two services in one process (tests) never collide.
        self.registry = CollectorRegistry()
        r = self.registry
        self.rows = Counter(
            "xrdagg_rows_processed_total", "Raw rows aggregated", ["job"], registry=r
        )
        self.duration = Gauge(
            "xrdagg_run_duration_seconds", "Duration of the last run", ["job"], registry=r
        )
        self.runs = Counter("xrdagg_runs_total", "Runs by outcome", ["job", "outcome"], registry=r)
        self.failures = Counter("xrdagg_run_failures_total", "Failed runs", ["job"], registry=r)
        self.differing = Gauge(
            "xrdagg_audit_days_differing",
            "Days whose statistics differed from raw at the last audit",
            ["job"],
            registry=r,
        )
        self.repaired = Counter(
            "xrdagg_audit_days_repaired_total", "Days rebuilt by audit repairs", ["job"], registry=r
        )
        self.server, self.thread = start_http_server(port, addr=address, registry=r)

    def watch(self, engine: Engine, settings: Settings, jobs: Sequence[JobSpec]) -> None:
        """Serve the jobs' state, read from the database at every scrape."""
        if self.enabled:
            from xrdagg.scrape import DatabaseCollector

            self.registry.register(DatabaseCollector(engine, settings, jobs))

    def observe(self, report: RunReport) -> None:
        """Record a finished run in the metrics."""
        if not self.enabled:
            return
        self.runs.labels(report.job, report.outcome).inc()
        if report.outcome == "FAILED":
            self.failures.labels(report.job).inc()
        if report.outcome == "OK":
            self.rows.labels(report.job).inc(report.rows_read)
            self.duration.labels(report.job).set(report.duration_s)
            if report.days_differing is not None:
                self.differing.labels(report.job).set(report.days_differing)
                self.repaired.labels(report.job).inc(len(report.days))


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
        self.metrics.watch(engine, settings, self.jobs)
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
            self.metrics.observe(report)
            if report.outcome != "FAILED" or not report.unreachable:
                return
            log.warning("%s: database unreachable, retrying in %.0fs", job.name, delay)
            if self.stopping.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _log(self, report: RunReport) -> None:
        level = {"OK": logging.INFO, "SKIPPED": logging.INFO}.get(report.outcome, logging.ERROR)
        if report.paused:  # a run that cannot happen is a problem to see, not routine
            level = logging.WARNING
        log.log(level, report.summary())

    def schedule(self) -> None:
        """Add every job to the scheduler with its interval or cron trigger."""
        for job in self.jobs:
            trigger: Any
            if job.cron:
                trigger = CronTrigger.from_crontab(job.cron, timezone=UTC)
            else:
                seconds = (job.interval_minutes or 10) * 60
                trigger = IntervalTrigger(
                    seconds=seconds, timezone=UTC, jitter=min(seconds * JITTER_SHARE, JITTER_MAX_S)
                )
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
