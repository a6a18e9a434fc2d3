"""`xrdagg audit` and the 'audit' job kind: do the statistics still hold what the raw rows under
each job's watermark say they should (SPEC §6), day by day, without recomputing them?

Raw rows that arrive *behind* a job's watermark (a collector transaction committed after the
safety lag, a replayed queue, an export loaded with its original insert times) are never seen by
an incremental run, and raw rows deleted after they were counted stay counted. Both break the
invariant silently. The audit finds the days where that happened by comparing, per source and
UTC day, a few sums the statistics already hold with the same sums over the raw rows:

check            raw side (valid rows, INSERT_DATE <= watermark)   statistics side
ended            rows whose END_DATE is in the day                 sum TRANSFERS_ENDED (AVG);
                                                                   FED: sum ACCESSES (USER_ACTIVITY
                                                                   and ACCESS_PATTERN) too
end_bins         sum of the end bins' positions in the day         sum TRANSFERS_ENDED x position
active_bins      10-minute bins of the day each row is active in   sum TRANSFERS_ACTIVE
active_seconds   seconds of the day each row is active             sum ACTIVE_SECONDS
read_bytes (FED) read bytes of the rows ending in the day          sum READ_BYTES (USER_ACTIVITY)
arrived          rows whose INSERT_DATE is in the day              sum MESSAGES (T_MSG_RATE)
arrival_bins     sum of their arrival bins' positions in the day   sum MESSAGES x position

The raw side is one grouped scan returning a row per (end day, start day, arrival day) (with a
range: the rows ending in it or up to 7 days after, and the late rows arriving in it); the
per-day active bins and seconds of rows spanning several days follow from the groups' sums by
arithmetic (a row's share of a day is linear in its start
and end), so no row is spread and nothing is staged. A day differs when any check differs.

A repair rebuilds exactly the differing days through the recompute machinery
(`xrdagg.jobs.chunks`, `xrdagg.jobs.recompute`): a late row is then counted in its end day, the
days it spreads over, and its arrival day, because each of those days differs.

The two sides of every check are computed in `xrdagg.jobs.audit_sides`; this module audits,
repairs, and is the job kind.

What it cannot see: a row replaced by another with the same end bin, arrival bin, duration and
(FED) read bytes; changed values of a row (other than those); days outside --from/--to (a late
row whose arrival day lies outside the range is counted in its end day only once its arrival day
is audited too); rows whose resolution changed (that is `xrdagg topology apply`'s job).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, exc, func, select

from xrdagg.db.dialect import is_lock_busy
from xrdagg.errors import JobBusyError, XrdaggError
from xrdagg.jobs import agent
from xrdagg.jobs.audit_sides import DAY, DayDifference, compare_source
from xrdagg.jobs.chunks import DEFAULT_MAX_CHUNK_ROWS, plan_chunks, rebuild_chunk
from xrdagg.jobs.kind import BEGINNING, RunContext, RunCounts
from xrdagg.jobs.pause import pauses
from xrdagg.jobs.recompute import Recompute
from xrdagg.jobs.specs import JobSpec
from xrdagg.rules import midnight
from xrdagg.sources import SOURCES, Source

DEFAULT_AUDIT_DAYS = 7  # the audit job's range when its `days` is not set


@dataclass
class AuditResult:
    """What an audit compared, found, and (with repair) rebuilt."""

    day_from: datetime | None
    day_to: datetime | None
    watermarks: dict[str, datetime | None] = field(default_factory=dict)  # per source
    days_checked: dict[str, int] = field(default_factory=dict)  # per source
    raw_rows: int = 0  # raw rows under the watermarks read by the end-date scans
    differences: list[DayDifference] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # source -> why it was not audited
    repaired: list[DayDifference] = field(default_factory=list)
    repaired_rows: int = 0  # raw rows ending in the rebuilt days
    # Per source: days that do not differ but may hold the spread of rows that changed on a
    # differing day (`audit_sides._spread_days`); a repair rebuilds them too.
    spread_days: dict[str, set[datetime]] = field(default_factory=dict)
    # With `duplicates`: extra copies of a UNIQUE_ID in raw, per (source, END_DATE day of its
    # first copy). SPEC §6 counts them as often as they are there, so the statistics agree with
    # them; they are reported, not repaired (xrdagg never writes the collectors' tables).
    duplicates: dict[tuple[str, datetime], int] = field(default_factory=dict)

    def days_to_rebuild(self, source: str) -> list[datetime]:
        """The days a repair of `source` rebuilds: those that differ, and their spread days."""
        differing = {d.day for d in self.differences if d.source == source}
        return sorted(differing | (self.spread_days.get(source, set()) if differing else set()))

    @property
    def consistent(self) -> bool:
        """No day differs."""
        return not self.differences

    def summary(self) -> str:
        """One line for the run log and the operator."""
        checked = sum(self.days_checked.values())
        text = f"{checked} source-day(s) checked, {len(self.differences)} differ"
        if self.differences:
            shown = ", ".join(f"{d.source} {d.day:%Y-%m-%d}" for d in self.differences[:10]) + (
                " …" if len(self.differences) > 10 else ""
            )
            text += f" ({shown})"
        if self.repaired:
            spread = sum(len(self.days_to_rebuild(s)) for s in self.spread_days) - len(
                self.repaired
            )
            text += (
                f"; {len(self.repaired)} repaired, with {spread} day(s) before them their rows "
                f"may span ({self.repaired_rows} raw rows rebuilt)"
            )
        if self.duplicates:
            copies = sum(self.duplicates.values())
            text += f"; {copies} duplicate UNIQUE_ID row(s) in raw on {len(self.duplicates)} day(s)"
        for source, why in sorted(self.skipped.items()):
            text += f"; {source} not audited: {why}"
        return text

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON values."""

        def day(value: datetime | None) -> str | None:
            return None if value is None else value.strftime("%Y-%m-%d")

        return {
            "consistent": self.consistent,
            "from": day(self.day_from),
            "to": day(self.day_to),
            "watermarks": {
                s: None if w is None else w.strftime("%Y-%m-%d %H:%M:%S")
                for s, w in self.watermarks.items()
            },
            "days_checked": self.days_checked,
            "raw_rows": self.raw_rows,
            "differences": [d.as_dict() for d in self.differences],
            "repaired": [d.as_dict() for d in self.repaired],
            "rebuilt_days": {
                s: [d.strftime("%Y-%m-%d") for d in self.days_to_rebuild(s)]
                for s in sorted(self.spread_days)
                if self.repaired
            },
            "skipped": self.skipped,
            "duplicates": [
                {"source": s, "day": d.strftime("%Y-%m-%d"), "extra_copies": n}
                for (s, d), n in sorted(self.duplicates.items())
            ],
        }

    def to_json(self) -> str:
        """The result as a JSON document."""
        return json.dumps(self.as_dict(), indent=2)


