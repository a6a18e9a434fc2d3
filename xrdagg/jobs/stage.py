"""The staged rows of one window or chunk: normalised once, grouped once, read by every
statistics statement.

Each rebuild (an incremental window, a recompute chunk, a topology apply) normalises and resolves
its raw rows once and writes them, grouped, into the session-private table `t_stage_group`; every
statistics statement then reads that table instead of re-reading raw rows and re-joining the
resolution cache.

The rows are grouped by everything any statistics table keys on (the start, end and arrival
bins, the sites and domains, VO and user), and each group carries the sums every table needs,
among them its rows by the class of the fraction of the file they read: T_STATS_ACCESS_PATTERN
only counts those, and as a key the class split 173k groups into 239k (1M realistic raw rows: a
catch-up of them took 11 % longer on SQLite and MariaDB, 3 % on PostgreSQL). A multi-bin row's
share of each bin it is active in (SPEC §4) depends only on its start and end, so the group
keeps three partial sums — the shares of the first bin, of each bin in between, and of the last
bin — computed per raw row exactly as a bin-by-bin spread would, and only added up in a
different order. On real data a group holds a few raw rows (about 6 in the realistic benchmark
mix), and the statistics statements read a sixth of the rows they would read from raw and
spread far fewer over their bins.

`t_stage_group` is a TEMPORARY table created by each fill (CREATE TABLE AS, dropped at commit on
PostgreSQL, by `release_stage` on SQLite), and a GLOBAL TEMPORARY table (ON COMMIT DELETE ROWS)
on Oracle, created by the migrations: either way each session sees only its own rows, so
concurrent jobs and recompute workers never meet in it. The Table below only names its columns
for the statements that read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    MetaData,
    Select,
    Table,
    case,
    cast,
    func,
    select,
)

from xrdagg.db.dialect import (
    analyze_table,
    as_real,
    clear_stage,
    computed_once,
    count_where,
    fill_stage_as,
    floor_to,
    greatest_of,
    sum_where,
)
from xrdagg.db.types import Number, RawNumber, Text
from xrdagg.jobs.normalize import clipped_start, is_valid_seconds, normalized_rows
from xrdagg.rules import BIN_SECONDS, DOMAIN_LEN, SITE_LEN, USER_LEN, VO_LEN
from xrdagg.sources import Source
from xrdagg.topology.store import (
    fill_resolution_cache,
    has_cached_pairs,
    read_resolver,
    require_topology,
)

# Kept out of the schema's metadata: Alembic must not see a per-session table as drift.
stage_metadata = MetaData()

# The class of the fraction of a file a row read (T_STATS_ACCESS_PATTERN's n_frac_* columns).
FRACTION_LT10, FRACTION_10_50, FRACTION_50_100, FRACTION_GE100, FRACTION_UNKNOWN = range(5)
FRACTION_COUNTS = ("n_frac_lt10", "n_frac_10_50", "n_frac_50_100", "n_frac_ge100", "n_frac_unknown")

t_stage_group = Table(
    "t_stage_group",
    stage_metadata,
    # The group's keys.
    Column("start_bin", BigInteger, nullable=False),  # epoch seconds, SPEC §2's clipped start
    Column("end_bin", BigInteger, nullable=False),
    Column("insert_bin", BigInteger, nullable=False),
    Column("src_site", Text(SITE_LEN)),
    Column("src_domain", Text(DOMAIN_LEN)),  # NULL: the pair is not cached yet (restaged)
    Column("dst_site", Text(SITE_LEN)),
    Column("dst_domain", Text(DOMAIN_LEN)),  # likewise
    Column("vo", Text(VO_LEN), nullable=False),
    Column("user_dn", Text(USER_LEN), nullable=False),
    # Its sums.
    Column("n_rows", BigInteger, nullable=False),
    # Its rows by the class of the fraction of the file they read (FRACTION_*, in that order).
    *(Column(name, BigInteger, nullable=False) for name in FRACTION_COUNTS),
    Column("read_b", Number(), nullable=False),
    Column("write_b", Number(), nullable=False),
    # A multi-bin row's shares of its first bin, of each bin in between and of its last bin
    # (0 for a single-bin row, whose bin takes the totals; its duration is in active_last).
    Column("read_first", Number(), nullable=False),
    Column("read_mid", Number(), nullable=False),
    Column("read_last", Number(), nullable=False),
    Column("write_first", Number(), nullable=False),
    Column("write_mid", Number(), nullable=False),
    Column("write_last", Number(), nullable=False),
    Column("active_first", Number(), nullable=False),
    Column("active_last", Number(), nullable=False),
    Column("file_size", Number(), nullable=False),  # of the rows whose size is known (> 0)
    Column("read_single_bytes", Number(), nullable=False),
    Column("read_single_ops", Number(), nullable=False),
    Column("read_vector_bytes", Number(), nullable=False),
    Column("read_vector_ops", Number(), nullable=False),
    Column("write_ops", Number(), nullable=False),
    Column("read_min", RawNumber()),
    Column("read_max", RawNumber()),
    Column("delay_seconds", Number(), nullable=False),  # arrival after the end, >= 0
    Column("max_delay_seconds", Number(), nullable=False),
    Column("odd_rows", BigInteger, nullable=False),  # rows with a number that is no measurement
)

GROUP_KEYS = (
    "start_bin", "end_bin", "insert_bin", "src_site", "src_domain", "dst_site", "dst_domain",
    "vo", "user_dn",
)  # fmt: skip


def grouped_rows(source: Source, condition: ColumnElement[bool], dialect: str) -> Select[Any]:
    """The valid raw rows of `source` matching `condition`, normalised (SPEC §2-3) and grouped,
    in the columns of `t_stage_group`, for the database named `dialect`."""
    # Both layers fenced: the normalised row's epoch seconds are used several times each by
    # the clipped start and the bins, and pulled up they were converted from dates again for
    # every use (1M rows: SQLite's staging 13.5 s -> 10.5 s, PostgreSQL's 5.3 s -> 4.6 s).
    row = computed_once(normalized_rows(source, condition), dialect).subquery("norm")
    start_s = clipped_start(row.c.start_given, row.c.end_s)
    size, read = row.c.file_size, row.c.read_b
    fraction = case(
        (
            size > 0,
            case(
                (read * 10 < size, FRACTION_LT10),
                (read * 2 < size, FRACTION_10_50),
                (read < size, FRACTION_50_100),
                else_=FRACTION_GE100,
            ),
        ),
        else_=FRACTION_UNKNOWN,
    )
    # Fenced (`computed_once`): PostgreSQL and SQLite would otherwise expand every reference
    # to start_s, the bins and the raw measures into their whole expressions again (one run on a
    # loaded machine: 9.6 s of backend CPU against 6.9 s fenced, 1M rows, PostgreSQL). Validity
    # is an integer comparison here, on the seconds the normalised row holds already.
    timed = computed_once(
        select(
            row,
            start_s.label("start_s"),
            floor_to(start_s, BIN_SECONDS).label("start_bin"),
            floor_to(row.c.end_s, BIN_SECONDS).label("end_bin"),
            floor_to(row.c.insert_s, BIN_SECONDS).label("insert_bin"),
            fraction.label("fraction_read"),
        ).where(is_valid_seconds(row.c.insert_s, row.c.end_s)),
        dialect,
    ).subquery("timed")
    r = timed.c
    multi = r.start_bin < r.end_bin
    duration = r.end_s - r.start_s  # > 0 when multi
    first_overlap = r.start_bin + BIN_SECONDS - r.start_s
    last_overlap = r.end_s - r.end_bin  # 0 for a row ending on a bin boundary

    def share(value: Any, overlap: Any) -> ColumnElement[Any]:
        # SPEC §4: a bin's share of a row's bytes is bytes × overlap / duration, per row, the
        # same arithmetic as a bin-by-bin spread of that row. Multi-bin rows only: whether a
        # row is one is part of the group's key, and a single-bin group's bin takes its totals.
        # Both sides doubles, divided by a plain `/`: SQLAlchemy's true division made the
        # duration a NUMERIC on PostgreSQL, converted to a double through text for each
        # multi-bin row and share (an int-to-double conversion is exact below 2^53 seconds).
        return sum_where(multi, (as_real(value) * overlap).op("/")(as_real(duration)))

    delay = greatest_of(r.insert_s - r.end_s, 0)
    keys = [r[k] for k in GROUP_KEYS]

    def total(value: Any) -> ColumnElement[Any]:
        # Converted per row, then summed: on PostgreSQL a NUMERIC sum keeps a heap state per
        # group and sum, and the doubles' sums cost 10-15 % less CPU in all, conversions
        # included (measured on 20k and 200k rows).
        return func.sum(cast(value, Number()))

    return select(
        *keys,
        func.count().label("n_rows"),
        *(
            count_where(r.fraction_read == kind).label(name)
            for kind, name in enumerate(FRACTION_COUNTS)
        ),
        total(r.read_b).label("read_b"),
        total(r.write_b).label("write_b"),
        share(r.read_b, first_overlap).label("read_first"),
        share(r.read_b, BIN_SECONDS).label("read_mid"),
        share(r.read_b, last_overlap).label("read_last"),
        share(r.write_b, first_overlap).label("write_first"),
        share(r.write_b, BIN_SECONDS).label("write_mid"),
        share(r.write_b, last_overlap).label("write_last"),
        sum_where(multi, as_real(first_overlap)).label("active_first"),
        func.sum(as_real(case((multi, last_overlap), else_=duration))).label("active_last"),
        total(case((r.file_size > 0, r.file_size), else_=0)).label("file_size"),
        total(r.read_single_bytes).label("read_single_bytes"),
        total(r.read_single_ops).label("read_single_ops"),
        total(r.read_vector_bytes).label("read_vector_bytes"),
        total(r.read_vector_ops).label("read_vector_ops"),
        total(r.write_ops).label("write_ops"),
        cast(func.min(r.read_min), Number()).label("read_min"),
        cast(func.max(r.read_max), Number()).label("read_max"),
        func.sum(as_real(delay)).label("delay_seconds"),
        func.max(as_real(delay)).label("max_delay_seconds"),
        count_where(r.odd == 1).label("odd_rows"),
    ).group_by(*keys)


@dataclass(frozen=True)
class Staged:
    """What a staging holds: its raw rows, and the first bin of each kind its groups touch
    (None when it holds none)."""

    rows: int
    new_pairs: int  # (host, domain) pairs resolved and cached for it
    odd_rows: int  # rows holding a number that is no measurement (xrdagg.jobs.numbers)
    first_start_bin: int | None
    first_end_bin: int | None
    first_insert_bin: int | None


def stage_resolved(
    conn: Connection,
    source: Source,
    condition: ColumnElement[bool],
    params: dict[str, Any],
    *,
    new_data: bool,
) -> Staged:
    """Replace the staged groups with the valid raw rows of `source` matching `condition`,
    normalised, resolved (SPEC §2-3) and grouped.

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
    if new_data or not has_cached_pairs(conn):
        new_pairs = fill_resolution_cache(conn, read_resolver(conn), {source.name: bound})
    summary = _fill(conn, source, condition, params)
    if summary.unresolved:
        new_pairs += fill_resolution_cache(conn, read_resolver(conn), {source.name: bound})
        summary = _fill(conn, source, condition, params)
    return Staged(
        rows=int(summary.rows or 0),
        new_pairs=new_pairs,
        odd_rows=int(summary.odd_rows or 0),
        first_start_bin=summary.first_start_bin,
        first_end_bin=summary.first_end_bin,
        first_insert_bin=summary.first_insert_bin,
    )


