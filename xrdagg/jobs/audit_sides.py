"""The two sides of every audit check (`xrdagg.jobs.audit`), per source and UTC day: sums over
the valid raw rows under a watermark, and the same sums as the statistics hold them.

See `xrdagg.jobs.audit` for what is compared and why; this module only computes and compares.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, cast, func, select

from xrdagg.db.dialect import (
    computed_once,
    epoch_seconds,
    floor_to,
    greatest_of,
    tune_for_aggregation,
    whole_quotient,
)
from xrdagg.db.tables import t_msg_rate, t_stats_access_pattern, t_stats_avg, t_user_activity
from xrdagg.db.types import Number
from xrdagg.jobs.kind import BEGINNING
from xrdagg.jobs.normalize import clipped_start, is_valid_seconds
from xrdagg.rules import (
    BIN_SECONDS,
    DAY_SECONDS,
    MAX_TRANSFER_SECONDS,
    at_epoch_seconds,
    seconds_since_epoch,
)
from xrdagg.sources import Source

BINS_PER_DAY = DAY_SECONDS // BIN_SECONDS
DAY = timedelta(days=1)
# Read bytes are summed as doubles on both sides: exact while a day's sum stays below 2**53
# (9 PB), beyond that sums in another order differ in their last bits. The counts catch a late
# or deleted row whatever its size; the bytes catch a row replaced by one of another size.
BYTES_TOLERANCE = 0.5
BYTES_RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class DayDifference:
    """One (source, day) whose statistics disagree with its raw rows: check -> (raw, stats)."""

    source: str
    day: datetime
    checks: dict[str, tuple[float, float]]

    @property
    def reason(self) -> str:
        """What the difference most likely is, for the operator."""
        raw, stats = self.checks.get("ended", self.checks.get("arrived", (0.0, 0.0)))
        if "ended" not in self.checks and "arrived" not in self.checks:
            return "rows differ at equal counts (rows replaced, or spread from another day)"
        if raw > stats:
            return f"{raw - stats:.0f} raw row(s) under the watermark never counted (late rows)"
        if raw < stats:
            return f"{stats - raw:.0f} counted row(s) no longer in raw (deleted), or counted twice"
        return "the same number of rows, but not the same rows"

    def as_dict(self) -> dict[str, Any]:
        """The difference as plain JSON values."""
        return {
            "source": self.source,
            "day": self.day.strftime("%Y-%m-%d"),
            "reason": self.reason,
            "checks": {k: {"raw": r, "stats": s} for k, (r, s) in sorted(self.checks.items())},
        }


def _day_s(seconds: ColumnElement[int]) -> ColumnElement[int]:
    return floor_to(seconds, DAY_SECONDS)


def _raw_groups(
    conn: Connection, source: Source, watermark: datetime, where: Sequence[ColumnElement[bool]]
) -> list[Any]:
    """Per (end day, start day, arrival day) of the valid raw rows under the watermark that
    satisfy `where` (days as epoch seconds of their midnight): their count; the sums of their
    end and (clipped) start times, as seconds into their day; of their end, start and arrival
    bins, as positions in their day (0-143); and of their read bytes.

    The times are converted once per row in subqueries the database keeps apart
    (`computed_once`), and validity (SPEC §6) is then an integer comparison: on SQLite and
    PostgreSQL this made the scan two to three times faster. Offsets into the day are small
    integers, which PostgreSQL sums far faster than the NUMERIC of a sum of BIGINTs.
    """
    raw = source.raw
    dialect = conn.dialect.name
    read_b = greatest_of(func.coalesce(raw.c.read_bytes_at_close, raw.c.read_bytes, 0), 0)
    converted = computed_once(
        select(
            epoch_seconds(raw.c.end_date).label("end_s"),
            epoch_seconds(raw.c.start_date).label("start_given"),
            epoch_seconds(raw.c.insert_date).label("insert_s"),
            cast(read_b, Number()).label("read_b"),
        ).where(raw.c.insert_date <= watermark, *where),
        dialect,
    ).subquery("converted")
    valid = is_valid_seconds(converted.c.insert_s, converted.c.end_s)
    start_s = clipped_start(converted.c.start_given, converted.c.end_s)
    timed = computed_once(
        select(
            converted.c.end_s,
            start_s.label("start_s"),
            converted.c.insert_s,
            converted.c.read_b,
            _day_s(converted.c.end_s).label("end_day"),
            _day_s(start_s).label("start_day"),
            _day_s(converted.c.insert_s).label("insert_day"),
        ).where(valid),
        dialect,
    ).subquery("audited")

    def into_day(seconds: ColumnElement[int], day: ColumnElement[int]) -> ColumnElement[int]:
        return func.sum(cast(seconds - day, Integer()))

    def position(seconds: ColumnElement[int], day: ColumnElement[int]) -> ColumnElement[int]:
        offset = floor_to(seconds - day, BIN_SECONDS)
        return func.sum(cast(whole_quotient(offset, BIN_SECONDS), Integer()))

    t = timed.c
    return list(
        conn.execute(
            select(
                t.end_day,
                t.start_day,
                t.insert_day,
                func.count().label("n"),
                into_day(t.end_s, t.end_day).label("end_s"),
                into_day(t.start_s, t.start_day).label("start_s"),
                position(t.end_s, t.end_day).label("end_bin"),
                position(t.start_s, t.start_day).label("start_bin"),
                position(t.insert_s, t.insert_day).label("insert_bin"),
                func.sum(t.read_b).label("read_b"),
            ).group_by(t.end_day, t.start_day, t.insert_day)
        )
    )


def _scans(
    source: Source, day_from: datetime | None, day_to: datetime | None
) -> list[tuple[list[ColumnElement[bool]], bool]]:
    """The raw rows a range needs, as (conditions, whether their end and activity count) per
    scan. Unbounded: one scan of everything. Bounded: the rows ending in the range or up to 7
    days after it (they may be active in it), which also gives the arrivals of most rows; and
    the rows arriving in the range that end before it (late rows), for their arrivals only.
    """
    raw = source.raw
    if day_from is None and day_to is None:
        return [([], True)]
    by_end: list[ColumnElement[bool]] = []
    arrivals: list[ColumnElement[bool]] = []
    if day_from is not None:
        by_end.append(raw.c.end_date >= day_from)
        arrivals += [raw.c.insert_date >= day_from, raw.c.end_date < day_from]
    if day_to is not None:
        reach = day_to + DAY + timedelta(seconds=MAX_TRANSFER_SECONDS)
        by_end.append(raw.c.end_date < reach)
        arrivals.append(raw.c.insert_date < day_to + DAY)
    scans = [(by_end, True)]
    if day_from is not None:
        scans.append((arrivals, False))
    return scans


def raw_side(
    conn: Connection,
    source: Source,
    watermark: datetime,
    day_from: datetime | None,
    day_to: datetime | None,
) -> tuple[dict[int, dict[str, float]], dict[int, set[int]], int]:
    """The raw side of every check, per day (epoch seconds of its midnight); the arrival days
    of the rows ending on each day; and the raw rows the scans read."""
    days: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    arrivals: dict[int, set[int]] = defaultdict(set)
    total = 0
    for where, ending in _scans(source, day_from, day_to):
        for g in _raw_groups(conn, source, watermark, where):
            n = int(g.n)
            total += n
            arrived = days[int(g.insert_day)]
            arrived["arrived"] += n
            arrived["arrival_bins"] += int(g.insert_bin)
            if ending:
                _add_ending(days, source, g, n)
                arrivals[int(g.end_day)].add(int(g.insert_day))
    return days, arrivals, total


def _add_ending(days: dict[int, dict[str, float]], source: Source, g: Any, n: int) -> None:
    """The end-day and activity checks of one group of rows (same end, start and arrival day):
    a row's share of a day is linear in its start and end, so the group's sums give it."""
    ed, sd = int(g.end_day), int(g.start_day)
    end_s, start_s = int(g.end_s), int(g.start_s)  # seconds into their days, summed
    end_bin, start_bin = int(g.end_bin), int(g.start_bin)  # positions in their days, summed
    end = days[ed]
    end["ended"] += n
    end["end_bins"] += end_bin
    if source.has_users:
        end["read_bytes"] += float(g.read_b or 0)
    if sd == ed:
        end["active_bins"] += end_bin - start_bin + n
        end["active_seconds"] += end_s - start_s
        return
    # Rows spanning days: their end day from its midnight, their start day to its end, and
    # every day between whole.
    end["active_bins"] += end_bin + n
    end["active_seconds"] += end_s
    start = days[sd]
    start["active_bins"] += n * BINS_PER_DAY - start_bin
    start["active_seconds"] += n * DAY_SECONDS - start_s
    for middle in range(sd + DAY_SECONDS, ed, DAY_SECONDS):
        days[middle]["active_bins"] += n * BINS_PER_DAY
        days[middle]["active_seconds"] += n * DAY_SECONDS


def stats_side(
    conn: Connection, source: Source, day_from: datetime | None, day_to: datetime | None
) -> dict[int, dict[str, float]]:
    """The statistics side of every check, per day (epoch seconds of its midnight)."""
    days: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def per_day(table: Any, sums: dict[str, ColumnElement[Any]], positions: dict[str, str]) -> None:
        # Grouped by the bin as stored (no conversion a row); days and positions in Python,
        # from at most 144 groups a day.
        statement = select(
            table.c.bin_start, *(func.sum(v).label(k) for k, v in sums.items())
        ).group_by(table.c.bin_start)
        if "source" in table.c:
            statement = statement.where(table.c.source == source.label)
        if day_from is not None:
            statement = statement.where(table.c.bin_start >= day_from)
        if day_to is not None:
            statement = statement.where(table.c.bin_start < day_to + DAY)
        for row in conn.execute(statement):
            bin_s = seconds_since_epoch(row.bin_start)
            day, position = bin_s - bin_s % DAY_SECONDS, (bin_s % DAY_SECONDS) // BIN_SECONDS
            for name in sums:
                value = float(getattr(row, name) or 0)
                days[day][name] += value
                if name in positions:  # the sum weighted by the bin's position in its day
                    days[day][positions[name]] += value * position

    avg = t_stats_avg
    per_day(
        avg,
        {
            "ended": avg.c.transfers_ended,
            "active_bins": avg.c.transfers_active,
            "active_seconds": avg.c.active_seconds,
        },
        positions={"ended": "end_bins"},
    )
    if source.has_users:
        ua, ap = t_user_activity, t_stats_access_pattern
        per_day(ua, {"ended_users": ua.c.accesses, "read_bytes": ua.c.read_bytes}, {})
        per_day(ap, {"ended_access": ap.c.accesses}, {})
    msg = t_msg_rate
    per_day(msg, {"arrived": msg.c.messages}, positions={"arrived": "arrival_bins"})
    return days


# The statistics-side names compared with each raw-side check.
_CHECKS: dict[str, tuple[str, ...]] = {
    "ended": ("ended",),
    "end_bins": ("end_bins",),
    "active_bins": ("active_bins",),
    "active_seconds": ("active_seconds",),
    "arrived": ("arrived",),
    "arrival_bins": ("arrival_bins",),
}
_FED_CHECKS = {"ended": ("ended_users", "ended_access"), "read_bytes": ("read_bytes",)}


def _differs(check: str, raw: float, stats: float) -> bool:
    if check == "read_bytes":
        scale = max(abs(raw), abs(stats))
        return abs(raw - stats) > BYTES_TOLERANCE + BYTES_RELATIVE_TOLERANCE * scale
    return round(raw) != round(stats)


def compare_source(
    conn: Connection,
    source: Source,
    watermark: datetime | None,
    day_from: datetime | None,
    day_to: datetime | None,
) -> tuple[list[DayDifference], set[datetime], int, int]:
    """The days of `source` in [day_from, day_to] (None: unbounded) whose statistics differ from
    the raw rows under `watermark`; with the days checked and the raw rows read."""
    # Grouping a few hundred thousand rows: in memory, by hashing (PostgreSQL's settings).
    tune_for_aggregation(conn)
    raw, arrivals, total = raw_side(conn, source, watermark or BEGINNING, day_from, day_to)
    stats = stats_side(conn, source, day_from, day_to)
    lo = None if day_from is None else seconds_since_epoch(day_from)
    hi = None if day_to is None else seconds_since_epoch(day_to)
    days = sorted(
        d for d in set(raw) | set(stats) if (lo is None or d >= lo) and (hi is None or d <= hi)
    )
    checks = dict(_CHECKS)
    if source.has_users:
        checks = {**checks, "read_bytes": _FED_CHECKS["read_bytes"]}
        checks["ended"] = ("ended", *_FED_CHECKS["ended"])
    differences = []
    for day in days:
        found: dict[str, tuple[float, float]] = {}
        for check, names in checks.items():
            raw_value = raw[day][check] if day in raw else 0.0
            for name in names:
                stats_value = stats[day][name] if day in stats else 0.0
                if _differs(check, raw_value, stats_value):
                    label = check if name == check or name == names[0] else f"{check}:{name}"
                    found[label] = (round(raw_value, 3), round(stats_value, 3))
        if found:
            differences.append(DayDifference(source.name, at_epoch_seconds(day), found))
    spread = _spread_days(differences, set(raw) | set(stats), arrivals)
    return differences, spread, len(days), total


# The checks of a day's *ending* rows: when one differs, rows ending that day changed, and they
# may be spread over the 7 days before it.
_ENDING_CHECKS = ("ended", "end_bins", "read_bytes")
_ARRIVAL_CHECKS = ("arrived", "arrival_bins")


def _spread_days(
    differences: Sequence[DayDifference], known: set[int], arrivals: dict[int, set[int]]
) -> set[datetime]:
    """The days before each day whose ending rows changed that those rows may be active in (up
    to 7 days back, where either side holds anything), and the days the raw rows ending on it
    arrived on, that do not differ themselves.

    Counts cannot see these days: a late row and a deleted one that both span a whole day add
    and remove the same 144 bins and 86,400 seconds there, under other keys. A repair rebuilds
    them too, which bounds it at 8 days per changed end day. Likewise a late row's arrival day,
    where a deleted row's arrival in the same bin would cancel it; and the other way round, the
    end day of the raw rows that arrived on a day whose arrivals changed, where a deleted row
    ending in the same bin, as long, would cancel a late row's end (and that end day's days
    before it, as for any end day that changed)."""
    differing = {d.day for d in differences}

    def of(checks: tuple[str, ...]) -> set[int]:
        return {
            seconds_since_epoch(d.day)
            for d in differences
            if any(c.split(":")[0] in checks for c in d.checks)
        }

    arrived = of(_ARRIVAL_CHECKS)
    ending = of(_ENDING_CHECKS) | {end for end, on in arrivals.items() if on & arrived}
    spread: set[datetime] = set()
    for end in ending:
        end_day = at_epoch_seconds(end)
        if end_day not in differing:
            spread.add(end_day)
        for back in range(1, MAX_TRANSFER_SECONDS // DAY_SECONDS + 1):
            day = end_day - back * DAY
            if seconds_since_epoch(day) in known and day not in differing:
                spread.add(day)
        for arrival in arrivals.get(end, set()):
            if at_epoch_seconds(arrival) not in differing:
                spread.add(at_epoch_seconds(arrival))
    return spread
