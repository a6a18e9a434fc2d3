"""The one interface every job kind implements: a run's context in, its counts out.

The runner (`xrdagg.jobs.runner`) owns the transaction, the T_AGENT lock, the run log and the
watermark; a kind only does its work inside that transaction and says where the watermark goes.
Kinds: the 10-minute jobs ('fed', 'eos': `xrdagg.jobs.incremental`), 'daily'
(`xrdagg.jobs.daily`), 'housekeeping' (`xrdagg.jobs.housekeeping`) and 'audit'
(`xrdagg.jobs.audit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from xrdagg.jobs.specs import JobSpec

# Before its first run a job has no watermark: it starts from the beginning of the raw table.
BEGINNING = datetime(1900, 1, 1)


@dataclass(frozen=True)
class RunContext:
    """What a run of a job knows when its kind starts, inside the run's transaction."""

    job: JobSpec
    watermark: datetime | None  # None: the job never ran
    now: datetime  # the database's clock, UTC
    until: datetime | None  # --until, if given
    safety_lag_seconds: int  # the job's own, or the deployment's
    upstream: tuple[str, ...]  # the 10-minute jobs, whose watermarks bound the daily tables
    upstream_jobs: tuple[JobSpec, ...] = ()  # the same jobs' definitions (the audit's sources)
    # Per 10-minute table, the fewest days any housekeeping job keeps of it (`retention_days`):
    # the days before that may have been trimmed, and the daily job looks at them for it (as
    # at every day more than `daily.TRIM_HORIZON_DAYS` old).
    retention_days: Mapping[str, int] = field(default_factory=dict)


@dataclass
class RunCounts:
    """What a kind did; the runner writes it to the run log."""

    window_lo: datetime | None = None
    window_hi: datetime | None = None
    # The new watermark; None leaves it where it is.
    watermark: datetime | None = None
    rows_read: int = 0  # valid raw rows aggregated
    rows_bad_clock: int = 0  # END_DATE more than a day after INSERT_DATE
    rows_bad_insert: int = 0  # no INSERT_DATE, END_DATE in the window
    # Rows with a NaN, infinite or out-of-range number (counted as 0), per reason.
    odd_numbers: dict[str, int] = field(default_factory=dict)
    rows_written: int = 0  # statistics rows inserted or updated (deleted, for housekeeping)
    new_pairs: int = 0  # (host, domain) pairs resolved for the first time
    days: list[datetime] = field(default_factory=list)  # days rolled up (audit: repaired)
    days_differing: int | None = None  # audit: days whose statistics differ from raw
    message: str = ""  # a remark for the run log, e.g. "nothing new"


class JobKind(Protocol):
    """A job kind: a function of the run's connection and context, returning its counts."""

    def __call__(self, conn: Connection, context: RunContext) -> RunCounts:
        """Do the kind's work in the caller's transaction; return its counts."""
        ...