def _fill(
    conn: Connection, source: Source, condition: ColumnElement[bool], params: dict[str, Any]
) -> Any:
    conn.execute(clear_stage(t_stage_group))
    grouped = grouped_rows(source, condition, conn.dialect.name)
    groups = conn.execute(fill_stage_as(t_stage_group, grouped), params).rowcount
    # The planner knows nothing of a fresh temporary table: without statistics PostgreSQL guesses
    # a few hundred rows and picks nested loops for the spread join (right for a small stage).
    analyze_table(conn, t_stage_group, groups)
    return conn.execute(_SUMMARY).one()


def _summary() -> Select[Any]:
    stage = t_stage_group.c
    # A side whose (host, domain) pair the cache does not hold yet has a NULL domain (the
    # cache's domain_name never is).
    missing = stage.src_domain.is_(None) | stage.dst_domain.is_(None)
    return select(
        func.sum(stage.n_rows).label("rows"),
        func.sum(stage.odd_rows).label("odd_rows"),
        func.max(case((missing, 1), else_=0)).label("unresolved"),
        func.min(stage.start_bin).label("first_start_bin"),
        func.min(stage.end_bin).label("first_end_bin"),
        func.min(stage.insert_bin).label("first_insert_bin"),
    )


_SUMMARY = _summary()


