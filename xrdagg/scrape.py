"""Prometheus metrics computed at scrape time from the database (`xrdagg serve --metrics-port`).

Every scrape reads T_AGENT, T_JOB_RUN and the raw tables' newest rows, so the numbers are the
database's truth whichever host runs the jobs (several service instances report the same), and
a scrape while the database is down says so (`xrdagg_database_up 0`) instead of repeating stale
values.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, exc, select

from xrdagg.backlog import job_states
from xrdagg.config import Settings
from xrdagg.db.dialect import db_now
from xrdagg.jobs.pause import pauses
from xrdagg.jobs.specs import JobSpec

log = logging.getLogger("xrdagg.metrics")


def _epoch(value: datetime) -> float:
    return float(calendar.timegm(value.timetuple()))


class DatabaseCollector(Collector):
    """Per job: watermark, lag, last success time, paused, rows behind the safety lag."""

    def __init__(self, engine: Engine, settings: Settings, jobs: Sequence[JobSpec]) -> None:
        self.engine = engine
        self.settings = settings
        self.jobs = list(jobs)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("xrdagg_database_up", "1 when the last scrape read the database")
        try:
            with self.engine.connect() as conn:
                states = job_states(conn, self.jobs, self.settings)
                now = conn.execute(select(db_now())).scalar_one()
                held = pauses(conn)
        except exc.SQLAlchemyError as error:
            log.warning("metrics: cannot read the database: %s", str(error).splitlines()[0])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        families = {
            "watermark": GaugeMetricFamily(
                "xrdagg_job_watermark_timestamp_seconds",
                "The job's watermark (upper bound of INSERT_DATE processed), epoch seconds",
                labels=["job"],
            ),
            "lag": GaugeMetricFamily(
                "xrdagg_job_lag_seconds", "Watermark behind database now", labels=["job"]
            ),
            "success": GaugeMetricFamily(
                "xrdagg_job_last_success_timestamp_seconds",
                "End of the job's last successful run, epoch seconds",
                labels=["job"],
            ),
            "paused": GaugeMetricFamily(
                "xrdagg_job_paused", "1 while a rebuild holds the job paused", labels=["job"]
            ),
            "waiting": GaugeMetricFamily(
                "xrdagg_rows_behind_safety_lag",
                "Raw rows inserted after the watermark, within the safety lag of database now",
                labels=["job"],
            ),
        }
        for state in states:
            labels = [state.name]
            if state.watermark is not None:
                families["watermark"].add_metric(labels, _epoch(state.watermark))
            if state.lag_seconds is not None:
                families["lag"].add_metric(labels, state.lag_seconds)
            if state.last_success is not None:
                families["success"].add_metric(labels, _epoch(state.last_success))
            families["paused"].add_metric(labels, 1 if state.paused else 0)
            if state.rows_behind_safety_lag is not None:
                families["waiting"].add_metric(labels, state.rows_behind_safety_lag)
        # Who holds each pause and for how long: a pause left by a killed rebuild shows its age.
        paused_seconds = GaugeMetricFamily(
            "xrdagg_job_paused_seconds",
            "Age of each pause of a job, by owner, host and pid (absent: not paused)",
            labels=["job", "owner", "host", "pid"],
        )
        for p in held:
            paused_seconds.add_metric(
                [p.job_name, p.owner, p.host_name, str(p.process_id)],
                (now - p.paused_since).total_seconds(),
            )
        yield from families.values()
        yield paused_seconds