# --- audit, and repair --------------------------------------------------------------------------


def source_jobs(jobs: Iterable[JobSpec], wanted: Sequence[str] = ()) -> dict[str, JobSpec]:
    """The 10-minute job of each source (only the `wanted` sources, when given); a source
    with two jobs is refused: their statistics would be counted twice anyway."""
    found: dict[str, JobSpec] = {}
    for job in jobs:
        if job.source is None or (wanted and job.source not in wanted):
            continue
        if job.source in found:
            raise XrdaggError(
                f"jobs {found[job.source].name} and {job.name} both aggregate source "
                f"{job.source}: the audit needs one job per source"
            )
        found[job.source] = job
    return found


def audit(
    conn: Connection,
    jobs: dict[str, JobSpec],
    day_from: datetime | None,
    day_to: datetime | None,
    *,
    lock: bool = False,
    duplicates: bool = False,
) -> AuditResult:
    """Compare each source's statistics with its raw rows under its job's watermark, in the
    caller's transaction (one snapshot: watermark and statistics are read together).

    `lock` takes each job's T_AGENT row first (a run in flight: JobBusyError), so that the
    days found can be repaired in the same transaction (`repair_in_transaction`). A job paused
    by a rebuild is not audited (its rebuild is changing the statistics).
    """
    result = AuditResult(day_from, day_to)
    for name, job in jobs.items():
        if lock:
            agent.ensure_agents(conn, [job.name])
            state = agent.lock_agent(conn, job.name, wait=False)
            watermark, paused = state.watermark, _paused_by(conn, job.name)
        else:
            watermark = agent.watermarks(conn).get(job.name)
            paused = _paused_by(conn, job.name)
        if paused is not None:
            result.skipped[name] = f"job {job.name} is paused by {paused}"
            continue
        result.watermarks[name] = watermark
        differences, spread, checked, rows = compare_source(
            conn, SOURCES[name], watermark, day_from, day_to
        )
        result.differences += differences
        result.spread_days[name] = spread
        result.days_checked[name] = checked
        result.raw_rows += rows
        if duplicates:
            found = raw_duplicates(conn, SOURCES[name], watermark, day_from, day_to)
            result.duplicates.update({(name, day): n for day, n in found.items()})
    return result


