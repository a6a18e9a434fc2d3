"""Locking, isolation and error classification: how each database says "busy", "try again"
and "unreachable", and how a row is locked or claimed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    exc,
    select,
    update,
)

# --- locking and isolation -----------------------------------------------------------------------

# Job transactions read raw rows and the resolution cache in several statements: they must all
# see one snapshot. Oracle's SERIALIZABLE is snapshot isolation; SQLite is serializable anyway.
JOB_ISOLATION = {"oracle": "SERIALIZABLE", "postgresql": "REPEATABLE READ"}


# Markers of a database that cannot be reached, for errors that carry no code (a refused
# connection, a server shutting down): PostgreSQL, python-oracledb and SQLite wordings.
_UNREACHABLE = (
    "connection", "server closed", "could not connect", "terminating connection",
    "database system is shutting down", "the database system is starting up", "DPY-4011",
    "DPY-6005", "ORA-03113", "ORA-03114", "ORA-12541", "unable to open database",
)  # fmt: skip
_UNREACHABLE_ORACLE_CODES = (3113, 3114, 12541, 12514, 12170)


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
        if code in _UNREACHABLE_ORACLE_CODES:
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
    return "database is locked" in str(orig)


def is_serialization_failure(error: exc.DBAPIError) -> bool:
    """True when `error` says the transaction lost a snapshot conflict (or a deadlock): run it
    again."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) in ("40001", "40P01"):
        return True
    code = getattr(orig.args[0], "code", None) if orig is not None and orig.args else None
    return code == 8177


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
