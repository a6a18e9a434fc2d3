"""Locking, isolation and error classification: how each database says "busy", "try again"
and "unreachable", how a row is locked or claimed, and which MySQL/MariaDB servers can do it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    MetaData,
    Select,
    Table,
    and_,
    delete,
    exc,
    exists,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.visitors import InternalTraversal

from xrdagg.db.dialect.statements import (
    InsertIgnoringDuplicates,
    InsertInKeyOrder,
    analyze_table,
    clear_stage,
    fill_stage_as,
)
from xrdagg.errors import ConfigError

# --- locking and isolation -----------------------------------------------------------------------

# Job transactions read raw rows and the resolution cache in several statements: they must all
# see one snapshot. Oracle's SERIALIZABLE is snapshot isolation; SQLite is serializable anyway.
# MySQL/MariaDB: READ COMMITTED, each statement its own snapshot. Its REPEATABLE READ would not
# give one snapshot to the statements that matter: INSERT … SELECT and CREATE TABLE … SELECT read
# the newest rows there, locking what they read and the gaps between (next-key locks), so that a
# collector inserting raw rows would wait for the job to commit. Under READ COMMITTED they read a
# snapshot without locks. A job stages its raw rows with one statement and reads them from there.
JOB_ISOLATION = {
    "oracle": "SERIALIZABLE",
    "postgresql": "REPEATABLE READ",
    "mysql": "READ COMMITTED",
}

# Recompute chunks, where the default is not what they need: on MySQL/MariaDB READ COMMITTED,
# for the reason jobs use it (a chunk's CREATE TABLE … SELECT of raw rows would otherwise lock
# them and the gaps between, and collectors' inserts would wait for the chunk). Elsewhere the
# default (READ COMMITTED; SQLite serializable): chunks rebuild disjoint bins, and a snapshot per
# chunk would only add serialization failures on the rows chunks share (the dirty days).
CHUNK_ISOLATION = {"mysql": "READ COMMITTED"}


@contextmanager
def isolated_transaction(engine: Engine, isolation: Mapping[str, str]) -> Iterator[Connection]:
    """A connection in a transaction at the level `isolation` names for its database
    (JOB_ISOLATION, CHUNK_ISOLATION); the driver's default where it names none."""
    with engine.connect() as conn:
        level = isolation.get(conn.dialect.name)
        if level:
            conn = conn.execution_options(isolation_level=level)
        with conn.begin():
            yield conn


# Markers of a database that cannot be reached, for errors that carry no code (a refused
# connection, a server shutting down): PostgreSQL, python-oracledb and SQLite wordings.
_UNREACHABLE = (
    "connection", "server closed", "could not connect", "terminating connection",
    "database system is shutting down", "the database system is starting up", "DPY-4011",
    "DPY-6005", "ORA-03113", "ORA-03114", "ORA-12541", "unable to open database",
)  # fmt: skip
_UNREACHABLE_ORACLE_CODES = (3113, 3114, 12541, 12514, 12170)
# MySQL/MariaDB: server shutting down, connection killed (MariaDB), can't connect (socket, TCP),
# server gone away, lost connection, disconnected by the server (MySQL 8).
_UNREACHABLE_MYSQL_CODES = (1053, 1927, 2002, 2003, 2006, 2013, 4031)
# MySQL/MariaDB: lock wait timeout (also MariaDB's answer to NOWAIT), deadlock, MySQL 8's
# NOWAIT answer, and MariaDB's "record has changed since last read" (innodb_snapshot_isolation).
_MYSQL_LOCK_WAIT_TIMEOUT, _MYSQL_DEADLOCK, _MYSQL_NOWAIT, _MYSQL_CHECKREAD = 1205, 1213, 3572, 1020
# A lock wait timeout is a lock held by another job (busy), not a lost snapshot: retrying it as
# a serialization failure made a second runner of the same job fail instead of skipping.
_MYSQL_SERIALIZATION_CODES = (_MYSQL_DEADLOCK, _MYSQL_CHECKREAD)


def _mysql_code(orig: BaseException | None) -> int | None:
    """The server's error number of a PyMySQL (or mysqlclient) error, else None."""
    driver = type(orig).__module__.split(".")[0] if orig is not None else None
    if orig is None or driver not in ("pymysql", "MySQLdb") or not orig.args:
        return None
    code = orig.args[0]
    return code if isinstance(code, int) else None


