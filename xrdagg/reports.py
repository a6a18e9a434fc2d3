"""Read-only reports over raw and statistics tables, as small tables of rows.

Plain rows, not DataFrames: `xrdagg status` and `check` run on the base install, which leaves
pandas out (it is the `data` extra).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Executable, desc, func, literal, select, union_all

from xrdagg.db.dialect import db_now
from xrdagg.db.tables import RAW_TABLES, t_agent, t_host_site, t_job_run, t_stats_avg
from xrdagg.jobs.normalize import is_clock_error
from xrdagg.jobs.numbers import odd_rows_by_reason
from xrdagg.jobs.pause import pauses
from xrdagg.rules import UNKNOWN
from xrdagg.sources import SOURCES
from xrdagg.topology.store import fill_resolution_cache, matches_pair, read_resolver


@dataclass(frozen=True)
class Rows:
    """A report: named columns and rows of plain Python values (None for SQL NULL)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def query(cls, conn: Connection, statement: Executable) -> Rows:
        """The result of `statement`."""
        result = conn.execute(statement)
        return cls(tuple(result.keys()), tuple(tuple(r) for r in result))

    @property
    def empty(self) -> bool:
        """Whether the report has no row."""
        return not self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        """The values of one column."""
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        """One dict a row, column name -> value."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def select(self, names: Sequence[str]) -> Rows:
        """The named columns only, in that order."""
        index = [self.columns.index(n) for n in names]
        return Rows(tuple(names), tuple(tuple(row[i] for i in index) for row in self.rows))

    def with_column(self, name: str, values: Iterable[Any]) -> Rows:
        """These rows with one more column at the end."""
        rows = tuple((*row, v) for row, v in zip(self.rows, values, strict=True))
        return Rows((*self.columns, name), rows)

    def to_text(self) -> str:
        """Aligned columns with a header line: numbers right-aligned, NULL shown as '-'."""
        cells = [[_cell(v) for v in row] for row in self.rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(self.columns)]
        numeric = [
            all(isinstance(v, int | float) for v in self.column(c) if v is not None)
            for c in self.columns
        ]

        def line(values: Sequence[str]) -> str:
            return " ".join(
                v.rjust(w) if right else v.ljust(w)
                for v, w, right in zip(values, widths, numeric, strict=True)
            ).rstrip()

        return "\n".join([line(self.columns), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def since(conn: Connection, days: float | None) -> datetime | None:
    """Database now minus `days` days (None when `days` is None): the start of a report's period."""
    if days is None:
        return None
    return conn.execute(select(db_now())).scalar_one() - timedelta(days=days)


def invalid_rows(conn: Connection, start: datetime | None = None) -> Rows:
    """Raw rows every computation excludes (SPEC §6), per source and reason."""
    parts = []
    for source, raw in RAW_TABLES.items():
        recent = raw.c.end_date > start if start is not None else literal(True)
        parts.append(
            select(
                literal(source.upper()).label("source"),
                literal("NULL INSERT_DATE").label("reason"),
                func.count().label("rows"),
            )
            .select_from(raw)
            .where(raw.c.insert_date.is_(None), recent)
        )
        parts.append(
            select(
                literal(source.upper()).label("source"),
                literal("END_DATE > INSERT_DATE + 1 day").label("reason"),
                func.count().label("rows"),
            )
            .select_from(raw)
            .where(is_clock_error(SOURCES[source]), recent)
        )
    return Rows.query(conn, union_all(*parts))


def odd_numbers(conn: Connection, start: datetime | None = None) -> Rows:
    """Valid raw rows holding a NaN, infinite or out-of-range number, per source and reason
    (their numbers count as 0 or unknown: `xrdagg.jobs.numbers`)."""
    rows = []
    for source in SOURCES.values():
        raw = source.raw
        recent = raw.c.end_date > start if start is not None else literal(True)
        for reason, count in conn.execute(odd_rows_by_reason(source, recent)):
            rows.append((source.label, reason, int(count)))
    return Rows(("source", "reason", "rows"), tuple(rows))


