"""Dashboard-ready SQL: the daily site-pair table and the views dashboards read.

- `t_site_pair_day`: T_STATS_AVG summed per day, source, site pair and VO (no domains), and
  `t_unresolved_day`: per day, source, side, domain and VO, the rows whose side has site
  'unknown'; both rolled up by the daily job, and filled here from the 10-minute rows already
  there.
- `v_stats_avg` (10-minute) and `v_site_pair_day` (daily): the statistics with each side's
  country and the VO's name for each site (the GOCDB name when the VO has none), bytes as plain
  numbers (double precision / NUMBER) a dashboard can divide.
- `v_site_stats`: MV_SITE_STATS with the site's country.
- `v_job_lag`: per job, its watermark and how many seconds it lags the database's clock.

The views are compiled per dialect from one SQLAlchemy definition (the same text on Oracle
as in `sql/oracle_schema.sql`). Backward compatible: a new table and new views only.

Revision ID: 0007
Revises: 0010
Create Date: 2026-11-23 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xrdagg.db.dialect import day_start, db_now, epoch_seconds
from xrdagg.db.types import Count, Number, Text, UtcDate

revision: str = "0007"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNKNOWN = "unknown"
_SUMS = ("read_bytes", "write_bytes", "active_seconds")

# Frozen descriptions of the tables the views read (as of this revision).
_avg = sa.table(
    "t_stats_avg",
    *(sa.column(c) for c in ("bin_start", "source", "src_site", "src_domain", "dst_site")),
    *(sa.column(c) for c in ("dst_domain", "vo", *_SUMS, "transfers_active", "transfers_ended")),
)
_pair = sa.table(
    "t_site_pair_day",
    *(sa.column(c) for c in ("day", "source", "src_site", "dst_site", "vo", *_SUMS)),
    sa.column("transfers_ended"),
)
_unresolved = sa.table(
    "t_unresolved_day",
    *(sa.column(c) for c in ("day", "source", "side", "domain", "vo", "transfers_ended")),
    *(sa.column(c) for c in ("read_bytes", "write_bytes")),
)
_country = sa.table("t_site_country", sa.column("site"), sa.column("country"))
_vo_name = sa.table("t_site_vo_name", sa.column("vo"), sa.column("site"), sa.column("vo_site"))
_site_stats = sa.table(
    "mv_site_stats",
    *(sa.column(c) for c in ("day", "site", "role", "source", "read_bytes", "write_bytes")),
    *(sa.column(c) for c in ("transfers", "local_read_bytes", "remote_read_bytes", "users")),
)
_agent = sa.table("t_agent", sa.column("job_name"), sa.column("watermark"))
_pause = sa.table("t_job_pause", sa.column("job_name"), sa.column("owner"))


def _with_names(base: sa.TableClause, columns: list[sa.ColumnElement]) -> sa.Select:
    """`base` with each side's country and the VO's name for each site, one row per base row."""
    # A feed may give a site two names in one VO: the smallest is shown, never a duplicate row.
    names = (
        sa.select(_vo_name.c.vo, _vo_name.c.site, sa.func.min(_vo_name.c.vo_site).label("vo_site"))
        .group_by(_vo_name.c.vo, _vo_name.c.site)
        .subquery("vo_names")
    )
    src_name, dst_name = names.alias("src_name"), names.alias("dst_name")
    src_country, dst_country = _country.alias("src_country"), _country.alias("dst_country")
    joined = (
        base.outerjoin(src_country, src_country.c.site == base.c.src_site)
        .outerjoin(dst_country, dst_country.c.site == base.c.dst_site)
        .outerjoin(
            src_name, sa.and_(src_name.c.vo == base.c.vo, src_name.c.site == base.c.src_site)
        )
        .outerjoin(
            dst_name, sa.and_(dst_name.c.vo == base.c.vo, dst_name.c.site == base.c.dst_site)
        )
    )
    return sa.select(
        *columns,
        sa.func.coalesce(src_name.c.vo_site, base.c.src_site).label("src_vo_site"),
        sa.func.coalesce(src_country.c.country, UNKNOWN).label("src_country"),
        sa.func.coalesce(dst_name.c.vo_site, base.c.dst_site).label("dst_vo_site"),
        sa.func.coalesce(dst_country.c.country, UNKNOWN).label("dst_country"),
    ).select_from(joined)


def _views() -> dict[str, sa.Select]:
    avg, pair, site = _avg, _pair, _site_stats
    country = _country.alias("site_country")
    return {
        "v_stats_avg": _with_names(avg, list(avg.c)),
        "v_site_pair_day": _with_names(pair, list(pair.c)),
        "v_site_stats": sa.select(
            *site.c, sa.func.coalesce(country.c.country, UNKNOWN).label("country")
        ).select_from(site.outerjoin(country, country.c.site == site.c.site)),
        "v_job_lag": sa.select(
            _agent.c.job_name,
            _agent.c.watermark,
            # Who holds the job paused (revision 0009's T_JOB_PAUSE; one of them if several).
            sa.select(sa.func.min(_pause.c.owner))
            .where(_pause.c.job_name == _agent.c.job_name)
            .scalar_subquery()
            .label("paused_by"),
            (epoch_seconds(db_now()) - epoch_seconds(_agent.c.watermark)).label("lag_seconds"),
        ),
    }


def _create_view(name: str, query: sa.Select) -> None:
    dialect = op.get_context().dialect
    body = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    op.execute(f"CREATE VIEW {name} AS {body}")


def upgrade() -> None:
    op.create_table(
        "t_site_pair_day",
        sa.Column("day", UtcDate(), nullable=False),
        sa.Column("source", Text(3), nullable=False),
        sa.Column("src_site", Text(256), nullable=False),
        sa.Column("dst_site", Text(256), nullable=False),
        sa.Column("vo", Text(64), nullable=False),
        *(
            sa.Column(c, Number(), server_default=sa.text("0"), nullable=False)
            for c in ("read_bytes", "write_bytes", "active_seconds")
        ),
        sa.Column("transfers_ended", Count(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "source", "src_site", "dst_site", "vo", name=op.f("pk_t_site_pair_day")
        ),
    )
    # The days already aggregated: the daily job only rolls up days changed from now on.
    keys = [day_start(_avg.c.bin_start), _avg.c.source, _avg.c.src_site, _avg.c.dst_site, _avg.c.vo]
    sums = [sa.func.sum(_avg.c[c]) for c in (*_SUMS, "transfers_ended")]
    op.execute(
        _pair.insert().from_select(
            [c.name for c in _pair.c], sa.select(*keys, *sums).group_by(*keys)
        )
    )
    op.create_table(
        "t_unresolved_day",
        sa.Column("day", UtcDate(), nullable=False),
        sa.Column("source", Text(3), nullable=False),
        sa.Column("side", Text(6), nullable=False),
        sa.Column("domain", Text(255), nullable=False),
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("transfers_ended", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "source", "side", "domain", "vo", name=op.f("pk_t_unresolved_day")
        ),
    )
    for side, site, domain in (
        ("server", "src_site", "src_domain"),
        ("client", "dst_site", "dst_domain"),
    ):
        keys = [
            day_start(_avg.c.bin_start),
            _avg.c.source,
            sa.literal(side),
            _avg.c[domain],
            _avg.c.vo,
        ]
        sums = [sa.func.sum(_avg.c[c]) for c in ("transfers_ended", "read_bytes", "write_bytes")]
        op.execute(
            _unresolved.insert().from_select(
                [c.name for c in _unresolved.c],
                sa.select(*keys, *sums).where(_avg.c[site] == UNKNOWN).group_by(*keys),
            )
        )
    for name, query in _views().items():
        _create_view(name, query)


def downgrade() -> None:
    for name in reversed(list(_views())):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("t_unresolved_day")
    op.drop_table("t_site_pair_day")
