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
    tune_for_aggregation,
)
from xrdagg.db.types import Number, RawNumber, Text
from xrdagg.jobs.normalize import clipped_start, normalized_rows
from xrdagg.rules import BIN_SECONDS, DOMAIN_LEN, SITE_LEN, USER_LEN, VO_LEN
from xrdagg.sources import Source

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
    Column("src_site", Text(SITE_LEN), nullable=False),
    Column("src_domain", Text(DOMAIN_LEN), nullable=False),
    Column("dst_site", Text(SITE_LEN), nullable=False),
    Column("dst_domain", Text(DOMAIN_LEN), nullable=False),
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


def fill_stage(
    conn: Connection, source: Source, condition: ColumnElement[bool], params: dict[str, Any]
) -> int:
    """Replace the staged rows with the valid raw rows of `source` matching `condition`,
    normalised and resolved (SPEC §2-3); returns how many were staged.

    The resolution cache must already hold every (host, domain) pair of those rows.
    """
    tune_for_aggregation(conn)
    conn.execute(clear_stage(t_stage_norm))
    conn.execute(fill_stage_as(t_stage_norm, normalized_rows(source, condition)), params)
    # The planner knows nothing of a fresh temporary table: without statistics PostgreSQL guesses
    # a few hundred rows and picks nested loops for the spread join.
    analyze_table(conn, t_stage_norm)
    return int(conn.execute(select(func.count()).select_from(t_stage_norm)).scalar_one())


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
