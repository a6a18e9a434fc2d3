"""On SQLite, the resolution cache answers a probe from one index: (host, domain) with the domain
and site it resolves to.

Every staged raw row looks up its client's and its server's pair in T_HOST_SITE. On SQLite the
primary key is an index beside a rowid table, so each probe searched the index and then the
table for DOMAIN_NAME and SITE; an index holding both answers it alone (1M rows, 112k cached
pairs: the normalisation 8.7 s -> 6.6 s). SQLite only: PostgreSQL hash-joins the cache, and
there the index made writing the 112k pairs of a catch-up 1.8 s -> 3.0 s for nothing; MariaDB
clusters the table on its primary key, which holds every column already. Oracle, unmeasured,
keeps its schema as it was.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _on_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    if _on_sqlite():
        op.create_index(
            "ix_host_site_resolution",
            "t_host_site",
            ["host_key", "domain_key", "domain_name", "site"],
        )


def downgrade() -> None:
    if _on_sqlite():
        op.drop_index("ix_host_site_resolution", table_name="t_host_site")
