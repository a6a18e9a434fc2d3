"""Raw numbers that are no measurement (NaN, ±infinity, beyond ±10^18), counted per reason.

The normalisation (`xrdagg.jobs.normalize`, through `xrdagg.db.dialect.finite_or`) treats such a
value like a negative one: a byte or operation count becomes 0, a size or a min/max unknown. The
row itself stays (SPEC §6: nothing but invalid rows is dropped); these counts make the odd values
visible in the run log and in `xrdagg check`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select

from xrdagg.db.dialect import odd_number
from xrdagg.jobs.normalize import MEASURES, has_odd_number, is_valid
from xrdagg.sources import Source

REASONS = ("NaN", "infinite", "out of range")


def odd_reason(source: Source) -> ColumnElement[Any]:
    """The reason of a raw row's first odd number, NULL when every number is a measurement."""
    return func.coalesce(*(odd_number(source.raw.c[name]) for name in MEASURES))


def odd_rows_by_reason(source: Source, condition: ColumnElement[bool]) -> Select[Any]:
    """(reason, rows) of the valid raw rows matching `condition` that hold an odd number."""
    reason = odd_reason(source).label("reason")
    return (
        select(reason, func.count().label("rows"))
        .select_from(source.raw)
        .where(is_valid(source), condition, has_odd_number(source))
        .group_by(odd_reason(source))
    )


def count_odd(
    conn: Connection, source: Source, condition: ColumnElement[bool], params: dict[str, Any]
) -> dict[str, int]:
    """Rows with an odd number, per reason, among the valid rows matching `condition`.

    A window runs it only when its staging counted such a row (`Staged.odd_rows`): the staging
    flags them in the pass it makes anyway, and this reads the raw rows again."""
    return {
        row.reason: int(row.rows)
        for row in conn.execute(odd_rows_by_reason(source, condition), params)
    }
