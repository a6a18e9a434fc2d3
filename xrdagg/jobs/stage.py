"""The staged rows of one window or chunk: normalised once, read by every statistics statement.

Each rebuild (an incremental window, a recompute chunk, a topology apply) normalises and resolves
its raw rows once, into the session-private table `t_stage_norm`, and every statistics statement
then reads that table instead of re-reading raw rows and re-joining the resolution cache. This is
what makes a run cost a few passes over narrow rows rather than six joins over the raw table.

`t_stage_norm` is a TEMPORARY table created by each fill (CREATE TABLE AS, dropped at commit on
PostgreSQL, by `release_stage` on SQLite), and a GLOBAL TEMPORARY table (ON COMMIT DELETE ROWS)
on Oracle, created by the migrations: either way each session sees only its own rows, so
concurrent jobs and recompute workers never meet in it. The Table below only names its columns
for the statements that read it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    FromClause,
    MetaData,
    Subquery,
    Table,
    func,
    select,
)

from xrdagg.db.dialect import (
    analyze_table,
    clear_stage,
    fill_stage_as,
    floor_to,
)
from xrdagg.db.tables import t_host_site
from xrdagg.db.types import Number, RawNumber, Text
from xrdagg.jobs.normalize import clipped_start, normalized_rows
from xrdagg.rules import BIN_SECONDS, DOMAIN_LEN, SITE_LEN, USER_LEN, VO_LEN
from xrdagg.sources import Source
from xrdagg.topology.store import fill_resolution_cache, read_resolver, require_topology

# Kept out of the schema's metadata: Alembic must not see a per-session table as drift.
stage_metadata = MetaData()

t_stage_norm = Table(
    "t_stage_norm",
    stage_metadata,
    Column("insert_s", BigInteger, nullable=False),
    Column("end_s", BigInteger, nullable=False),
    Column("start_given", BigInteger),  # START_DATE as it came: NULL or after the end too
    Column("read_b", Number(), nullable=False),
    Column("write_b", Number(), nullable=False),
    Column("src_site", Text(SITE_LEN)),
    Column("src_domain", Text(DOMAIN_LEN)),  # NULL: the pair is not cached yet (restaged)
    Column("dst_site", Text(SITE_LEN)),
    Column("dst_domain", Text(DOMAIN_LEN)),  # likewise
    Column("vo", Text(VO_LEN), nullable=False),
    Column("user_dn", Text(USER_LEN), nullable=False),
    Column("file_size", RawNumber()),
    Column("read_single_bytes", Number(), nullable=False),
    Column("read_single_ops", Number(), nullable=False),
    Column("read_vector_bytes", Number(), nullable=False),
    Column("read_vector_ops", Number(), nullable=False),
    Column("write_ops", Number(), nullable=False),
    Column("read_min", RawNumber()),
    Column("read_max", RawNumber()),
)


def stage_resolved(
    conn: Connection,
    source: Source,
    condition: ColumnElement[bool],
    params: dict[str, Any],
    *,
    new_data: bool,
) -> tuple[int, int]:
    """Replace the staged rows with the valid raw rows of `source` matching `condition`,
    normalised and resolved (SPEC §2-3); returns (rows staged, pairs newly resolved).

    `new_data` (an incremental window) expects hosts never seen before: their pairs are
    resolved and cached first, by one pass over the window's raw rows, and the rows staged once.
    A rebuild of old data (a recompute chunk, a topology apply) finds its pairs cached: its
    rows are staged at once against the cache as it is, and only if a pair is missing (a row
    that arrived behind the watermark of an earlier run) is it resolved and the rows staged
    again. Either way no row is lost: a pair the cache lacks leaves its side's domain NULL.
    The transaction should be tuned for bulk work (`tune_for_aggregation`).
    """
    require_topology(conn)  # even when every pair is cached: a run needs its topology
    new_pairs = 0
    bound = condition.params(params)
    if new_data or not _has_any_pair(conn):
        new_pairs = fill_resolution_cache(conn, read_resolver(conn), {source.name: bound})
    staged = _fill(conn, source, condition, params)
    if staged and _has_unresolved(conn):
        new_pairs += fill_resolution_cache(conn, read_resolver(conn), {source.name: bound})
        staged = _fill(conn, source, condition, params)
    return staged, new_pairs


def _fill(
    conn: Connection, source: Source, condition: ColumnElement[bool], params: dict[str, Any]
) -> int:
    conn.execute(clear_stage(t_stage_norm))
    conn.execute(fill_stage_as(t_stage_norm, normalized_rows(source, condition)), params)
    # The planner knows nothing of a fresh temporary table: without statistics PostgreSQL guesses
    # a few hundred rows and picks nested loops for the spread join.
    analyze_table(conn, t_stage_norm)
    return int(conn.execute(select(func.count()).select_from(t_stage_norm)).scalar_one())


def _has_any_pair(conn: Connection) -> bool:
    return conn.execute(select(t_host_site.c.host_key).limit(1)).first() is not None


def _has_unresolved(conn: Connection) -> bool:
    """Whether a staged row met a (host, domain) pair the cache does not hold yet: its domain
    is NULL (the cache's domain_name never is)."""
    stage = t_stage_norm
    missing = stage.c.src_domain.is_(None) | stage.c.dst_domain.is_(None)
    return conn.execute(select(stage.c.end_s).where(missing).limit(1)).first() is not None


def staged_rows(stage: FromClause = t_stage_norm) -> Subquery:
    """The staged rows with their derived times (epoch seconds): start_s (SPEC §2's clipped
    start), start_bin, end_bin and insert_bin (10-minute bins). Integer arithmetic on staged
    columns: each statement derives them again for next to nothing."""
    start_s = clipped_start(stage.c.start_given, stage.c.end_s)
    return select(
        stage,
        start_s.label("start_s"),
        floor_to(start_s, BIN_SECONDS).label("start_bin"),
        floor_to(stage.c.end_s, BIN_SECONDS).label("end_bin"),
        floor_to(stage.c.insert_s, BIN_SECONDS).label("insert_bin"),
    ).subquery("staged")


def staged_bounds(conn: Connection) -> Any:
    """(first start bin, first end bin, first insert bin) of the staged rows."""
    stage = staged_rows()
    return conn.execute(
        select(
            func.min(stage.c.start_bin).label("first_start_bin"),
            func.min(stage.c.end_bin).label("first_end_bin"),
            func.min(stage.c.insert_bin).label("first_insert_bin"),
        )
    ).one()


def release_stage(conn: Connection) -> None:
    """Drop (or empty) the staged rows now: SQLite keeps a temporary table past the commit."""
    conn.execute(clear_stage(t_stage_norm))
