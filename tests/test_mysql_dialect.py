"""MySQL/MariaDB without a server: which versions are accepted, and how its errors are read
(the MySQL tier runs everything else on a real MariaDB)."""

from __future__ import annotations

import pymysql
import pytest
from sqlalchemy import create_engine, exc, text

from xrdagg.db.dialect import (
    is_lock_busy,
    is_serialization_failure,
    is_unreachable,
    require_supported_server,
)
from xrdagg.errors import ConfigError


@pytest.mark.parametrize(
    "server_info",
    ["5.5.5-10.11.19-MariaDB-0+deb12u1", "10.6.0-MariaDB", "11.4.2-MariaDB-log"],
)
def test_mariadb_from_10_6_is_accepted(server_info: str) -> None:
    require_supported_server(server_info)


@pytest.mark.parametrize(
    ("server_info", "reason"),
    [
        ("5.5.5-10.5.23-MariaDB", "too old: xrdagg needs 10.6"),
        ("10.3.39-MariaDB-0+deb10u1", "too old: xrdagg needs 10.6"),
        ("8.0.36", "MySQL server 8.0.36 is not supported"),
        ("8.4.0-commercial", "use MariaDB 10.6 or newer"),
    ],
)
def test_older_mariadb_and_mysql_are_refused_with_the_reason(server_info: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        require_supported_server(server_info)


def _error(code: int, message: str) -> exc.DBAPIError:
    """The SQLAlchemy error wrapping a PyMySQL error with the server's error number."""
    return exc.OperationalError("SELECT 1", {}, pymysql.err.OperationalError(code, message))


@pytest.mark.parametrize(
    ("code", "busy", "serialization"),
    [
        # lock wait timeout, also MariaDB's answer to FOR UPDATE NOWAIT: a lock another job holds,
        # not a lost snapshot (retrying it made a second runner fail instead of skipping)
        (1205, True, False),
        (1213, True, True),  # deadlock
        (3572, True, False),  # MySQL 8's answer to NOWAIT
        (1020, True, True),  # MariaDB: record changed since last read (snapshot isolation)
        (1062, False, False),  # duplicate key: a bug, not contention
    ],
)
def test_mysql_errors_are_classified_by_number(code: int, busy: bool, serialization: bool) -> None:
    error = _error(code, "message")
    assert (is_lock_busy(error), is_serialization_failure(error)) == (busy, serialization)
    assert not is_unreachable(error)


@pytest.mark.parametrize("code", [2003, 2006, 2013, 1053, 1927])
def test_mysql_connection_errors_are_unreachable(code: int) -> None:
    assert is_unreachable(_error(code, "gone"))


def test_a_refused_connection_is_unreachable() -> None:
    engine = create_engine("mysql+pymysql://root@127.0.0.1:1/test")
    with pytest.raises(exc.OperationalError) as refused:
        engine.connect().execute(text("SELECT 1"))
    engine.dispose()
    assert is_unreachable(refused.value)
