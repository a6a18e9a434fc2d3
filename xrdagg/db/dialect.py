"""Every difference between Oracle, PostgreSQL and SQLite, each as one named construct.

Statements elsewhere are written once with these constructs and SQLAlchemy compiles them for the
connection's dialect. Times are whole seconds since 1970-01-01 UTC ("epoch seconds") inside SQL,
and `UtcDate` values at the edges.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Integer,
    Select,
    String,
    Table,
    exc,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Float

from xrdagg.db.types import UtcDate

# --- scalar expressions -------------------------------------------------------------------------


def _render_as(cls: type[FunctionElement[Any]], **templates: str) -> None:
    """Register one SQL template per dialect ("default" for the rest); {0}, {1}… are the args."""
    for dialect, template in templates.items():

        def render(element: Any, compiler: Any, _template: str = template, **kw: Any) -> str:
            return _template.format(*(compiler.process(c, **kw) for c in element.clauses))

        if dialect == "default":
            compiles(cls)(render)
        else:
            compiles(cls, dialect)(render)


class epoch_seconds(FunctionElement[int]):  # noqa: N801 - reads as the SQL function it renders
    """Whole seconds since 1970-01-01 UTC of a DATE/TIMESTAMP expression."""

    type = Integer()
    inherit_cache = True


_render_as(
    epoch_seconds,
    # DATE arithmetic is in days; ROUND undoes the binary fraction of 1/86400.
    oracle="ROUND(({0} - DATE '1970-01-01') * 86400)",
    # date_part gives a double; EXTRACT a NUMERIC since PostgreSQL 14, a third slower to make.
    # Dates hold whole seconds, far inside a double's exact integers.
    postgresql="CAST(date_part('epoch', {0}) AS BIGINT)",
    sqlite="CAST(strftime('%s', {0}) AS INTEGER)",
)


class from_epoch(FunctionElement[Any]):  # noqa: N801
    """The UtcDate at a whole number of epoch seconds."""

    type = UtcDate()
    inherit_cache = True


_render_as(
    from_epoch,
    # An interval is exact, where DATE + n/86400 could land a fraction of a second off.
    oracle="(DATE '1970-01-01' + NUMTODSINTERVAL({0}, 'SECOND'))",
    postgresql="(TIMESTAMP '1970-01-01 00:00:00' + ({0}) * INTERVAL '1 second')",
    # datetime() returns 'YYYY-MM-DD HH:MM:SS', the storage form of UtcDate on SQLite.
    sqlite="datetime({0}, 'unixepoch')",
)


class floor_to(FunctionElement[int]):  # noqa: N801
    """floor_to(seconds, width): the start of the width-second bin holding `seconds` (>= 0)."""

    type = Integer()
    inherit_cache = True


_render_as(
    floor_to,
    oracle="(FLOOR(({0}) / {1}) * {1})",
    # PostgreSQL and SQLite divide integers as integers, truncating: floor for seconds >= 0.
    default="((({0}) / {1}) * {1})",
)


class whole_quotient(FunctionElement[int]):  # noqa: N801
    """whole_quotient(a, b): a / b for whole numbers a >= 0, b > 0 that b divides, as a whole
    number. (SQLAlchemy's `/` on integers renders a NUMERIC division on PostgreSQL, which makes
    an equality join on the result unhashable.)"""

    type = Integer()
    inherit_cache = True


_render_as(whole_quotient, oracle="FLOOR(({0}) / {1})", default="(({0}) / {1})")


class as_real(FunctionElement[float]):  # noqa: N801
    """A number in floating-point form, so that division does not truncate."""

    type = Float()
    inherit_cache = True


_render_as(
    as_real,
    oracle="({0})",  # NUMBER divides exactly
    postgresql="CAST({0} AS DOUBLE PRECISION)",
    sqlite="CAST({0} AS REAL)",
)


class greatest_of(FunctionElement[Any]):  # noqa: N801
    """The larger of two non-NULL arguments (GREATEST; SQLite's two-argument max())."""

    inherit_cache = True


_render_as(greatest_of, default="GREATEST({0}, {1})", sqlite="max({0}, {1})")


class least_of(FunctionElement[Any]):  # noqa: N801
    """The smaller of two non-NULL arguments (LEAST; SQLite's two-argument min())."""

    inherit_cache = True


_render_as(least_of, default="LEAST({0}, {1})", sqlite="min({0}, {1})")


class day_start(FunctionElement[Any]):  # noqa: N801
    """Midnight UTC of the day holding a date."""

    type = UtcDate()
    inherit_cache = True


_render_as(
    day_start,
    oracle="TRUNC({0})",
    postgresql="date_trunc('day', {0})",
    sqlite="datetime({0}, 'start of day')",
)


class truncated(FunctionElement[str]):  # noqa: N801
    """truncated(text, n): at most n characters (Oracle: bytes, the unit of its VARCHAR2 keys)."""

    type = String()
    inherit_cache = True


_render_as(truncated, oracle="SUBSTRB({0}, 1, {1})", default="SUBSTR({0}, 1, {1})")


class nonblank(FunctionElement[str]):  # noqa: N801
    """The text with surrounding spaces trimmed, or NULL when nothing is left.

    Oracle stores '' as NULL, so there TRIM alone does it; elsewhere NULLIF turns '' into NULL.
    """

    type = String()
    inherit_cache = True


_render_as(nonblank, oracle="TRIM({0})", default="NULLIF(TRIM({0}), '')")


class plus_seconds(FunctionElement[Any]):  # noqa: N801
    """plus_seconds(date, n): the date n whole seconds later."""

    type = UtcDate()
    inherit_cache = True


_render_as(
    plus_seconds,
    oracle="({0} + NUMTODSINTERVAL({1}, 'SECOND'))",
    postgresql="({0} + ({1}) * INTERVAL '1 second')",
    # SQLite keeps dates as 'YYYY-MM-DD HH:MM:SS' text, which datetime() returns too.
    sqlite="datetime({0}, '+' || ({1}) || ' seconds')",
)


class db_now(FunctionElement[Any]):  # noqa: N801
    """The database's current time, UTC, whole seconds. The host's clock is never used."""

    type = UtcDate()
    inherit_cache = True


_render_as(
    db_now,
    oracle="CAST(SYS_EXTRACT_UTC(SYSTIMESTAMP) AS DATE)",
    postgresql="CAST(timezone('UTC', clock_timestamp()) AS TIMESTAMP(0))",
    sqlite="datetime('now')",
)


# --- merging a SELECT into a table ---------------------------------------------------------------


class MergeInto(Executable, ClauseElement):
    """Add the rows of `source` into `table`, matching on `keys`.

    For a key already present, `add` columns are summed, `low` columns keep the smaller and
    `high` columns the larger value (NULL meaning "none"); other rows are inserted. With no
    measure columns it inserts only the missing keys. `source` must select exactly the table's
    column names. Rendered as MERGE on Oracle and INSERT ... ON CONFLICT elsewhere.
    """

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy reads it as a class attribute
        ("table", InternalTraversal.dp_clauseelement),
        ("source", InternalTraversal.dp_clauseelement),
        ("keys", InternalTraversal.dp_string_list),
        ("add", InternalTraversal.dp_string_list),
        ("low", InternalTraversal.dp_string_list),
        ("high", InternalTraversal.dp_string_list),
    ]

    def __init__(
        self,
        table: Table,
        source: Select[Any],
        *,
        keys: Sequence[str],
        add: Sequence[str] = (),
        low: Sequence[str] = (),
        high: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.source = source
        self.keys = list(keys)
        self.add = list(add)
        self.low = list(low)
        self.high = list(high)
        self.columns = [c.name for c in source.selected_columns]
        unknown = set(self.columns) - set(table.c.keys())
        if unknown:
            raise ValueError(f"{table.name}: the source selects unknown columns {sorted(unknown)}")

    def as_insert(self) -> Insert:
        """The same rows as a plain INSERT … SELECT: for a target range known to be empty (a
        recompute chunk after its DELETE, a first catch-up), where matching keys costs for
        nothing. Oracle can make it a direct-path insert; PostgreSQL skips the conflict probe."""
        # In key order: the primary key index is then filled left to right (measured: a fifth
        # less time for 60k rows into T_STATS_AVG's seven-column key on PostgreSQL).
        ordered = self.source.order_by(*(self.source.selected_columns[k] for k in self.keys))
        return self.table.insert().from_select(self.columns, ordered)


def _null_aware(op: str, old: str, new: str) -> str:
    # LEAST/GREATEST and SQLite's min/max return NULL when either side is NULL.
    return (
        f"CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} "
        f"WHEN {new} {op} {old} THEN {new} ELSE {old} END"
    )


def _assignments(element: MergeInto, old: str, new: str, prep: Any) -> list[str]:
    sets = [f"{prep(c)} = {old}.{prep(c)} + {new}.{prep(c)}" for c in element.add]
    sets += [
        f"{prep(c)} = " + _null_aware("<", f"{old}.{prep(c)}", f"{new}.{prep(c)}")
        for c in element.low
    ]
    sets += [
        f"{prep(c)} = " + _null_aware(">", f"{old}.{prep(c)}", f"{new}.{prep(c)}")
        for c in element.high
    ]
    return sets


@compiles(MergeInto, "oracle")
def _merge_oracle(element: MergeInto, compiler: Any, **kw: Any) -> str:
    prep = compiler.preparer.quote
    target = compiler.preparer.format_table(element.table)
    source = compiler.process(element.source, **kw)
    on = " AND ".join(f"tgt.{prep(k)} = src.{prep(k)}" for k in element.keys)
    cols = ", ".join(prep(c) for c in element.columns)
    vals = ", ".join(f"src.{prep(c)}" for c in element.columns)
    sql = f"MERGE INTO {target} tgt USING ({source}) src ON ({on})"
    sets = _assignments(element, "tgt", "src", prep)
    if sets:
        # Oracle's MERGE SET names the target column unqualified.
        sql += " WHEN MATCHED THEN UPDATE SET " + ", ".join(sets)
    return sql + f" WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})"


@compiles(MergeInto)
def _merge_on_conflict(element: MergeInto, compiler: Any, **kw: Any) -> str:
    prep = compiler.preparer.quote
    target = compiler.preparer.format_table(element.table)
    source = compiler.process(element.source, **kw)
    cols = ", ".join(prep(c) for c in element.columns)
    keys = ", ".join(prep(k) for k in element.keys)
    # The outer SELECT ... WHERE true avoids SQLite's INSERT-SELECT-ON-CONFLICT parsing ambiguity.
    sql = (
        f"INSERT INTO {target} ({cols}) SELECT {cols} FROM ({source}) src WHERE 1 = 1 "
        f"ON CONFLICT ({keys}) "
    )
    sets = _assignments(element, target, "excluded", prep)
    return sql + ("DO UPDATE SET " + ", ".join(sets) if sets else "DO NOTHING")


# --- locking and isolation -----------------------------------------------------------------------

# Job transactions read raw rows and the resolution cache in several statements: they must all
# see one snapshot. Oracle's SERIALIZABLE is snapshot isolation; SQLite is serializable anyway.
JOB_ISOLATION = {"oracle": "SERIALIZABLE", "postgresql": "REPEATABLE READ"}


def is_lock_busy(error: exc.DBAPIError) -> bool:
    """True when `error` says a row or database lock is held by someone else."""
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("55P03", "40001", "40P01"):  # lock not available / serialization / deadlock
        return True
    code = getattr(orig.args[0], "code", None) if orig is not None and orig.args else None
    if code in (54, 30006, 8177):  # ORA-00054 NOWAIT busy, ORA-30006 WAIT timeout, ORA-08177
        return True
    return "database is locked" in str(orig)


def is_serialization_failure(error: exc.DBAPIError) -> bool:
    orig = error.orig
    if getattr(orig, "sqlstate", None) in ("40001", "40P01"):
        return True
    code = getattr(orig.args[0], "code", None) if orig is not None and orig.args else None
    return code == 8177


class InsertIgnoringDuplicates(Insert):
    """An INSERT that skips rows whose primary key is already there.

    A cache fill racing another job's fill of the same keys must not fail. Rendered as
    INSERT ... ON CONFLICT DO NOTHING, and on Oracle with the IGNORE_ROW_ON_DUPKEY_INDEX hint.
    """

    inherit_cache = True


@compiles(InsertIgnoringDuplicates)
def _insert_ignoring_on_conflict(
    element: InsertIgnoringDuplicates, compiler: Any, **kw: Any
) -> str:
    return compiler.visit_insert(element, **kw) + " ON CONFLICT DO NOTHING"


@compiles(InsertIgnoringDuplicates, "oracle")
def _insert_ignoring_oracle(element: InsertIgnoringDuplicates, compiler: Any, **kw: Any) -> str:
    table = element.table
    keys = ", ".join(c.name for c in table.primary_key.columns)  # type: ignore[attr-defined]
    hint = f"INSERT /*+ IGNORE_ROW_ON_DUPKEY_INDEX({table.name}({keys})) */ INTO"
    return compiler.visit_insert(element, **kw).replace("INSERT INTO", hint, 1)


@contextmanager
def lock_timeout(conn: Connection, *, wait: bool) -> Iterator[None]:
    """Within the block, a write that meets SQLite's database lock gives up after a second
    unless `wait` (SQLite has one writer at a time and no NOWAIT). Other dialects: no change."""
    if conn.dialect.name != "sqlite" or wait:
        yield
        return
    # On the driver's connection: a connection setting, outside any SQLAlchemy transaction.
    driver = conn.connection.driver_connection
    driver.execute(f"PRAGMA busy_timeout={SQLITE_NOWAIT_MS}")  # type: ignore[union-attr]
    try:
        yield
    finally:
        driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # type: ignore[union-attr]


def lock_row(conn: Connection, table: Table, condition: ColumnElement[bool], *, wait: bool) -> None:
    """Lock the rows of `table` matching `condition` until the transaction ends.

    Oracle and PostgreSQL lock the rows themselves (FOR UPDATE [NOWAIT]); SQLite, which has no
    row locks, takes the database write lock with a no-op UPDATE. When the lock is held elsewhere
    this raises the driver's error at once (`wait=False`) or after waiting; `is_lock_busy` tells.
    """
    if conn.dialect.name == "sqlite":
        first = next(iter(table.primary_key.columns))
        with lock_timeout(conn, wait=wait):
            conn.execute(update(table).where(condition).values({first.name: first}))
        return
    conn.execute(
        select(*table.primary_key.columns).where(condition).with_for_update(nowait=not wait)
    )


def claim_first(conn: Connection, candidates: Select[Any], scope: ColumnElement[bool]) -> Any:
    """The first row of `candidates` that no other transaction has locked, locked for the rest
    of this transaction; None when every candidate is taken or there is none.

    PostgreSQL: FOR UPDATE SKIP LOCKED LIMIT 1. Oracle: FOR UPDATE SKIP LOCKED without a row
    limit (Oracle refuses FETCH FIRST with FOR UPDATE, and ROWNUM is assigned before rows are
    skipped), fetching one row at a time: Oracle locks rows as they are fetched. SQLite has no
    row locks: the database write lock is taken first (a no-op UPDATE of the rows in `scope`),
    so that claimers run one after the other and each sees the others' claims committed.
    """
    table = candidates.get_final_froms()[0]
    if conn.dialect.name == "sqlite":
        lock_row(conn, table, scope, wait=True)  # type: ignore[arg-type]
        return conn.execute(candidates.limit(1)).first()
    locked = candidates.with_for_update(skip_locked=True)
    if conn.dialect.name == "oracle":
        result = conn.execution_options(yield_per=1).execute(locked)
        row = result.first()  # fetched alone: no further row is locked
        return row
    return conn.execute(locked.limit(1)).first()


SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_NOWAIT_MS = 1_000  # SQLite cannot fail at once; a second is "busy" for it


# --- staging tables ------------------------------------------------------------------------------


class clear_stage(Executable, ClauseElement):  # noqa: N801 - reads as the statement it renders
    """Drop this session's staging table (PostgreSQL, SQLite), or empty it (Oracle's global
    temporary table is part of the schema; TRUNCATE is DDL there and would commit the job)."""

    inherit_cache = True
    _traverse_internals = [("table", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, table: Table) -> None:
        self.table = table


@compiles(clear_stage)
def _clear_stage_drop(element: clear_stage, compiler: Any, **kw: Any) -> str:
    return f"DROP TABLE IF EXISTS {compiler.preparer.format_table(element.table)}"


@compiles(clear_stage, "oracle")
def _clear_stage_delete(element: clear_stage, compiler: Any, **kw: Any) -> str:
    return f"DELETE FROM {compiler.preparer.format_table(element.table)}"


class fill_stage_as(Executable, ClauseElement):  # noqa: N801
    """Fill a staging table from a SELECT whose column names are the table's.

    PostgreSQL: CREATE TEMPORARY TABLE … ON COMMIT DROP AS SELECT, because PostgreSQL runs a
    CREATE TABLE AS in parallel workers and never an INSERT … SELECT; SQLite: CREATE TEMPORARY
    TABLE … AS SELECT; Oracle: INSERT into the migrations' global temporary table.
    """

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012
        ("table", InternalTraversal.dp_clauseelement),
        ("source", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, table: Table, source: Select[Any]) -> None:
        self.table = table
        self.source = source


@compiles(fill_stage_as)
def _fill_stage_create(element: fill_stage_as, compiler: Any, **kw: Any) -> str:
    target = compiler.preparer.format_table(element.table)
    on_commit = " ON COMMIT DROP" if compiler.dialect.name == "postgresql" else ""
    return f"CREATE TEMPORARY TABLE {target}{on_commit} AS {compiler.process(element.source, **kw)}"


@compiles(fill_stage_as, "oracle")
def _fill_stage_insert(element: fill_stage_as, compiler: Any, **kw: Any) -> str:
    target = compiler.preparer.format_table(element.table)
    columns = ", ".join(compiler.preparer.quote(c.name) for c in element.source.selected_columns)
    return f"INSERT INTO {target} ({columns}) {compiler.process(element.source, **kw)}"


def analyze_table(conn: Connection, table: Table) -> None:
    """Give the planner statistics of a freshly filled staging table, where that pays.

    PostgreSQL: ANALYZE (autovacuum never sees temporary tables). Oracle samples a global
    temporary table dynamically at parse time; SQLite's planner needs none for these scans.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


# Memory a PostgreSQL aggregation may use per hash table or sort before spilling to disk. The
# server default (4 MB) makes the grouping of a million staged rows spill; a job runs a handful of
# such statements one after another, so this bounds a job's extra memory too.
POSTGRES_AGGREGATION_WORK_MEM = "256MB"


def tune_for_aggregation(conn: Connection) -> None:
    """Session settings for the rest of this transaction that bulk aggregation needs."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{POSTGRES_AGGREGATION_WORK_MEM}'")
        # A fresh staging table's estimates are rough, and a high estimate makes PostgreSQL
        # JIT-compile the statement: measured 0.6 s of compiling for a 1.8 s statement.
        conn.exec_driver_sql("SET LOCAL jit = off")
