"""Engines configured for xrdagg: schema translation for the raw tables, SQLite pragmas."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

from xrdagg.config import Settings
from xrdagg.db.dialect import SQLITE_BUSY_TIMEOUT_MS
from xrdagg.db.tables import RAW_SCHEMA


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """An engine whose connections read raw tables from `settings.raw_schema`."""
    options: dict[str, Any] = {"pool_pre_ping": True, **kwargs}
    if settings.backend == "sqlite":
        options.pop("pool_pre_ping")
    engine = create_engine(settings.database_url, **options)
    if settings.backend == "sqlite":
        _configure_sqlite(engine)
    return engine.execution_options(schema_translate_map={RAW_SCHEMA: settings.raw_schema})


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, and transactions that really begin when SQLAlchemy says so.

    pysqlite otherwise opens transactions lazily, before the first write only, so that a job's
    reads would run outside its transaction. This is SQLAlchemy's documented recipe.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")
