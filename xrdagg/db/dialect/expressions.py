"""Scalar expressions whose SQL differs per database (Oracle, PostgreSQL, SQLite, MySQL/MariaDB),
each one named construct with one template per dialect. Times are whole epoch seconds inside SQL.

MySQL/MariaDB: `/` always divides exactly (a DECIMAL result), so whole-number division is `DIV`;
dates are DATETIME holding UTC, converted with TIMESTAMPDIFF/INTERVAL arithmetic, which, unlike
UNIX_TIMESTAMP/FROM_UNIXTIME, does not depend on the session's time zone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    literal_column,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Float

from xrdagg.db.types import UtcDate

# --- scalar expressions -------------------------------------------------------------------------


def _render_as(cls: type[FunctionElement[Any]], **templates: str) -> None:
    """Register one SQL template per dialect ("default" for the rest); {0}, {1}… are the args,
    {args} all of them, comma-separated."""
    for dialect, template in templates.items():

        def render(element: Any, compiler: Any, _template: str = template, **kw: Any) -> str:
            parts = [compiler.process(c, **kw) for c in element.clauses]
            return _template.format(*parts, args=", ".join(parts))

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
    mysql="TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', {0})",
)


# The first SQLite with unixepoch().
SQLITE_UNIXEPOCH_VERSION = (3, 38, 0)


def _sqlite_has(compiler: Any, version: tuple[int, int, int]) -> bool:
    """Whether the SQLite library a statement is compiled for is `version` or newer (a dialect
    without its driver, as in an offline compile, counts as older)."""
    return bool(getattr(compiler.dialect.dbapi, "sqlite_version_info", (0, 0, 0)) >= version)


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    # unixepoch() (SQLite 3.38) gives the same integer without formatting it as text and
    # parsing it back: the three conversions of a 1M-row staging, 0.91 s -> 0.54 s. Older
    # libraries (RHEL 9 ships 3.34) keep strftime.
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    if _sqlite_has(compiler, SQLITE_UNIXEPOCH_VERSION):
        return f"unixepoch({value})"
    return f"CAST(strftime('%s', {value}) AS INTEGER)"


# The first SQLite with aggregate FILTER clauses.
SQLITE_FILTER_VERSION = (3, 30, 0)


class sum_where(FunctionElement[Any]):  # noqa: N801
    """sum_where(condition, value): the sum of `value` over the rows where `condition` holds, 0
    when it holds for none.

    PostgreSQL and SQLite skip the other rows with a FILTER clause, so they make no aggregate
    step for them; elsewhere the rows add a 0 (`CASE`)."""

    inherit_cache = True

    def __init__(self, condition: Any, value: Any) -> None:
        super().__init__(condition, value)
        self.type = getattr(value, "type", self.type)  # a sum has its values' type


class count_where(FunctionElement[int]):  # noqa: N801
    """count_where(condition): the rows where `condition` holds (as `sum_where`)."""

    type = Integer()
    inherit_cache = True


def _has_filter(compiler: Any) -> bool:
    if compiler.dialect.name == "postgresql":
        return True
    return compiler.dialect.name == "sqlite" and _sqlite_has(compiler, SQLITE_FILTER_VERSION)


@compiles(sum_where)
def _sum_where(element: Any, compiler: Any, **kw: Any) -> str:
    condition, value = (compiler.process(c, **kw) for c in element.clauses)
    if _has_filter(compiler):
        return f"coalesce(sum({value}) FILTER (WHERE {condition}), 0)"
    return f"sum(CASE WHEN {condition} THEN {value} ELSE 0 END)"


@compiles(count_where)
def _count_where(element: Any, compiler: Any, **kw: Any) -> str:
    (condition,) = (compiler.process(c, **kw) for c in element.clauses)
    if _has_filter(compiler):
        return f"count(*) FILTER (WHERE {condition})"
    return f"sum(CASE WHEN {condition} THEN 1 ELSE 0 END)"


class sqlite_shortcut(FunctionElement[bool]):  # noqa: N801
    """sqlite_shortcut(cheap, condition): `condition`, which implies `cheap`; on SQLite rendered
    as `cheap AND condition`, so that the cheap test rules most rows out first (SQLite evaluates
    an AND from the left, each IN list hashed once); elsewhere `condition` alone.

    MariaDB ran such a cheap test, an IN (subquery) on a column no index leads with, as a
    dependent subquery per row (a 1M-row topology apply: 29 s to over 10 minutes), and
    PostgreSQL gained nothing from it.
    """

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a condition itself: no "= 1" around it where booleans are ints


@compiles(sqlite_shortcut)
def _sqlite_shortcut_elsewhere(element: Any, compiler: Any, **kw: Any) -> str:
    _, condition = element.clauses
    return f"({compiler.process(condition, **kw)})"


@compiles(sqlite_shortcut, "sqlite")
def _sqlite_shortcut_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    cheap, condition = element.clauses
    return f"(({compiler.process(cheap, **kw)}) AND ({compiler.process(condition, **kw)}))"


class unindexed(FunctionElement[Any]):  # noqa: N801
    """unindexed(column): the column, which a range condition should not read through an index.

    SQLite has no statistics on the raw tables (they are the collectors') and reads any range of
    END_DATE through its index, a table lookup per row; for a range holding most of the table,
    reading the table in its own order is cheaper (a topology apply's 1M rows: its staging 1.6 s
    -> 1.05 s; a recompute chunk of every day of them: 10.3-10.5 s -> 8.4-8.5 s). There the
    column is rendered with a unary `+`, which SQLite's planner does not match to an index (and
    which drops only the column's affinity: the dates compared are text on both sides).
    Elsewhere it is the column: those planners choose by their own statistics.
    """

    inherit_cache = True

    def __init__(self, column: Any, **kw: Any) -> None:
        super().__init__(column, **kw)
        self.type = column.type  # binds compared with it are processed as the column's


_render_as(unindexed, default="{0}", sqlite="+{0}")

# Above this share of a table's rows, reading them through an index costs more than a scan, where
# each row found so is looked up again: in the table on SQLite, about ten times the cost of a row
# scanned (1M raw rows, a topology apply: 238k of them by six END_DATE ranges 2.4 s, the whole
# table 0.9-1.0 s); in the clustered index on MySQL/MariaDB, whose range reads of the same rows
# cost as much as its scan (4.6-5.8 s against 5.0-5.9 s), and only pay for fewer.
SCAN_ABOVE_SHARE = {"sqlite": 0.1, "mysql": 0.1}


def prefers_scan(dialect: str, share: float) -> bool:
    """Whether a read of `share` (0-1) of a table's rows should scan the table rather than go
    through an index: above SCAN_ABOVE_SHARE on SQLite (which is then told so: `unindexed`) and
    MySQL/MariaDB (whose planner, given one wide range, scans). Never elsewhere: those planners
    choose between an index and a scan by their own statistics, given the exact ranges."""
    return share > SCAN_ABOVE_SHARE.get(dialect, 1.0)


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
    # A DATETIME literal: DATE_ADD of a string would return a string.
    mysql="(TIMESTAMP '1970-01-01 00:00:00' + INTERVAL ({0}) SECOND)",
)


class floor_to(FunctionElement[int]):  # noqa: N801
    """floor_to(seconds, width): the start of the width-second bin holding `seconds` (before
    1970 too: a negative time belongs to the bin that starts at or before it)."""

    type = Integer()
    inherit_cache = True


_render_as(
    floor_to,
    oracle="(FLOOR(({0}) / {1}) * {1})",
    # PostgreSQL, SQLite and MySQL truncate integer division and % towards zero, which is the
    # floor only for seconds >= 0: subtracting the non-negative remainder floors both signs, in
    # integers (a row ending 1969-12-31 23:55 belongs to the 23:50 bin, not to 1970's first).
    postgresql="(({0}) - MOD(MOD({0}, {1}) + {1}, {1}))",
    mysql="(({0}) - MOD(MOD({0}, {1}) + {1}, {1}))",
    sqlite="(({0}) - ((({0}) % {1}) + {1}) % {1})",
)


class whole_quotient(FunctionElement[int]):  # noqa: N801
    """whole_quotient(a, b): a / b for whole numbers a >= 0, b > 0 that b divides, as a whole
    number. (SQLAlchemy's `/` on integers renders a NUMERIC division on PostgreSQL, which makes
    an equality join on the result unhashable.)"""

    type = Integer()
    inherit_cache = True


_render_as(
    whole_quotient,
    oracle="FLOOR(({0}) / {1})",
    mysql="(({0}) DIV {1})",
    default="(({0}) / {1})",
)


class as_real(FunctionElement[float]):  # noqa: N801
    """A number in floating-point form, so that division does not truncate."""

    type = Float()
    inherit_cache = True


_render_as(
    as_real,
    oracle="({0})",  # NUMBER divides exactly
    postgresql="CAST({0} AS DOUBLE PRECISION)",
    sqlite="CAST({0} AS REAL)",
    mysql="CAST({0} AS DOUBLE)",  # MariaDB >= 10.4.5, MySQL >= 8.0.17
)


class greatest_of(FunctionElement[Any]):  # noqa: N801
    """The largest of two or more non-NULL arguments (GREATEST; SQLite's multi-argument max())."""

    inherit_cache = True


_render_as(greatest_of, default="GREATEST({args})", sqlite="max({args})")


class least_of(FunctionElement[Any]):  # noqa: N801
    """The smallest of two or more non-NULL arguments (LEAST; SQLite's multi-argument min())."""

    inherit_cache = True


_render_as(least_of, default="LEAST({args})", sqlite="min({args})")


class day_start(FunctionElement[Any]):  # noqa: N801
    """Midnight UTC of the day holding a date."""

    type = UtcDate()
    inherit_cache = True


_render_as(
    day_start,
    oracle="TRUNC({0})",
    postgresql="date_trunc('day', {0})",
    sqlite="datetime({0}, 'start of day')",
    mysql="CAST(CAST({0} AS DATE) AS DATETIME)",
)


class _text_of_length(FunctionElement[str]):  # noqa: N801
    """A text and a length n, written into the SQL, not bound: PostgreSQL's rendering of
    `truncated` needs it as a type modifier, and as SQL text it is part of the statement's
    cache key (a bound value is not)."""

    type = String()
    inherit_cache = True

    def __init__(self, text: Any, length: int) -> None:
        super().__init__(text, literal_column(str(int(length))))


class truncated(_text_of_length):  # noqa: N801
    """truncated(text, n): at most n characters (Oracle and MySQL: bytes, the unit of their
    key columns, VARCHAR2(n BYTE) and VARBINARY(n))."""

    inherit_cache = True


_render_as(
    truncated,
    oracle="SUBSTRB({0}, 1, {1})",
    # Bytes of the UTF-8 text: what fits a VARBINARY(n) key (xrdagg.db.types.Text).
    mysql="LEFT(CAST({0} AS BINARY), {1})",
    default="SUBSTR({0}, 1, {1})",
)


class narrow_text(_text_of_length):  # noqa: N801
    """narrow_text(text, n): `text`, of at most n characters, declared that narrow. The caller
    makes sure it is no longer (nothing is cut). Only MySQL/MariaDB need it
    (`narrow_distinct_chars`); elsewhere it is the text as it is."""

    inherit_cache = True


_render_as(
    narrow_text,
    # LEFT keeps the text's character set and collation (the raw columns': binary, no padding,
    # so 'a ' is not 'a'), implicitly: compared with the cache's VARBINARY keys, the comparison
    # stays binary and goes through their index. A CAST with an explicit COLLATE won over the
    # keys' collation and turned every probe into a scan of the cache (a 20k-row batch on
    # MariaDB: 0.9 -> 30 s).
    mysql="LEFT({0}, {1})",
    default="{0}",
)

# MySQL/MariaDB keep a DISTINCT's rows in an in-memory table at their columns' declared width,
# and a raw (host, domain) pair is two VARCHAR(1000) utf8mb4 columns, 8 KB a row: the pairs of
# a 1M-row catch-up (112k) overflowed to an on-disk table. Keys of at most this many bytes are
# found declared this many characters wide (512 bytes a pair), the longer ones apart
# (`topology.store.uncached_pairs`).
NARROW_DISTINCT_CHARS = {"mysql": 64}


def narrow_distinct_chars(dialect: str) -> int | None:
    """The width to find distinct raw keys at first on `dialect` (None: at their own)."""
    return NARROW_DISTINCT_CHARS.get(dialect)


@compiles(truncated, "postgresql")
def _truncated_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    # An explicit cast to VARCHAR(n) cuts a text to n characters, as SUBSTR does, but returns a
    # text of at most n bytes as it is (no character is counted, nothing copied), where SUBSTR
    # counts and copies every one: the user DN of 1M rows, 0.27 s of CPU -> 0.01 s.
    text, length = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST({text} AS VARCHAR({length}))"


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
    mysql="({0} + INTERVAL ({1}) SECOND)",
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
    mysql="UTC_TIMESTAMP()",  # whole seconds, whatever the session's time zone
)


# The largest magnitude a raw measure may have (bytes, operations, sizes: 10^18 is an exabyte,
# beyond any one transfer); beyond it, like NaN and ±infinity, the value is not a measurement,
# and summing it would overflow the statistics' doubles or make every sum NaN. Written as an
# integer, not 1e18: that is a DOUBLE on MySQL/MariaDB, which then converted every DECIMAL raw
# value it was compared with (1M rows' normalisation 13.2 s -> 10.8 s); elsewhere the same number.
MAX_RAW_MEASURE = "1000000000000000000"


class finite_or(FunctionElement[Any]):  # noqa: N801
    """finite_or(number, replacement): the raw number when it is a finite value within
    ±MAX_RAW_MEASURE, NULL when it is NULL, else `replacement` (0 for the byte and operation
    counts: treated like a negative value, SPEC §2; NULL for sizes and min/max: unknown).

    PostgreSQL's NUMERIC holds NaN (greater than every number) and ±Infinity, so one range test
    catches all three; SQLite stores an overflowing literal as ±Inf (NaN becomes NULL), and a
    non-numeric text such as 'NaN' as TEXT; Oracle's NUMBER holds finite values only.
    """

    inherit_cache = True


_in_measure_range = f"BETWEEN -{MAX_RAW_MEASURE} AND {MAX_RAW_MEASURE}"

_render_as(
    finite_or,
    # A range test rather than ABS: ABS makes a new NUMERIC per value on PostgreSQL, a compare
    # does not; NaN sorts above every number there, so it fails the test like ±Infinity. The
    # range test first and BETWEEN, which SQLite evaluates its operand once for: a value that
    # passes (nearly all) is tested once, where an IS NULL test ahead of it made every value
    # pay for two. The twelve measures of 1M rows: SQLite 0.55 s -> 0.20 s over reading them,
    # PostgreSQL 0.63 s -> 0.56 s.
    default=f"(CASE WHEN {{0}} {_in_measure_range} THEN {{0}} WHEN {{0}} IS NOT NULL "
    "THEN {1} END)",
    # SQLite orders every TEXT and BLOB above every number, so the range test alone refuses
    # them, as a typeof() test did: but only with the operand's affinity taken off by unary +
    # (a TEXT column would turn the bounds into text and compare '0.5' as a string). Per row
    # this is cheaper than typeof() IN (...): 1M rows' normalisation 9.7 s -> 8.5 s.
    sqlite=f"(CASE WHEN +{{0}} {_in_measure_range} THEN {{0}} WHEN {{0}} IS NOT NULL "
    "THEN {1} END)",
)


class beyond_measure(FunctionElement[bool]):  # noqa: N801
    """Whether a raw number is one `finite_or` replaces (NaN, ±infinity, beyond
    ±MAX_RAW_MEASURE, on SQLite a text or blob); NULL for NULL, which is no odd number."""

    type = Boolean()
    inherit_cache = True


_render_as(
    beyond_measure,
    default=f"NOT ({{0}} {_in_measure_range})",
    sqlite=f"NOT (+{{0}} {_in_measure_range})",  # unary +: as in finite_or
)


class odd_number(FunctionElement[str]):  # noqa: N801
    """Why a raw number is not a measurement ('NaN', 'infinite', 'out of range'), else NULL:
    the reasons `finite_or` replaces it for, as `xrdagg check` and the run log count them."""

    type = String()
    inherit_cache = True


_render_as(
    odd_number,
    # Oracle's NUMBER and MySQL's DECIMAL hold finite values only.
    default=f"(CASE WHEN {{0}} > {MAX_RAW_MEASURE} OR {{0}} < -{MAX_RAW_MEASURE} "
    "THEN 'out of range' END)",
    postgresql="(CASE WHEN {0} = 'NaN' THEN 'NaN' "
    "WHEN {0} IN ('Infinity', '-Infinity') THEN 'infinite' "
    f"WHEN ABS({{0}}) > {MAX_RAW_MEASURE} THEN 'out of range' END)",
    sqlite="(CASE WHEN typeof({0}) = 'text' THEN 'NaN' "
    "WHEN typeof({0}) = 'real' AND ABS({0}) > 1.7976931348623157e308 THEN 'infinite' "
    f"WHEN typeof({{0}}) IN ('integer', 'real') AND ABS({{0}}) > {MAX_RAW_MEASURE} "
    "THEN 'out of range' END)",
)
