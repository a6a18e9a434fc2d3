"""Statements whose SQL differs per database: merging a SELECT into a table (MERGE / ON
CONFLICT), inserting while ignoring duplicates, and the session-private staging table."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    Select,
    Table,
    bindparam,
    exc,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine

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

    def as_insert(self) -> InsertInKeyOrder:
        """The same rows as a plain INSERT … SELECT: for a target range known to be empty (a
        recompute chunk after its DELETE, a first catch-up), where matching keys costs for
        nothing. Oracle can make it a direct-path insert; PostgreSQL skips the conflict probe."""
        return InsertInKeyOrder(self.table, self.columns, self.source, self.keys[0])


class InsertInKeyOrder(Executable, ClauseElement):
    """INSERT INTO `table` (`columns`) `source`, the rows sorted by the key column `first` on the
    databases of `_SORTS_INSERTS`, whose grouping hands them over in no order.

    A statistics table's key starts with its bin, and so do its site indexes' second columns:
    rows written bin by bin touch each index page once in a row instead of at random. Sorted
    by the bin alone (one timestamp), not by the whole text key, which gained half as much
    (PostgreSQL, a copy of the 181k T_STATS_AVG rows of a 1M-row catch-up: 1.29 s unsorted,
    1.12 s sorted by the whole key, 0.94 s by the bin alone, the sort included).
    SQLite and MySQL/MariaDB group by sorting, so their rows come in key order already. Oracle's
    HASH GROUP BY does not, but it is unmeasured there: no ORDER BY. Columns `columns` leaves
    out take their server defaults, as in `MergeInto`.
    """

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy reads it as a class attribute
        ("table", InternalTraversal.dp_clauseelement),
        ("columns", InternalTraversal.dp_string_list),
        ("source", InternalTraversal.dp_clauseelement),
        ("first", InternalTraversal.dp_string),
    ]

    def __init__(
        self, table: Table, columns: Sequence[str], source: Select[Any], first: str
    ) -> None:
        if first not in columns:
            raise ValueError(f"{table.name}: {first!r} is not among the inserted columns")
        self.table = table
        self.columns = list(columns)
        self.source = source
        self.first = first


# Databases whose INSERT … SELECT of grouped rows sorts them by bin first (`InsertInKeyOrder`).
_SORTS_INSERTS = ("postgresql",)


@compiles(InsertInKeyOrder)
def _insert_in_key_order(element: InsertInKeyOrder, compiler: Any, **kw: Any) -> str:
    source = element.source
    if compiler.dialect.name in _SORTS_INSERTS:
        source = source.order_by(source.selected_columns[element.first])
    return _insert_select(compiler, element.table, element.columns, source, **kw)


def _insert_select(
    compiler: Any, table: Table, columns: Sequence[str], source: Select[Any], **kw: Any
) -> str:
    """INSERT INTO `table` (`columns`) `source`, written out: a custom statement's own
    rendering cannot hand SQLAlchemy's Insert to its compiler (it takes the Insert for the
    statement being compiled). Columns left out take their server defaults."""
    target = compiler.preparer.format_table(table)
    cols = ", ".join(compiler.preparer.quote(c) for c in columns)
    return f"INSERT INTO {target} ({cols}) {compiler.process(source, **kw)}"


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


@compiles(MergeInto, "mysql")
def _merge_on_duplicate_key(element: MergeInto, compiler: Any, **kw: Any) -> str:
    # MySQL/MariaDB: INSERT … SELECT … ON DUPLICATE KEY UPDATE, where target.c is the row
    # already there (qualified: the source has a column c too) and VALUES(c) the one being
    # inserted. Each assignment reads only its own column, so their left-to-right evaluation
    # cannot see another's new value.
    prep = compiler.preparer.quote
    target = compiler.preparer.format_table(element.table)
    source = compiler.process(element.source, **kw)
    cols = ", ".join(prep(c) for c in element.columns)

    def old(c: str) -> str:
        return f"{target}.{prep(c)}"

    sets = [f"{old(c)} = {old(c)} + VALUES({prep(c)})" for c in element.add]
    sets += [f"{old(c)} = " + _null_aware("<", old(c), f"VALUES({prep(c)})") for c in element.low]
    sets += [f"{old(c)} = " + _null_aware(">", old(c), f"VALUES({prep(c)})") for c in element.high]
    if not sets:  # insert the missing keys only; INSERT IGNORE would also hide bad data
        sets = [f"{old(element.keys[0])} = {old(element.keys[0])}"]
    return (
        f"INSERT INTO {target} ({cols}) SELECT {cols} FROM ({source}) src "
        "ON DUPLICATE KEY UPDATE " + ", ".join(sets)
    )


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


@compiles(InsertIgnoringDuplicates, "mysql")
def _insert_ignoring_mysql(element: InsertIgnoringDuplicates, compiler: Any, **kw: Any) -> str:
    # A no-op update of the first key column: INSERT IGNORE would also turn errors into warnings.
    keys = element.table.primary_key.columns  # type: ignore[attr-defined]
    first = compiler.preparer.quote(next(iter(keys)).name)
    return compiler.visit_insert(element, **kw) + f" ON DUPLICATE KEY UPDATE {first} = {first}"


@compiles(InsertIgnoringDuplicates, "oracle")
def _insert_ignoring_oracle(element: InsertIgnoringDuplicates, compiler: Any, **kw: Any) -> str:
    table = element.table
    keys = ", ".join(c.name for c in table.primary_key.columns)  # type: ignore[attr-defined]
    hint = f"INSERT /*+ IGNORE_ROW_ON_DUPKEY_INDEX({table.name}({keys})) */ INTO"
    return compiler.visit_insert(element, **kw).replace("INSERT INTO", hint, 1)


def insert_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert `rows` (dicts of column values) into `table`, skipping any whose primary key is
    already there.

    With psycopg on PostgreSQL the rows travel by COPY into a temporary table and are inserted
    from there in one statement: an executemany sends one statement per row, and for the
    100k pairs of a first catch-up that cost 2.7 times as much (measured, 111,805 rows).
    Elsewhere it is an executemany of `InsertIgnoringDuplicates`; on SQLite and MySQL/MariaDB
    one given to the driver directly (`_execute_many_as_driver`).
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy_ignoring_duplicates(conn, table, rows)
    elif conn.dialect.name in _DRIVER_EXECUTEMANY:
        _execute_many_as_driver(conn, InsertIgnoringDuplicates(table), rows)
    else:
        conn.execute(InsertIgnoringDuplicates(table), list(rows))


# Where an executemany goes to the driver with its values converted here, once per column.
_DRIVER_EXECUTEMANY = ("sqlite", "mysql")


def _execute_many_as_driver(
    conn: Connection, statement: Insert, rows: Sequence[dict[str, Any]]
) -> None:
    """An executemany of `statement` with `rows` (dicts with the same keys), handed to the DBAPI
    driver as plain values.

    SQLAlchemy builds each row's parameters anew (a dict per row, then each value through its
    type's processor): for the 111,805 pairs of a first catch-up that took about 1 s of Python
    on top of the 0.7 s SQLite needed for the rows. Here the statement is compiled once, each
    column's bind processor looked up once, and the driver gets plain tuples (dicts for a named
    paramstyle such as PyMySQL's pyformat). Oracle (array DML) and psycopg (COPY) keep theirs.
    """
    compiled = statement.compile(dialect=conn.dialect, column_keys=list(rows[0]))
    names = compiled.positiontup if compiled.positional else list(compiled.binds)
    assert names is not None
    types = [(name, compiled.binds[name].type) for name in names]
    plain: list[Any] = _driver_values(conn, types, rows)
    if not compiled.positional:
        plain = [dict(zip(names, values, strict=True)) for values in plain]
    conn.exec_driver_sql(compiled.string, plain)


def _driver_values(
    conn: Connection, columns: Sequence[tuple[str, TypeEngine[Any]]], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """Each row's values of `columns` (name, type) as the driver takes them: through each
    type's bind processor for this database (e.g. UtcDate's whole seconds), as SQLAlchemy's
    own executemany would; None for a column a row lacks."""
    # Column by column, each distinct value converted once (the values are scalars: a batch
    # of new pairs shares one resolution time), then zipped into rows. A generator per row and
    # a conversion per value took 0.22 s for the 111,805 pairs of a first catch-up; this 0.05 s.
    by_column = []
    for name, type_ in columns:
        convert = type_.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        values = [row.get(name) for row in rows]
        if convert is not None:
            converted = {value: convert(value) for value in set(values)}
            values = [converted[value] for value in values]
        by_column.append(values)
    return list(zip(*by_column, strict=True))


def _copy_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """COPY `rows` into `table` in a savepoint; only if one is there already (another runner
    added it since this transaction's snapshot: the caller inserts rows it found missing) go
    through a temporary table and `INSERT … ON CONFLICT DO NOTHING`, whose speculative
    insertion checks each row's key twice. The 111,805 pairs of a first catch-up, alternating:
    see `docs/decisions.md`, "New pairs are copied into the resolution cache"."""
    prep = conn.dialect.identifier_preparer
    target = prep.format_table(table)
    names = ", ".join(prep.quote(c.name) for c in table.columns)
    values = _driver_values(conn, [(c.name, c.type) for c in table.columns], rows)
    try:
        with conn.begin_nested():
            _copy_rows(conn, f"COPY {target} ({names}) FROM STDIN", values)
        return
    except exc.IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
    loading = prep.quote(f"{table.name}_loading")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {loading} (LIKE {target}) ON COMMIT DROP")
    _copy_rows(conn, f"COPY {loading} ({names}) FROM STDIN", values)
    conn.exec_driver_sql(
        f"INSERT INTO {target} ({names}) SELECT {names} FROM {loading} ON CONFLICT DO NOTHING"
    )
    conn.exec_driver_sql(f"DROP TABLE {loading}")


_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


def _copy_rows(conn: Connection, copy_statement: str, values: Sequence[tuple[Any, ...]]) -> None:
    """COPY `values` on the driver's cursor (SQLAlchemy has no COPY). The driver's error is
    raised as SQLAlchemy's, as for any statement, so that callers tell a unique violation, a
    lost snapshot conflict or deadlock (run again) and a lost server apart."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(copy_statement) as copy:
            for row in values:
                copy.write_row(row)
    except dbapi_error as error:
        raise exc.DBAPIError.instance(
            copy_statement, None, error, dbapi_error, dialect=conn.dialect
        ) from error


# Last keys named by one UPDATE of `update_each` (Oracle takes 1,000 expressions in a list).
UPDATE_GROUP_KEYS = 500
# Rows of a group this size or larger are one UPDATE naming their last keys; the rows of smaller
# groups go together (`update_each`).
UPDATE_GROUP_MIN = 8


def update_each(
    conn: Connection, table: Table, keys: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Update `table`'s row of each of `rows` (dicts of column values, all with the same
    columns), found by its `keys` columns, to the row's other values.

    Rows that share their new values and every key but the last are one group (so the key
    that varies most goes last): a topology change gives the cached pairs of a domain one new
    site, rule and time, so with the keys (domain, host) its pairs are one group. A group of
    UPDATE_GROUP_MIN rows or more is one UPDATE naming the leading keys and a list of last
    keys, which the primary key's index finds (a one-domain apply's 2,079 pairs, alternating
    runs: PostgreSQL 0.07-0.11 s as an executemany, 0.05-0.08 s so; SQLite 0.04-0.07 s, 0.02-0.04
    s). The rows of smaller groups go as one executemany (psycopg pipelines it, sqlite3 runs it
    in process, python-oracledb sends one array DML), except on MySQL/MariaDB, where PyMySQL
    sends an executemany of UPDATE as a round trip per row (the same pairs: 0.26 s): there they
    are grouped by their new values alone, one UPDATE naming their keys in a row-value IN list.
    """
    if not rows:
        return
    values = [c for c in rows[0] if c not in keys]
    *leading, last = keys
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((*(row[c] for c in values), *(row[k] for k in leading)), []).append(row)
    by_last_keys = (
        update(table)
        .where(
            *(table.c[k] == bindparam(f"key_{k}") for k in leading),
            table.c[last].in_(bindparam("last_keys", expanding=True)),
        )
        .values({c: bindparam(c) for c in values})
    )
    scattered = []  # the rows of the small groups
    for shared, group in groups.items():
        if len(group) < UPDATE_GROUP_MIN:
            scattered += group
            continue
        params = dict(zip([*values, *(f"key_{k}" for k in leading)], shared, strict=True))
        named = [row[last] for row in group]
        for at in range(0, len(named), UPDATE_GROUP_KEYS):
            conn.execute(by_last_keys, {**params, "last_keys": named[at : at + UPDATE_GROUP_KEYS]})
    if scattered:
        _update_scattered(conn, table, keys, values, scattered)


def _update_scattered(
    conn: Connection,
    table: Table,
    keys: Sequence[str],
    values: Sequence[str],
    rows: Sequence[dict[str, Any]],
) -> None:
    """`rows` (of groups too small for an UPDATE each) as one executemany of an UPDATE by key;
    on MySQL/MariaDB, where that is a round trip per row, grouped by their new values, each
    group one UPDATE naming its keys in a row-value IN list."""
    if conn.dialect.name != "mysql":
        by_key = update(table).where(*(table.c[k] == bindparam(f"key_{k}") for k in keys))
        conn.execute(
            by_key.values({c: bindparam(c) for c in values}),
            [{**{c: row[c] for c in values}, **{f"key_{k}": row[k] for k in keys}} for row in rows],
        )
        return
    by_values: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        by_values.setdefault(tuple(row[c] for c in values), []).append(tuple(row[k] for k in keys))
    in_list = tuple_(*(table.c[k] for k in keys)).in_(bindparam("keys", expanding=True))
    by_keys = update(table).where(in_list).values({c: bindparam(c) for c in values})
    for group, named in by_values.items():
        params = dict(zip(values, group, strict=True))
        for at in range(0, len(named), UPDATE_GROUP_KEYS):
            conn.execute(by_keys, {**params, "keys": named[at : at + UPDATE_GROUP_KEYS]})


# --- staging tables ------------------------------------------------------------------------------


class clear_stage(Executable, ClauseElement):  # noqa: N801 - reads as the statement it renders
    """Drop this session's staging table (PostgreSQL, SQLite, MySQL), or empty it (Oracle's global
    temporary table is part of the schema; TRUNCATE is DDL there and would commit the job)."""

    inherit_cache = True
    _traverse_internals = [("table", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, table: Table) -> None:
        self.table = table


@compiles(clear_stage)
def _clear_stage_drop(element: clear_stage, compiler: Any, **kw: Any) -> str:
    return f"DROP TABLE IF EXISTS {compiler.preparer.format_table(element.table)}"


@compiles(clear_stage, "mysql")
def _clear_stage_drop_temporary(element: clear_stage, compiler: Any, **kw: Any) -> str:
    # Without TEMPORARY, MySQL's DROP TABLE commits the transaction; with it, it does not.
    return f"DROP TEMPORARY TABLE IF EXISTS {compiler.preparer.format_table(element.table)}"


@compiles(clear_stage, "oracle")
def _clear_stage_delete(element: clear_stage, compiler: Any, **kw: Any) -> str:
    return f"DELETE FROM {compiler.preparer.format_table(element.table)}"


class fill_stage_as(Executable, ClauseElement):  # noqa: N801
    """Fill a staging table from a SELECT whose column names are the table's.

    PostgreSQL: CREATE TEMPORARY TABLE … ON COMMIT DROP AS SELECT, because PostgreSQL runs a
    CREATE TABLE AS in parallel workers and never an INSERT … SELECT; SQLite and MySQL/MariaDB:
    CREATE TEMPORARY TABLE … AS SELECT (on MySQL no implicit commit, as it is TEMPORARY);
    Oracle: INSERT into the migrations' global temporary table.
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
    columns = [c.name for c in element.source.selected_columns]
    return _insert_select(compiler, element.table, columns, element.source, **kw)


