"""Work table of `xrdagg topology apply`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 23:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xrdagg.db.types import Text

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "t_topology_delta",
        sa.Column("domain_name", Text(255), nullable=False),
        sa.Column("site", Text(256), nullable=False),
        sa.PrimaryKeyConstraint("domain_name", "site", name=op.f("pk_t_topology_delta")),
    )


def downgrade() -> None:
    op.drop_table("t_topology_delta")
