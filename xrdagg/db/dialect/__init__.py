"""Every difference between Oracle, PostgreSQL, SQLite and MySQL/MariaDB, each as one named
construct.

Statements elsewhere are written once with these constructs and SQLAlchemy compiles them for the
connection's dialect. Times are whole seconds since 1970-01-01 UTC ("epoch seconds") inside SQL,
and `UtcDate` values at the edges.
"""

from __future__ import annotations

from xrdagg.db.dialect.expressions import (
    MAX_RAW_MEASURE,
    as_real,
    day_start,
    db_now,
    epoch_seconds,
    finite_or,
    floor_to,
    from_epoch,
    greatest_of,
    least_of,
    nonblank,
    odd_number,
    plus_seconds,
    truncated,
    whole_quotient,
)
from xrdagg.db.dialect.locking import (
    CHUNK_ISOLATION,
    JOB_ISOLATION,
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_NOWAIT_MS,
    OwnRowsDelete,
    claim_first,
    insert_missing,
    is_lock_busy,
    is_serialization_failure,
    is_unreachable,
    isolated_transaction,
    lock_row,
    lock_timeout,
    require_supported_server,
)
from xrdagg.db.dialect.statements import (
    POSTGRES_AGGREGATION_WORK_MEM,
    SQLITE_PAGE_CACHE_KIB,
    SQLITE_SORTER_THREADS,
    InsertIgnoringDuplicates,
    MergeInto,
    analyze_table,
    clear_stage,
    fill_stage_as,
    insert_ignoring_duplicates,
    tune_for_aggregation,
)
from xrdagg.db.dialect.subqueries import computed_once

__all__ = [
    "CHUNK_ISOLATION",
    "JOB_ISOLATION",
    "MAX_RAW_MEASURE",
    "POSTGRES_AGGREGATION_WORK_MEM",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_NOWAIT_MS",
    "SQLITE_PAGE_CACHE_KIB",
    "SQLITE_SORTER_THREADS",
    "InsertIgnoringDuplicates",
    "MergeInto",
    "OwnRowsDelete",
    "analyze_table",
    "as_real",
    "claim_first",
    "clear_stage",
    "computed_once",
    "day_start",
    "db_now",
    "epoch_seconds",
    "fill_stage_as",
    "finite_or",
    "floor_to",
    "from_epoch",
    "greatest_of",
    "insert_ignoring_duplicates",
    "insert_missing",
    "is_lock_busy",
    "is_serialization_failure",
    "is_unreachable",
    "isolated_transaction",
    "least_of",
    "lock_row",
    "lock_timeout",
    "nonblank",
    "odd_number",
    "plus_seconds",
    "require_supported_server",
    "truncated",
    "tune_for_aggregation",
    "whole_quotient",
]