def analyze_table(conn: Connection, table: Table, rows: int, *, always: bool = False) -> None:
    """Give the planner statistics of a table just filled with `rows` rows, where that pays
    (`always`: whatever its size, for a statement whose plan goes wrong without them).

    PostgreSQL: ANALYZE (autovacuum never sees temporary tables) on a small sample: the plans
    only need row counts and rough distinct counts, and the default sample (30,000 rows) cost
    as much as a statistics statement. SQLite: ANALYZE too, which for the resolution cache is
    what makes its planner probe the cache's covering index (revision 0012) rather than the
    primary key's, which has to go on to the table row (without statistics it takes the unique
    index: 1M rows staged, 8.7 s -> 6.6 s); 0.06 s for 112k cached pairs. Oracle samples a
    global temporary table dynamically at parse time. MySQL/MariaDB: none, because
    ANALYZE TABLE commits the transaction there; InnoDB estimates a temporary table's statistics
    itself when the table is opened and again after it changed.
    Below ANALYZE_MIN_ROWS (an incremental batch) none either: the plans are index probes and
    small hashes whatever the estimates, and the two ANALYZE cost 26 ms of a 0.45 s batch.
    """
    if rows < ANALYZE_MIN_ROWS and not always:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {ANALYZE_TARGET}")
        conn.exec_driver_sql(f"ANALYZE {table.name}")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


