"""Column types whose storage must agree across Oracle, PostgreSQL, SQLite and MySQL/MariaDB.

Oracle DATE has whole seconds and no time zone, and the statistics compare and join on dates, so
every backend stores whole-second naive UTC values in one canonical form:
- Oracle: DATE;
- PostgreSQL: TIMESTAMP(0) WITHOUT TIME ZONE;
- SQLite: TEXT 'YYYY-MM-DD HH:MM:SS', the exact form SQLite's own datetime() returns, so that a
  bin computed in SQL and a date bound from Python compare equal as strings;
- MySQL/MariaDB: DATETIME (whole seconds), which has no time zone at all: the values are UTC.

Text on MySQL/MariaDB is VARBINARY(n): n bytes compared byte for byte, exactly Oracle's
VARCHAR2(n BYTE). A utf8mb4 VARCHAR(n) would reserve 4n bytes in an index, and the statistics
keys (T_STATS_AVG: 1,089 characters) would not fit InnoDB's 3,072-byte index key limit; its
default collations would also fold case and trailing spaces, merging keys Oracle keeps apart.
Raw columns, which xrdagg lower-cases and trims (LOWER does nothing to a binary string), are
utf8mb4 VARCHAR with a binary, no-pad collation (`RawText`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, Numeric, String
from sqlalchemy.dialects import mysql, oracle, postgresql, sqlite
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

_SQLITE_DATETIME = sqlite.DATETIME(
    storage_format="%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d",
    regexp=r"(\d+)-(\d+)-(\d+)(?: (\d+):(\d+):(\d+))?",
)


class UtcDate(TypeDecorator[datetime]):
    """A naive UTC datetime with whole seconds (Oracle DATE semantics on every backend)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        if dialect.name == "oracle":
            return dialect.type_descriptor(oracle.DATE())
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(precision=0, timezone=False))
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLITE_DATETIME)
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME())
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            raise ValueError(f"UtcDate takes naive UTC datetimes, got {value!r}")
        return value.replace(microsecond=0)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(str(value))


class OracleVarchar2(UserDefinedType[str]):
    """VARCHAR2(n BYTE): byte length semantics, as SPEC §1 writes it, said explicitly.

    SQLAlchemy renders VARCHAR2(n CHAR), which counts up to four bytes a character against
    Oracle's index key limit (about 6,400 bytes with 8 KiB blocks): the statistics keys would not
    fit in a primary key. A bare VARCHAR2(n) would take the session's NLS_LENGTH_SEMANTICS,
    which a DBA may have set to CHAR.
    """

    cache_ok = True

    def __init__(self, length: int) -> None:
        self.length = length

    def get_col_spec(self, **kw: Any) -> str:
        return f"VARCHAR2({self.length} BYTE)"


class MysqlByteText(TypeDecorator[str]):
    """VARBINARY(n) holding UTF-8 text, read and written as `str` (see the module's docstring).

    A value truncated in SQL to n bytes (`truncated`) may end inside a character: Python reads
    that character as U+FFFD.
    """

    impl = mysql.VARBINARY
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> bytes | None:
        return None if value is None else value.encode("utf-8")

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return bytes(value).decode("utf-8", errors="replace")


# MariaDB's binary, no-pad collation: 'a' and 'A', 'a' and 'a ' are different values, as on
# Oracle and PostgreSQL. (MySQL 8 would be utf8mb4_0900_bin; xrdagg runs on MariaDB only.)
MYSQL_RAW_COLLATION = "utf8mb4_nopad_bin"


def Number() -> TypeEngine[float]:  # noqa: N802 - named like the SQL type
    """Oracle NUMBER; a double on PostgreSQL, SQLite and MySQL, where sums must be fast.

    Plain NUMBER matters: Oracle reads NUMERIC without a precision as NUMBER(38,0), an integer.
    """
    return (
        Numeric(asdecimal=False)
        .with_variant(oracle.NUMBER(asdecimal=False), "oracle")
        .with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
        .with_variant(Float(), "sqlite")
        .with_variant(mysql.DOUBLE(asdecimal=False), "mysql")
    )


def RawNumber() -> TypeEngine[float]:  # noqa: N802 - named like the SQL type
    """A raw NUMBER column: NUMBER on Oracle, NUMERIC elsewhere, as the collectors write it.

    MySQL's NUMERIC without a precision is DECIMAL(10,0), an integer of 10 digits: there it is
    DECIMAL(38,10), Oracle NUMBER's 38 digits with room for fractional averages.
    """
    return (
        Numeric(asdecimal=False)
        .with_variant(oracle.NUMBER(asdecimal=False), "oracle")
        .with_variant(mysql.DECIMAL(38, 10, asdecimal=False), "mysql")
    )


def Count() -> TypeEngine[int]:  # noqa: N802 - named like the SQL type
    """A count: NUMBER(19) on Oracle, BIGINT elsewhere."""
    return BigInteger()


def Text(length: int) -> TypeEngine[str]:  # noqa: N802 - named like the SQL type
    """VARCHAR2(length) (bytes) on Oracle, VARBINARY(length) on MySQL, VARCHAR(length) elsewhere."""
    return (
        String(length)
        .with_variant(OracleVarchar2(length), "oracle")
        .with_variant(MysqlByteText(length), "mysql")
    )


def RawText(length: int) -> TypeEngine[str]:  # noqa: N802 - named like the SQL type
    """A raw string column: as `Text`, but a utf8mb4 VARCHAR on MySQL (binary, no-pad
    collation), since xrdagg applies text functions to raw values."""
    return (
        String(length)
        .with_variant(OracleVarchar2(length), "oracle")
        .with_variant(
            mysql.VARCHAR(length, charset="utf8mb4", collation=MYSQL_RAW_COLLATION), "mysql"
        )
    )