def end_date_span(conn: Connection, source: Source) -> tuple[datetime, datetime] | None:
    """The first and the last END_DATE of the raw table (None when it is empty): two reads of
    its END_DATE index (one MIN or MAX a query, which every database answers from the index)."""
    end_date = source.raw.c.end_date
    first = conn.execute(select(func.min(end_date))).scalar()
    last = conn.execute(select(func.max(end_date))).scalar()
    return None if first is None or last is None else (first, last)


def share_of_span(
    span: tuple[datetime, datetime] | None, ranges: Sequence[tuple[datetime, datetime]]
) -> float:
    """The share of the raw END_DATE `span` that the END_DATE `ranges` cover (0 to 1): rows
    arrive at a steady rate, so about the share of the raw rows they hold. With it a rebuild
    asks the dialect whether to read its rows by a scan (`dialect.prefers_scan`)."""
    if span is None or not ranges:
        return 0.0
    first, last = span
    covered = sum(
        (max(min(hi, last) - max(lo, first), timedelta(0)) for lo, hi in ranges), timedelta(0)
    )
    return min(covered / (last - first), 1.0) if last > first else 1.0


def release_stage(conn: Connection) -> None:
    """Drop (or empty) the staged rows now: SQLite keeps a temporary table past the commit."""
    conn.execute(clear_stage(t_stage_group))
