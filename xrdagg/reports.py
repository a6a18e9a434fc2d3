"""Read-only reports over raw and statistics tables, as pandas DataFrames."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, desc, func, literal, select, union_all

from xrdagg.db.dialect import db_now
from xrdagg.db.tables import RAW_TABLES, t_agent, t_host_site, t_job_run, t_stats_avg
from xrdagg.jobs.normalize import is_clock_error
from xrdagg.rules import UNKNOWN
from xrdagg.sources import SOURCES
from xrdagg.topology.store import fill_resolution_cache, matches_pair, read_resolver


def since(conn: Connection, days: float | None) -> datetime | None:
    """Database now minus `days` days (None when `days` is None): the start of a report's period."""
    if days is None:
        return None
    return conn.execute(select(db_now())).scalar_one() - timedelta(days=days)


def invalid_rows(conn: Connection, start: datetime | None = None) -> pd.DataFrame:
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
    return pd.read_sql(union_all(*parts), conn)


def unresolved(conn: Connection, start: datetime | None = None, limit: int = 30) -> pd.DataFrame:
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
    frame = pd.read_sql(union_all(*parts), conn)
    return (
        frame.sort_values("rows", ascending=False, kind="stable").head(limit).reset_index(drop=True)
    )


def top_site_pairs(conn: Connection, limit: int = 10) -> pd.DataFrame:
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
    return pd.read_sql(statement, conn)


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


def job_status(conn: Connection) -> pd.DataFrame:
    """Per job: watermark, lag behind database now (minutes), pause, its last run and last error."""
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
            t_agent.c.paused_by,
            last.c.started_at.label("last_run_at"),
            last.c.outcome.label("last_outcome"),
            last.c.rows_read.label("last_rows"),
            last.c.duration_s.label("last_duration_s"),
            last.c.host_name.label("last_host"),
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
    frame = pd.read_sql(statement, conn)
    frame["lag_minutes"] = [
        None
        if pd.isna(w)
        else round((now - pd.Timestamp(w).to_pydatetime()).total_seconds() / 60, 1)
        for w in frame["watermark"]
    ]
    return frame
