"""`xrdagg status` as a Nagios plugin: one verdict over every enabled job.

The plugin conventions (Nagios Plugin Development Guidelines): the first line is
`XRDAGG STATE - summary | perfdata`, further lines give details, and the exit status is 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN. What counts:

- CRITICAL: a job's last run failed; a watermark lagging more than --critical minutes (or a job
  with a watermark that never ran, when --critical is given); the database cannot be reached
  (the statistics are not being produced: the same state check_pgsql gives).
- WARNING: a job paused by a rebuild (a recompute, a topology apply, or one left by a killed
  process: `xrdagg recompute --resume` lifts it), named with its owner and since when; a lag
  above --warning.
- UNKNOWN: the check itself cannot say: a configuration error, a bad option, a schema the
  database does not have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from xrdagg.jobs.specs import JobSpec
from xrdagg.reports import Rows


class State(IntEnum):
    """Nagios states, valued as the plugin's exit status."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass
class Verdict:
    """The state, the problems that make it, the perfdata and the per-job detail lines."""

    state: State = State.OK
    problems: list[tuple[State, str]] = field(default_factory=list)
    perfdata: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, state: State, problem: str) -> None:
        self.problems.append((state, problem))
        self.state = max(self.state, state)

    def first_line(self, jobs: int) -> str:
        """`XRDAGG STATE - summary | perfdata`, on one line."""
        if self.problems:
            worst = sorted(self.problems, key=lambda p: -p[0])
            summary = "; ".join(text for _, text in worst)
        else:
            summary = f"{jobs} jobs up to date"
        summary = summary.replace("|", "/").replace("\n", " ")  # '|' starts the perfdata
        perf = " ".join(self.perfdata)
        return f"XRDAGG {self.state.name} - {summary}" + (f" | {perf}" if perf else "")

    def text(self, jobs: int) -> str:
        return "\n".join([self.first_line(jobs), *self.details])


def unknown(reason: str) -> Verdict:
    """The verdict of a check that could not look: UNKNOWN, saying why."""
    verdict = Verdict()
    verdict.add(State.UNKNOWN, reason)
    return verdict


def _first_line(message: Any) -> str:
    text = (
        ""
        if message is None or (isinstance(message, float) and math.isnan(message))
        else str(message)
    )
    return text.strip().splitlines()[0][:200] if text.strip() else "(no message)"


def evaluate(
    frame: Rows,
    specs: Iterable[JobSpec],
    *,
    warning: float | None,
    critical: float | None,
) -> Verdict:
    """The verdict over the enabled jobs of `specs`, from `reports.job_status` rows; lags in
    minutes. Perfdata: each watermarked job's lag in seconds, with the thresholds."""
    verdict = Verdict()
    rows = {row["job_name"]: row for row in frame.records()}
    thresholds = ";".join("" if t is None else f"{t * 60:.0f}" for t in (warning, critical))
    for spec in specs:
        if not spec.enabled:
            continue
        row = rows.get(spec.name, {})
        watermark = row.get("watermark")
        lag = None if row.get("lag_minutes") is None else float(row["lag_minutes"])
        if row.get("last_outcome") == "FAILED":
            verdict.add(
                State.CRITICAL,
                f"{spec.name}: last run failed at {row['last_run_at']}: "
                f"{_first_line(row['last_error'])}",
            )
        if row.get("paused_by") is not None:  # owner, host, pid, since (reports.job_status)
            verdict.add(State.WARNING, f"{spec.name}: paused by {row['paused_by']}")
        if spec.has_watermark:
            if lag is None:
                if critical is not None or warning is not None:
                    state = State.CRITICAL if critical is not None else State.WARNING
                    verdict.add(state, f"{spec.name}: has never run")
            else:
                verdict.perfdata.append(f"{spec.name}_lag={lag * 60:.0f}s;{thresholds};0")
                if critical is not None and lag > critical:
                    verdict.add(State.CRITICAL, f"{spec.name}: lags {lag:g} min (> {critical:g})")
                elif warning is not None and lag > warning:
                    verdict.add(State.WARNING, f"{spec.name}: lags {lag:g} min (> {warning:g})")
        outcome = row.get("last_outcome") or "never ran"
        shown_lag = "-" if lag is None else f"{lag:g} min"
        verdict.details.append(
            f"{spec.name}: watermark {watermark or '-'}, lag {shown_lag}, last run {outcome}"
        )
        if spec.kind == "audit" and row.get("last_message"):
            # An audit's finding is its message: which days differ, which were repaired.
            verdict.details.append(f"{spec.name}: {_first_line(row['last_message'])}")
    return verdict
