"""Every difference between Oracle, PostgreSQL and SQLite, each as one named construct.

Statements elsewhere are written once with these constructs and SQLAlchemy compiles them for the
connection's dialect. Times are whole seconds since 1970-01-01 UTC ("epoch seconds") inside SQL,
and `UtcDate` values at the edges.
"""

from __future__ import annotations

from xrdagg.db.dialect.expressions import (
    as_real,
    day_start,
    db_now,
    epoch_seconds,
    floor_to,
    from_epoch,
    greatest_of,
    least_of,
    nonblank,
    plus_seconds,
    truncated,
    whole_quotient,
)
from xrdagg.db.dialect.locking import (
    JOB_ISOLATION,
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_NOWAIT_MS,
    claim_first,
    is_lock_busy,
    is_serialization_failure,
    is_unreachable,
    lock_row,
    lock_timeout,
)
from xrdagg.db.dialect.statements import (
    POSTGRES_AGGREGATION_WORK_MEM,
    InsertIgnoringDuplicates,
    MergeInto,
    analyze_table,
    clear_stage,
    fill_stage_as,
    tune_for_aggregation,
)

__all__ = [
    "JOB_ISOLATION",
    "POSTGRES_AGGREGATION_WORK_MEM",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_NOWAIT_MS",
    "InsertIgnoringDuplicates",
    "MergeInto",
    "analyze_table",
    "as_real",
    "claim_first",
    "clear_stage",
    "day_start",
    "db_now",
    "epoch_seconds",
    "fill_stage_as",
    "floor_to",
    "from_epoch",
    "greatest_of",
    "is_lock_busy",
    "is_serialization_failure",
    "is_unreachable",
    "least_of",
    "lock_row",
    "lock_timeout",
    "nonblank",
    "plus_seconds",
    "truncated",
    "tune_for_aggregation",
    "whole_quotient",
]