# Sample of ANALYZE on staging and cache tables: 300 × this many rows.
ANALYZE_TARGET = 10
# Fewer rows just written than this, and no ANALYZE (see analyze_table).
ANALYZE_MIN_ROWS = 10_000


# SQLite's page cache per connection, for the main and the temporary database (KiB). The default
# (2,000 pages, 8 MB) cannot hold the resolution cache that every staged raw row is joined to, so
# each probe re-read its pages from the OS: a 1M-row staging made 2.29M pread calls with the
# default and 0.31M with 64 MiB (strace -c), and took 52.6 s of CPU against 33.7 s under strace.
# A bound, not an allocation: a connection takes pages as it reads them, up to this.
SQLITE_PAGE_CACHE_KIB = 65_536

# Worker threads SQLite may start for one large sort (PRAGMA threads; 0 = the connection's own
# thread only). Two: the machines this runs on have a few cores, and a job runs one sort at once.
SQLITE_SORTER_THREADS = 2


# Memory a PostgreSQL aggregation may use per hash table or sort before spilling to disk. The
# server default (4 MB) makes the grouping of a million staged rows spill; a job runs a handful of
# such statements one after another, so this bounds a job's extra memory too.
POSTGRES_AGGREGATION_WORK_MEM = "256MB"

# The size an in-memory temporary table of MariaDB/MySQL may reach before it is moved to disk
# (tmp_table_size and max_heap_table_size, whichever is lower), for the same reason: the
# staging's derived tables and the groupings of a million raw rows outgrow the 16 MB default,
# and a temporary table on disk costs them a third of a catch-up's time.
MYSQL_AGGREGATION_TMP_TABLE_BYTES = 256 * 1024 * 1024