def is_unreachable(error: BaseException) -> bool:
    """True when `error` says the database cannot be reached (down, restarting, network),
    so that the same work may simply be tried again later."""
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:  # SQLAlchemy's own disconnect detection, per dialect
            return True
        orig = error.orig
        sqlstate = getattr(orig, "sqlstate", None) or ""
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
            return True
        code = getattr(orig.args[0], "code", None) if orig is not None and orig.args else None
        if code in _UNREACHABLE_ORACLE_CODES or _mysql_code(orig) in _UNREACHABLE_MYSQL_CODES:
            return True
    text = str(error).lower()
    return any(marker.lower() in text for marker in _UNREACHABLE)


def is_lock_busy(error: exc.DBAPIError) -> bool:
    """True when `error` says a row or database lock is held by someone else."""
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("55P03", "40001", "40P01"):  # lock not available / serialization / deadlock
        return True
    code = getattr(orig.args[0], "code", None) if orig is not None and orig.args else None
    if code in (54, 30006, 8177):  # ORA-00054 NOWAIT busy, ORA-30006 WAIT timeout, ORA-08177
        return True
    if _mysql_code(orig) in (_MYSQL_NOWAIT, _MYSQL_LOCK_WAIT_TIMEOUT, *_MYSQL_SERIALIZATION_CODES):
        return True
    return "database is locked" in str(orig)


def is_serialization_failure(error: exc.DBAPIError) -> bool:
    """True when `error` says the transaction lost a snapshot conflict (or a deadlock): run it
    again."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) in ("40001", "40P01"):
        return True
    code = getattr(orig.args[0], "code", None) if orig is not None and orig.args else None
    return code == 8177 or _mysql_code(orig) in _MYSQL_SERIALIZATION_CODES


@contextmanager
def lock_timeout(conn: Connection, *, wait: bool) -> Iterator[None]:
    """Within the block, a write that meets SQLite's database lock gives up after a second
    unless `wait` (SQLite has one writer at a time and no NOWAIT); on MySQL/MariaDB, a write that
    meets a row lock likewise (innodb_lock_wait_timeout, 50 s by default). Others: no change."""
    if wait or conn.dialect.name not in ("sqlite", "mysql"):
        yield
        return
    if conn.dialect.name == "mysql":
        # On the driver's connection, like SQLite's pragma: SQLAlchemy would begin a transaction.
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {MYSQL_NOWAIT_S}")
        try:
            yield
        finally:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")
            cursor.close()
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

    Oracle, PostgreSQL and MySQL/MariaDB lock the rows themselves (FOR UPDATE [NOWAIT]); SQLite,
    which has no row locks, takes the database write lock with a no-op UPDATE. When the lock is
    held elsewhere this raises the driver's error at once (`wait=False`) or after waiting;
    `is_lock_busy` tells.
    """
    if conn.dialect.name == "sqlite":
        first = next(iter(table.primary_key.columns))
        with lock_timeout(conn, wait=wait):
            conn.execute(update(table).where(condition).values({first.name: first}))
        return
    conn.execute(
        select(*table.primary_key.columns).where(condition).with_for_update(nowait=not wait)
    )


