"""Schema definitions that differ per database: Oracle partitioning, local and compressed
indexes, and the SQL*Plus frame of the offline script a DBA runs.

Used by revision 0006 and by `xrdagg.db.migrate.offline_sql`; tests/test_oracle_offline.py lints
what they render.
"""

from __future__ import annotations

from collections.abc import Sequence

# Interval partitioning (Oracle): the 10-minute tables a partition a day, the daily tables a
# partition a month. Retention then drops whole partitions (docs/operations.md).
PARTITION_INTERVALS = {
    "t_stats_avg": ("bin_start", "NUMTODSINTERVAL(1, 'DAY')"),
    "t_user_activity": ("bin_start", "NUMTODSINTERVAL(1, 'DAY')"),
    "t_stats_access_pattern": ("bin_start", "NUMTODSINTERVAL(1, 'DAY')"),
    "t_msg_rate": ("bin_start", "NUMTODSINTERVAL(1, 'DAY')"),
    "t_stats_access_pattern_a": ("day", "NUMTOYMINTERVAL(1, 'MONTH')"),
    "mv_site_stats": ("day", "NUMTOYMINTERVAL(1, 'MONTH')"),
}
# The first partition holds nothing real: everything later gets its interval partition on insert.
FIRST_PARTITION_BOUND = "DATE '2000-01-01'"


def oracle_partition_by_interval(table: str, primary_key: str) -> str:
    """ALTER TABLE … MODIFY PARTITION BY RANGE … INTERVAL … ONLINE (Oracle 12.2+): the table and
    its primary key index (which leads with the time column) become partitioned, the index
    LOCAL, without blocking DML on a table that already holds data."""
    column, interval = PARTITION_INTERVALS[table]
    return (
        f"ALTER TABLE {table} MODIFY\n"
        f"    PARTITION BY RANGE ({column}) INTERVAL ({interval})\n"
        f"    (PARTITION p_first VALUES LESS THAN ({FIRST_PARTITION_BOUND}))\n"
        f"    ONLINE UPDATE INDEXES ({primary_key} LOCAL)"
    )


def oracle_create_index(
    name: str, table: str, columns: Sequence[str], *, compress: int, local: bool
) -> str:
    """CREATE INDEX with prefix (key) compression of its first `compress` columns, LOCAL on a
    partitioned table (so that dropping a partition drops its index entries with it)."""
    return (
        f"CREATE INDEX {name} ON {table} ({', '.join(columns)})"
        + (f" COMPRESS {compress}" if compress else "")
        + (" LOCAL" if local else "")
    )


# SQL*Plus / SQLcl: stop at the first error (rolling back the DML in flight), and read the
# script literally: no `&` substitution, blank lines allowed inside a statement.
SQLPLUS_PROLOGUE = """\
WHENEVER SQLERROR EXIT FAILURE ROLLBACK
WHENEVER OSERROR EXIT FAILURE ROLLBACK
SET DEFINE OFF
SET SQLBLANKLINES ON

"""
# The version row and the seeded tables are DML: committed explicitly, not left to EXIT.
SQLPLUS_EPILOGUE = "COMMIT\n\n/\n"


def offline_script(dialect: str, body: str) -> str:
    """The offline DDL script for `dialect`: on Oracle framed for SQL*Plus, elsewhere as is."""
    if dialect != "oracle":
        return body
    return SQLPLUS_PROLOGUE + body + ("" if body.endswith("\n") else "\n") + SQLPLUS_EPILOGUE