def raw_duplicates(
    conn: Connection,
    source: Source,
    watermark: datetime | None,
    day_from: datetime | None,
    day_to: datetime | None,
) -> dict[datetime, int]:
    """Extra copies of each UNIQUE_ID among the raw rows under the watermark ending in
    [day_from, day_to], per day of the first copy's END_DATE. A scan grouped by UNIQUE_ID:
    costlier than the counts, hence asked for (`xrdagg audit --duplicates`)."""
    raw = source.raw
    statement = select(
        func.min(raw.c.end_date).label("first_end"), (func.count() - 1).label("extra")
    ).where(raw.c.insert_date <= (watermark or BEGINNING))
    if day_from is not None:
        statement = statement.where(raw.c.end_date >= day_from)
    if day_to is not None:
        statement = statement.where(raw.c.end_date < day_to + DAY)
    copies = statement.group_by(raw.c.unique_id).having(func.count() > 1)
    found: dict[datetime, int] = defaultdict(int)
    for row in conn.execute(copies):
        found[midnight(row.first_end)] += int(row.extra)
    return dict(found)


def _paused_by(conn: Connection, job: str) -> str | None:
    """Who holds `job` paused (T_JOB_PAUSE, expired leases included: a rebuild may still run)."""
    held = pauses(conn, [job])
    return "; ".join(sorted({p.owner for p in held})) if held else None


def repair_in_transaction(
    conn: Connection,
    jobs: dict[str, JobSpec],
    result: AuditResult,
    max_chunk_rows: int = DEFAULT_MAX_CHUNK_ROWS,
) -> None:
    """Rebuild the differing days in the caller's transaction, chunk by chunk (as a recompute
    does), with the rows under each job's watermark. The jobs must be locked:
    `audit(lock=True)`."""
    for name, job in jobs.items():
        watermark = result.watermarks.get(name) or BEGINNING
        # Consecutive days together: their chunks are planned as a recompute's are.
        for first, last in _runs(result.days_to_rebuild(name)):
            for chunk in plan_chunks(conn, [job], first, last, max_chunk_rows):
                result.repaired_rows += rebuild_chunk(conn, chunk, watermark)
    result.repaired = list(result.differences)


def repair_with_recompute(
    engine: Engine,
    jobs: dict[str, JobSpec],
    result: AuditResult,
    *,
    max_chunk_rows: int = DEFAULT_MAX_CHUNK_ROWS,
    workers: int = 1,
) -> list[int]:
    """Rebuild the differing days with `xrdagg recompute`'s machinery: one recompute (ledger,
    paused jobs, resumable) per run of consecutive differing days of a source. Returns the
    recompute ids."""
    ids = []
    for name, job in jobs.items():
        for first, last in _runs(result.days_to_rebuild(name)):
            recompute = Recompute(engine, [job])
            recompute_id, chunks = recompute.start(first, last, max_chunk_rows, workers=workers)
            try:
                done = recompute.run(recompute_id, chunks, workers=workers)
            except BaseException:
                recompute.interrupted(recompute_id)
                raise
            result.repaired_rows += sum(r.rows_read for r in done)
            ids.append(recompute_id)
        result.repaired += [d for d in result.differences if d.source == name]
    return ids


def _runs(days: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive days grouped: [(first, last), ...]."""
    runs: list[tuple[datetime, datetime]] = []
    for day in days:
        if runs and day - runs[-1][1] == DAY:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


# --- the job kind -------------------------------------------------------------------------------


def run(conn: Connection, context: RunContext) -> RunCounts:
    """The 'audit' kind: the last `days` days (today included) of every source; with `repair`,
    the differing days are rebuilt in the run's transaction, holding the 10-minute jobs' locks.
    The days rebuilt are marked dirty: the daily job rolls them up."""
    spec = context.job
    today = midnight(context.now)
    day_from = today - ((spec.days or DEFAULT_AUDIT_DAYS) - 1) * DAY
    jobs = source_jobs(context.upstream_jobs)
    try:
        result = audit(conn, jobs, day_from, today, lock=spec.repair)
    except exc.DBAPIError as error:
        if not is_lock_busy(error):
            raise
        # Repairing needs the 10-minute jobs' locks; one of them is running right now.
        raise JobBusyError(
            f"job {spec.name}: a 10-minute job is running; the audit with repair runs next time"
        ) from None
    if spec.repair and result.differences:
        repair_in_transaction(conn, jobs, result)
    counts = RunCounts(
        window_lo=day_from,
        window_hi=today + DAY,
        rows_read=result.raw_rows,
        rows_written=len(result.repaired),
        message=result.summary(),
    )
    counts.days = [d.day for d in result.repaired]
    counts.days_differing = len(result.differences)
    return counts
