"""Raw tables created by xrdagg: an index on UNIQUE_ID, so that `xrdagg raw load` skips records
already loaded with one index probe per batch instead of a scan.

Only the raw tables xrdagg's own migrations created (no raw schema configured): the collectors'
tables are theirs, and xrdagg never writes them. Not UNIQUE: rows loaded twice before this
revision would make its creation fail, and the audit reports such duplicates instead.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create_raw_tables() -> bool:
    """Raw tables belong to the collectors' account unless no raw schema is configured."""
    return bool(context.config.attributes.get("create_raw_tables", True))


def upgrade() -> None:
    if _create_raw_tables():
        op.create_index("ix_raw_fed_unique_id", "t_raw_fed", ["unique_id"])
        op.create_index("ix_raw_eos_unique_id", "t_raw_eos", ["unique_id"])


def downgrade() -> None:
    if _create_raw_tables():
        op.drop_index("ix_raw_eos_unique_id", table_name="t_raw_eos")
        op.drop_index("ix_raw_fed_unique_id", table_name="t_raw_fed")