def unresolved(conn: Connection, start: datetime | None = None, limit: int = 30) -> Rows:
    """Domains whose hosts resolve to no site, by raw row count, per source and side.

    Fills the resolution cache for the rows considered first, so that rows no job has read yet
    are included. A server side named by SERVER_SITE is resolved by rule 1 and not listed.
    """
    where = {}
    for source, raw in RAW_TABLES.items():
        where[source] = (
            raw.c.insert_date > start if start is not None else raw.c.insert_date.is_not(None)
        )
    fill_resolution_cache(conn, read_resolver(conn), where)
    parts = []
    for source, raw in RAW_TABLES.items():
        for side, host, domain in (
            ("client", raw.c.client_host, raw.c.client_domain),
            ("server", raw.c.server_host, raw.c.server_domain),
        ):
            condition = [where[source], t_host_site.c.site == UNKNOWN]
            if side == "server":
                condition.append(
                    ~(func.length(func.trim(raw.c.server_site)) > 0) | raw.c.server_site.is_(None)
                )
            parts.append(
                select(
                    literal(source.upper()).label("source"),
                    literal(side).label("side"),
                    t_host_site.c.domain_name.label("domain"),
                    func.count().label("rows"),
                )
                .select_from(raw.join(t_host_site, matches_pair(t_host_site, host, domain)))
                .where(*condition)
                .group_by(t_host_site.c.domain_name)
            )
    found = Rows.query(conn, union_all(*parts))
    by_rows = sorted(found.rows, key=lambda row: -row[found.columns.index("rows")])  # stable
    return Rows(found.columns, tuple(by_rows[:limit]))


def top_site_pairs(conn: Connection, limit: int = 10) -> Rows:
    """The site pairs (server -> client) with the most bytes read, per source, from T_STATS_AVG."""
    avg = t_stats_avg
    statement = (
        select(
            avg.c.source,
            avg.c.src_site,
            avg.c.dst_site,
            func.sum(avg.c.read_bytes).label("read_bytes"),
            func.sum(avg.c.transfers_ended).label("transfers"),
        )
        .group_by(avg.c.source, avg.c.src_site, avg.c.dst_site)
        .order_by(desc("read_bytes"))
        .limit(limit)
    )
    return Rows.query(conn, statement)


def unresolved_share(conn: Connection) -> float:
    """Share of read volume in T_STATS_AVG with at least one side unresolved."""
    avg = t_stats_avg
    total = conn.execute(select(func.sum(avg.c.read_bytes))).scalar_one() or 0.0
    unknown = (
        conn.execute(
            select(func.sum(avg.c.read_bytes)).where(
                (avg.c.src_site == UNKNOWN) | (avg.c.dst_site == UNKNOWN)
            )
        ).scalar_one()
        or 0.0
    )
    return float(unknown) / float(total) if total else 0.0


def job_status(conn: Connection) -> Rows:
    """Per job: watermark, lag behind database now (minutes), its pauses (owner, host, pid, age;
    expired ones included, as a problem), its last run and last error."""
    now = conn.execute(select(db_now())).scalar_one()
    runs = t_job_run
    last_id = select(runs.c.job_name, func.max(runs.c.run_id).label("run_id")).group_by(
        runs.c.job_name
    )
    error_id = (
        select(runs.c.job_name, func.max(runs.c.run_id).label("run_id"))
        .where(runs.c.outcome == "FAILED")
        .group_by(runs.c.job_name)
    )
    last_ids, error_ids = last_id.subquery("last_id"), error_id.subquery("error_id")
    last, error = runs.alias("last_run"), runs.alias("last_error")
    statement = (
        select(
            t_agent.c.job_name,
            t_agent.c.watermark,
            last.c.started_at.label("last_run_at"),
            last.c.outcome.label("last_outcome"),
            last.c.rows_read.label("last_rows"),
            last.c.duration_s.label("last_duration_s"),
            last.c.host_name.label("last_host"),
            last.c.message.label("last_message"),
            error.c.started_at.label("last_error_at"),
            error.c.message.label("last_error"),
        )
        .select_from(
            t_agent.outerjoin(last_ids, last_ids.c.job_name == t_agent.c.job_name)
            .outerjoin(last, last.c.run_id == last_ids.c.run_id)
            .outerjoin(error_ids, error_ids.c.job_name == t_agent.c.job_name)
            .outerjoin(error, error.c.run_id == error_ids.c.run_id)
        )
        .order_by(t_agent.c.job_name)
    )
    status = Rows.query(conn, statement)
    held: dict[str, list[str]] = {}
    for p in pauses(conn):
        held.setdefault(p.job_name, []).append(p.describe(now))
    status = status.with_column(
        "paused_by",
        [("; ".join(held[n]) if n in held else None) for n in status.column("job_name")],
    )
    return status.with_column(
        "lag_minutes",
        [
            None if w is None else round((now - w).total_seconds() / 60, 1)
            for w in status.column("watermark")
        ],
    )