def insert_missing(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert those of `rows` whose primary key `table` lacks, without waiting for a lock that
    another transaction holds on a row already there.

    MySQL/MariaDB: the existing keys are read first, and only the others inserted, since an
    INSERT that meets an existing key locks that row (shared, or exclusive with ON DUPLICATE KEY
    UPDATE) and so waits for its holder. Elsewhere: one INSERT ignoring duplicates, which waits
    for nobody's existing row; on SQLite a read first would even make the write fail at once
    ("database is locked") when another writer committed since, in WAL mode.
    """
    if not rows:
        return
    if conn.dialect.name == "mysql":
        columns = list(table.primary_key.columns)

        def key(row: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(row[c.name] for c in columns)

        wanted = tuple_(*columns).in_([key(row) for row in rows])
        present = {tuple(r) for r in conn.execute(select(*columns).where(wanted))}
        rows = [row for row in rows if key(row) not in present]
        if not rows:
            return
    conn.execute(InsertIgnoringDuplicates(table), rows)


def claim_first(conn: Connection, candidates: Select[Any], scope: ColumnElement[bool]) -> Any:
    """The first row of `candidates` that no other transaction has locked, locked for the rest
    of this transaction; None when every candidate is taken or there is none.

    PostgreSQL, MySQL/MariaDB: FOR UPDATE SKIP LOCKED LIMIT 1. Oracle: FOR UPDATE SKIP LOCKED
    without a row limit (Oracle refuses FETCH FIRST with FOR UPDATE, and ROWNUM is assigned
    before rows are skipped), fetching one row at a time: Oracle locks rows as they are fetched.
    SQLite has no row locks: the database write lock is taken first (a no-op UPDATE of the rows
    in `scope`), so that claimers run one after the other and each sees the others' claims
    committed.
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


class OwnRowsDelete:
    """DELETE FROM a table WHERE a condition that only rows this transaction owns can match (a
    recompute chunk's bins: no other writer touches them while it runs), built once.

    A plain DELETE, except on MySQL/MariaDB: InnoDB's DELETE locks every row its index scan reads,
    in READ COMMITTED too, before it tests the rest of the condition, so a chunk's DELETE waited
    for the chunk holding the other source's rows of the same bins (the statistics keys lead with
    BIN_START) and for the one holding the first row after its range (the next chunk's). Chunks
    then ran one after another, and a 4-worker recompute of 1M rows failed after
    innodb_lock_wait_timeout. There the keys are read first, by a consistent read that locks
    nothing, into a temporary table, and deleted by primary key from it: each probe locks only
    the row it deletes. The rows are the same: nobody else writes the owned rows in between, and
    a row that appeared anyway would make the chunk's plain INSERT fail on its key, not count
    twice.
    """

    def __init__(self, table: Table, condition: ColumnElement[bool]) -> None:
        self.plain = delete(table).where(condition)
        key = list(table.primary_key.columns)
        keys = Table(f"tmp_keys_{table.name}", MetaData(), *(Column(c.name, c.type) for c in key))
        self.drop_keys = clear_stage(keys)
        self.fill_keys = fill_stage_as(keys, select(*key).where(condition))
        self.delete_by_key = _delete_by_key(table, keys)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> None:
        if conn.dialect.name != "mysql":
            conn.execute(self.plain, params)
            return
        conn.execute(self.drop_keys)  # a temporary table outlives a rolled-back transaction
        conn.execute(self.fill_keys, params)
        conn.execute(self.delete_by_key)
        conn.execute(self.drop_keys)


class OwnRowsRewrite:
    """Make the rows of a table that match a condition only this transaction's rows can match (a
    recompute chunk's bins) the rows of `source` (a SELECT naming columns of the table, its key
    among them, whose rows all match the condition), built once.

    PostgreSQL writes only what differs: `source` goes into a temporary table, the owned rows
    with no identical row there are deleted, and its rows whose key is then missing inserted.
    A recompute rewrites rows that are mostly right already, and a row's writes are its cost
    (each statistics row is three index entries: T_STATS_AVG's insert was half a catch-up's
    writing); a row left as it was costs a comparison. Elsewhere every owned row is deleted
    (`OwnRowsDelete`) and `source` inserted: SQLite's inserts are a small part of its statements
    (the grouping before them is the rest), MySQL/MariaDB's deletes go by keys for their locks
    (see there), and on Oracle the temporary table would be a global temporary table made by the
    migrations; unmeasured there.
    """

    def __init__(self, table: Table, condition: ColumnElement[bool], source: Select[Any]) -> None:
        names = [c.name for c in source.selected_columns]  # in the source's order
        self.delete_all = OwnRowsDelete(table, condition)
        keys = [c.name for c in table.primary_key.columns]
        self.insert_all = InsertInKeyOrder(table, names, source, keys[0])
        self.new = new = Table(
            f"tmp_new_{table.name}", MetaData(), *(Column(n, table.c[n].type) for n in names)
        )
        self.drop_new = clear_stage(new)
        self.fill_new = fill_stage_as(new, source)
        same_key = and_(*(table.c[k] == new.c[k] for k in keys))
        # The measures equal, doubles exactly; NULL-safe where a measure may be NULL (a min or
        # max), a plain `=` elsewhere, which PostgreSQL can hash.
        same_values = and_(
            *(
                table.c[n].is_not_distinct_from(new.c[n])
                if table.c[n].nullable
                else table.c[n] == new.c[n]
                for n in names
                if n not in keys
            )
        )
        self.delete_changed = delete(table).where(condition, ~exists().where(same_key, same_values))
        # The new rows whose key no owned row has (after the delete: changed or new), by a
        # LEFT JOIN to the owned rows' keys read apart (OFFSET 0): PostgreSQL then hashes the
        # chunk's keys once. As a NOT EXISTS it probed the table's indexes for each new row,
        # through every dead entry earlier rewrites had left (4.4 s for a day's 40k rows).
        owned = select(*(table.c[k] for k in keys)).where(condition).offset(0).subquery("owned")
        self.insert_missing = InsertInKeyOrder(
            table,
            names,
            select(*(new.c[n] for n in names))
            .select_from(new.outerjoin(owned, and_(*(owned.c[k] == new.c[k] for k in keys))))
            .where(owned.c[keys[0]].is_(None)),
            keys[0],
        )

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> None:
        if conn.dialect.name not in _REWRITES_CHANGES_ONLY:
            self.delete_all.execute(conn, params)
            conn.execute(self.insert_all, params)
            return
        conn.execute(self.drop_new)
        rows = conn.execute(self.fill_new, params).rowcount
        # Whatever its size: without statistics PostgreSQL takes a few new rows for a handful
        # and tests each owned row against all of them in turn (a recompute of 20k raw rows:
        # its deletes 1.8 s instead of 0.02 s).
        analyze_table(conn, self.new, rows, always=True)
        conn.execute(self.delete_changed, params)
        conn.execute(self.insert_missing, params)
        conn.execute(self.drop_new)


# Where `OwnRowsRewrite` writes only the rows that differ (measured: see docs/decisions.md).
_REWRITES_CHANGES_ONLY = ("postgresql",)


class _delete_by_key(Executable, ClauseElement):  # noqa: N801 - reads as the statement it renders
    """MySQL: DELETE the rows of `table` whose primary key is a row of `keys`, probing the key
    from each row of `keys` (STRAIGHT_JOIN: `keys` first, whatever the estimates say)."""

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012
        ("table", InternalTraversal.dp_clauseelement),
        ("keys", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, table: Table, keys: Table) -> None:
        self.table = table
        self.keys = keys


@compiles(_delete_by_key, "mysql")
def _delete_by_key_mysql(element: _delete_by_key, compiler: Any, **kw: Any) -> str:
    target = compiler.preparer.format_table(element.table)
    keys = compiler.preparer.format_table(element.keys)
    on = and_(*(c == element.keys.c[c.name] for c in element.table.primary_key.columns))
    return f"DELETE {target} FROM {keys} STRAIGHT_JOIN {target} ON {compiler.process(on, **kw)}"


SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_NOWAIT_MS = 1_000  # SQLite cannot fail at once; a second is "busy" for it
MYSQL_NOWAIT_S = 1  # innodb_lock_wait_timeout while not waiting (whole seconds)

# --- which MySQL/MariaDB servers ----------------------------------------------------------------

# MariaDB: FOR UPDATE NOWAIT since 10.3, INSERT … RETURNING since 10.5, SKIP LOCKED since 10.6.
MARIADB_MINIMUM = (10, 6)
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def require_supported_server(server_info: str) -> None:
    """Refuse, with a message saying why, a MySQL/MariaDB server xrdagg cannot run on.

    `server_info` is the server's version string (PyMySQL's `get_server_info()`, e.g.
    '5.5.5-10.11.19-MariaDB-…': MariaDB prefixes '5.5.5-' for old clients). MariaDB needs
    10.6: FOR UPDATE NOWAIT (the job lock), INSERT … RETURNING (run ids) and FOR UPDATE SKIP
    LOCKED (recompute workers). MySQL (Oracle's server) is refused: 8.0 has NOWAIT and SKIP
    LOCKED, but no INSERT … RETURNING, and it cannot read one temporary table twice in a
    statement (the staged rows are), so xrdagg does not run there yet.
    """
    versions = [tuple(int(p) for p in m) for m in _VERSION.findall(server_info)]
    if "mariadb" not in server_info.lower():
        raise ConfigError(
            f"XRDAGG_DATABASE_URL: MySQL server {server_info} is not supported: xrdagg needs "
            "INSERT … RETURNING and a temporary table read twice in one statement, which MySQL "
            f"lacks; use MariaDB {MARIADB_MINIMUM[0]}.{MARIADB_MINIMUM[1]} or newer"
        )
    version = versions[-1][:2] if versions else (0, 0)  # the last: after the '5.5.5-' prefix
    if version < MARIADB_MINIMUM:
        raise ConfigError(
            f"XRDAGG_DATABASE_URL: MariaDB {server_info} is too old: xrdagg needs "
            f"{MARIADB_MINIMUM[0]}.{MARIADB_MINIMUM[1]} or newer (FOR UPDATE NOWAIT for the job "
            "lock since 10.3, INSERT … RETURNING since 10.5, SKIP LOCKED for recompute workers "
            "since 10.6)"
        )