# PostgreSQL's cost of passing a row from a parallel worker to the leader, for bulk work (a tenth
# of the default): see `tune_for_aggregation`.
POSTGRES_PARALLEL_TUPLE_COST = 0.01


def tune_for_aggregation(conn: Connection) -> None:
    """Session settings for the rest of this transaction that bulk aggregation needs."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{POSTGRES_AGGREGATION_WORK_MEM}'")
        # A fresh staging table's estimates are rough, and a high estimate makes PostgreSQL
        # JIT-compile the statement: measured 0.6 s of compiling for a 1.8 s statement.
        conn.exec_driver_sql("SET LOCAL jit = off")
        # The staged rows' derived columns (bins, spans) have no statistics, so PostgreSQL
        # overestimates groups by orders of magnitude and sorts text keys for a GroupAggregate;
        # hashing is what fits in work_mem here. Measured on 1M staged rows: the T_STATS_AVG
        # statement 8.0 s with sorts, 6.0 s with hash aggregates. (A penalty, not a ban: a
        # statement that needs a sort still gets one.)
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
        # The planner prices a row's computed columns at next to nothing, so passing a row from a
        # parallel worker (0.1 by default) looks dearer than computing it alone: the audit's one
        # scan of 1M raw rows, which converts three dates and a NUMERIC per row, ran in one
        # process (1.07 s) where two workers and the leader take 0.69-0.72 s.
        conn.exec_driver_sql(f"SET LOCAL parallel_tuple_cost = {POSTGRES_PARALLEL_TUPLE_COST}")
    elif conn.dialect.name == "mysql":
        # Session-wide (MySQL has no SET LOCAL): the connection keeps the bound afterwards, which
        # only lets its later statements keep their temporary tables in memory as well.
        size = MYSQL_AGGREGATION_TMP_TABLE_BYTES
        conn.exec_driver_sql(f"SET SESSION tmp_table_size = {size}, max_heap_table_size = {size}")


def estimated_rows(conn: Connection, table: Table) -> int | None:
    """The rows of `table`, one of xrdagg's own (the connection's default schema), as its last
    ANALYZE (or VACUUM) counted them, from the catalogue, where a count would read the table:
    PostgreSQL; None elsewhere, and before any ANALYZE."""
    if table.schema is not None:
        raise ValueError(f"{table.fullname}: only a table of the default schema is looked up")
    if conn.dialect.name != "postgresql":
        return None
    name = conn.dialect.identifier_preparer.format_table(table)
    rows = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": name}
    ).scalar()
    return None if rows is None or rows < 0 else int(rows)


@contextmanager
def joining_by_index_lookups(conn: Connection, when: bool = True) -> Iterator[None]:
    """The statements of the block (`when`) join the rows they read to other tables by looking
    each one up in their indexes, never by hashing or scanning a whole table.

    PostgreSQL prices a hash of a large table below that many index lookups, as if a lookup
    went to disk, so an incremental batch's pair search and staging each hashed the whole
    resolution cache to join 20k raw rows to it: with 1.1M cached pairs 0.41 s and 0.68 s,
    against 0.04 s and 0.10 s by lookups (112k pairs: the staging 0.13 s against 0.095 s).
    Scans are off too: a batch's rows arrived after the raw table was last analysed, beyond
    its histogram, so the planner expects one row or so, and without hash joins it read the
    small alias map (T_SITE_ALIAS) whole again for every raw row, normalising the row's
    SERVER_SITE once per alias; looked up in its primary key instead, the 20k-row staging
    took 227-244 ms against 348-366 ms. A table with no index the block can use is still
    scanned (a penalty, not a ban): the staged groups' summary, the topology `read_resolver`
    reads whole, the COPY fallback's temporary table, and a raw table whose collectors' DBA
    did not add the INSERT_DATE index (docs/operations.md). Such a scan is priced past every
    JIT threshold, which is why the block expects `tune_for_aggregation`'s `jit = off`.
    SQLite and MySQL/MariaDB join by index lookups already; Oracle is left to its planner.

    A block that raises is not followed by the reset: the caller's transaction is rolled back
    on any error (a database error aborts it anyway), which takes the SET LOCAL with it (and
    a SET in an aborted transaction would hide the error).
    """
    if not when or conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    yield
    conn.exec_driver_sql("SET LOCAL enable_seqscan = DEFAULT")
    conn.exec_driver_sql("SET LOCAL enable_hashjoin = DEFAULT")
