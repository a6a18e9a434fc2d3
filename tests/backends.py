"""Real databases for the tests: SQLite always; PostgreSQL, MySQL/MariaDB and Oracle when one
can be had.

PostgreSQL: XRDAGG_TEST_POSTGRES_URL (what .ci/run sets, for the server on this machine), else a
testcontainers server when a Docker engine answers. MySQL/MariaDB: XRDAGG_TEST_MYSQL_URL (e.g.
mysql+pymysql://root@127.0.0.1:3306/test, what .ci/run sets), else MariaDB through
testcontainers. Oracle: XRDAGG_ORACLE_URL, else Oracle Free through testcontainers when Docker
answers. Otherwise those tiers skip, saying why.
Each session gets its own schema (PostgreSQL), database (MySQL/MariaDB) or file (SQLite),
migrated once and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.engine import make_url

from xrdagg.config import Settings
from xrdagg.db import migrate
from xrdagg.db.engine import make_engine
from xrdagg.db.tables import metadata, t_bin_span


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@dataclass
class Backend:
    name: str
    settings: Settings
    engine: Engine
    env: dict[str, str]  # environment for an `xrdagg` subprocess on the same database

    def clear(self) -> None:
        """Empty every table but the migration's reference data."""
        with self.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if table is not t_bin_span:
                    conn.execute(delete(table))


def _sqlite(tmp_dir: Path) -> Iterator[Backend]:
    url = f"sqlite:///{tmp_dir / 'xrdagg-test.db'}"
    env = {"XRDAGG_DATABASE_URL": url}
    settings = Settings.from_env(env)
    migrate.upgrade(settings)
    engine = make_engine(settings)
    yield Backend("sqlite", settings, engine, env)
    engine.dispose()


def _postgres() -> Iterator[Backend]:
    base = os.environ.get("XRDAGG_TEST_POSTGRES_URL")
    stack = contextlib.ExitStack()
    if not base:
        if not docker_available():
            pytest.skip("PostgreSQL tier: set XRDAGG_TEST_POSTGRES_URL or run a Docker engine")
        from testcontainers.postgres import PostgresContainer

        container = stack.enter_context(PostgresContainer("postgres:16-alpine", driver="psycopg"))
        base = container.get_connection_url()
    url = make_url(base).set(drivername="postgresql+psycopg")
    schema = f"xrdagg_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, pool_pre_ping=True)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    test_url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    env = {"XRDAGG_DATABASE_URL": test_url.render_as_string(hide_password=False)}
    settings = Settings.from_env(env)
    migrate.upgrade(settings)
    engine = make_engine(settings)
    try:
        yield Backend("postgres", settings, engine, env)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
        stack.close()


# The MariaDB the Docker fallback starts: the oldest release xrdagg supports keeps it honest.
MARIADB_IMAGE = "mariadb:10.11"


def _mysql() -> Iterator[Backend]:
    base = os.environ.get("XRDAGG_TEST_MYSQL_URL")
    stack = contextlib.ExitStack()
    if not base:
        if not docker_available():
            pytest.skip("MySQL tier: set XRDAGG_TEST_MYSQL_URL or run a Docker engine")
        from testcontainers.mysql import MySqlContainer

        container = stack.enter_context(
            MySqlContainer(MARIADB_IMAGE, username="root", password="test", dialect="pymysql")
        )
        base = container.get_connection_url()
    url = Settings.from_env({"XRDAGG_DATABASE_URL": base}).database_url  # mysql+pymysql
    database = f"xrdagg_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, pool_pre_ping=True)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {database} CHARACTER SET utf8mb4"))
    env = {"XRDAGG_DATABASE_URL": url.set(database=database).render_as_string(hide_password=False)}
    settings = Settings.from_env(env)
    try:
        migrate.upgrade(settings)
        engine = make_engine(settings)
        yield Backend("mysql", settings, engine, env)
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database}"))
        admin.dispose()
        stack.close()


def _oracle() -> Iterator[Backend]:
    url = os.environ.get("XRDAGG_ORACLE_URL")
    stack = contextlib.ExitStack()
    if not url:
        if not docker_available():
            pytest.skip(
                "Oracle tier: no XRDAGG_ORACLE_URL and no Docker engine for Oracle Free "
                "(the Oracle path is offline-checked only)"
            )
        from testcontainers.oracle import OracleDbContainer

        container = stack.enter_context(OracleDbContainer())
        url = container.get_connection_url()
    env = {"XRDAGG_DATABASE_URL": url}
    settings = Settings.from_env(env)
    migrate.upgrade(settings)
    engine = make_engine(settings)
    try:
        yield Backend("oracle", settings, engine, env)
    finally:
        with contextlib.suppress(Exception):
            migrate.downgrade(settings, "base")
        engine.dispose()
        stack.close()


def open_backend(name: str, tmp_dir: Path) -> Iterator[Backend]:
    if name == "sqlite":
        return _sqlite(tmp_dir)
    if name == "postgres":
        return _postgres()
    if name == "mysql":
        return _mysql()
    return _oracle()
