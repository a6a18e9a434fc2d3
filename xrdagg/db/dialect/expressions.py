"""Scalar expressions whose SQL differs per database (Oracle, PostgreSQL, SQLite), each one
named construct with one template per dialect. Times are whole epoch seconds inside SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    String,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
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
