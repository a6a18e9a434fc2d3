"""The contract in the schema, and Oracle as a DBA runs it: comments on the statistics tables and
columns, indexes for the dashboards' per-site queries, and on Oracle interval partitioning of the
10-minute (a partition a day) and daily (a partition a month) tables.

Partitioning is on by default on Oracle (XRDAGG_ORACLE_PARTITIONING=off, or
`alembic -x oracle_partitioning=off`, for an edition without the Partitioning option). It is
done with ALTER TABLE … MODIFY … ONLINE (Oracle 12.2+), so it also converts tables that hold data
without blocking the jobs. Its downgrade leaves the partitioning in place: Oracle has no online
way back, and a partitioned table behaves the same for every statement xrdagg runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

from xrdagg.db.comments import COLUMN_COMMENTS, TABLE_COMMENTS
from xrdagg.db.dialect.ddl import (
    PARTITION_INTERVALS,
    oracle_create_index,
    oracle_partition_by_interval,
)
from xrdagg.db.tables import metadata

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, columns, Oracle prefix compression): a few hundred sites, each on many rows.
_INDEXES = (
    ("ix_stats_avg_src", "t_stats_avg", ("src_site", "bin_start"), 1),
    ("ix_stats_avg_dst", "t_stats_avg", ("dst_site", "bin_start"), 1),
    ("ix_site_stats_site", "mv_site_stats", ("site", "day"), 1),
)


def _dialect() -> str:
    return op.get_context().dialect.name


def _partitioned() -> bool:
    return _dialect() == "oracle" and bool(
        context.config.attributes.get("oracle_partitioning", True)
    )


def upgrade() -> None:
    if _partitioned():
        for table in PARTITION_INTERVALS:
            op.execute(oracle_partition_by_interval(table, f"pk_{table}"))
    for name, table, columns, compress in _INDEXES:
        if _dialect() == "oracle":
            op.execute(
                oracle_create_index(name, table, columns, compress=compress, local=_partitioned())
            )
        else:
            op.create_index(name, table, list(columns))
    if op.get_context().dialect.supports_comments:
        _comment()


def _comment() -> None:
    for table, comment in TABLE_COMMENTS.items():
        op.create_table_comment(table, comment)
    for table, columns in COLUMN_COMMENTS.items():
        for name, comment in columns.items():
            column = metadata.tables[table].c[name]
            # existing_*: MySQL writes a comment by restating the whole column definition.
            op.alter_column(
                table,
                name,
                comment=comment,
                existing_type=column.type,
                existing_nullable=column.nullable,
                existing_server_default=column.server_default,
            )


def downgrade() -> None:
    if op.get_context().dialect.supports_comments:
        for table, columns in COLUMN_COMMENTS.items():
            for name, comment in columns.items():
                column = metadata.tables[table].c[name]
                op.alter_column(
                    table,
                    name,
                    comment=None,
                    existing_comment=comment,
                    existing_type=column.type,
                    existing_nullable=column.nullable,
                    existing_server_default=column.server_default,
                )
        for table, comment in TABLE_COMMENTS.items():
            op.drop_table_comment(table, existing_comment=comment)
    for name, table, _columns, _compress in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
