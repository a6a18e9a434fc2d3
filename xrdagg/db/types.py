"""Column types whose storage must agree across Oracle, PostgreSQL and SQLite.

Oracle DATE has whole seconds and no time zone, and the statistics compare and join on dates, so
every backend stores whole-second naive UTC values in one canonical form:
- Oracle: DATE;
- PostgreSQL: TIMESTAMP(0) WITHOUT TIME ZONE;
- SQLite: TEXT 'YYYY-MM-DD HH:MM:SS', the exact form SQLite's own datetime() returns, so that a
  bin computed in SQL and a date bound from Python compare equal as strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, Numeric, String
from sqlalchemy.dialects import oracle, postgresql, sqlite
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
    """VARCHAR2(n) in the database's default (byte) length semantics, as SPEC §1 writes it.

    SQLAlchemy renders VARCHAR2(n CHAR), which counts up to four bytes a character against
    Oracle's index key limit (about 6,400 bytes with 8 KiB blocks): the statistics keys would not
    fit in a primary key.
    """

    cache_ok = True

    def __init__(self, length: int) -> None:
        self.length = length

    def get_col_spec(self, **kw: Any) -> str:
        return f"VARCHAR2({self.length})"


def Number() -> TypeEngine[float]:  # noqa: N802 - named like the SQL type
    """Oracle NUMBER; a double on PostgreSQL and SQLite, where sums must be fast.

    Plain NUMBER matters: Oracle reads NUMERIC without a precision as NUMBER(38,0), an integer.
    """
    return (
        Numeric(asdecimal=False)
        .with_variant(oracle.NUMBER(asdecimal=False), "oracle")
        .with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
        .with_variant(Float(), "sqlite")
    )


def RawNumber() -> TypeEngine[float]:  # noqa: N802 - named like the SQL type
    """A raw NUMBER column: NUMBER on Oracle, NUMERIC elsewhere, as the collectors write it."""
    return Numeric(asdecimal=False).with_variant(oracle.NUMBER(asdecimal=False), "oracle")


def Count() -> TypeEngine[int]:  # noqa: N802 - named like the SQL type
    """A count: NUMBER(19) on Oracle, BIGINT elsewhere."""
    return BigInteger()


def Text(length: int) -> TypeEngine[str]:  # noqa: N802 - named like the SQL type
    """VARCHAR2(length) (bytes) on Oracle, VARCHAR(length) elsewhere."""
    return String(length).with_variant(OracleVarchar2(length), "oracle")
