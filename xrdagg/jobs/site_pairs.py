"""T_SITE_PAIR_DAY and T_UNRESOLVED_DAY: daily roll-ups of T_STATS_AVG for the reports and
dashboards (and for MV_SITE_STATS, whose volumes are summed from T_SITE_PAIR_DAY), made by the
daily job.

Month and year matrices (`xrdagg report matrix`, the dashboards) read T_SITE_PAIR_DAY instead
of scanning 10-minute rows: a day holds 144 bins and every (domain, domain) pair, so the daily
site-pair rows are typically fifty times fewer. T_UNRESOLVED_DAY does the same for the
unresolved report: the volume of each domain whose side has site 'unknown'. Like the other daily
tables, a day is replaced whole: delete, then insert from the day's 10-minute rows (a topology
apply replaces only its changed keys' rows: `xrdagg.jobs.rollup_keys`).
"""

from __future__ import annotations

from sqlalchemy import Delete, Insert, and_, bindparam, delete, func, literal, select, union_all

from xrdagg.db.dialect import day_start
from xrdagg.db.tables import t_site_pair_day, t_stats_avg, t_unresolved_day
from xrdagg.db.types import UtcDate
from xrdagg.jobs.rollup_keys import KeyFilter, of_either_site, of_unresolved
from xrdagg.rules import UNKNOWN

# The same parameter names as the daily job's other statements: one set of values runs them all.
DAY_LO = bindparam("day_lo", type_=UtcDate())
DAY_HI = bindparam("day_hi", type_=UtcDate())

PAIR_KEYS = ("source", "src_site", "dst_site", "vo")
PAIR_SUMS = ("read_bytes", "write_bytes", "active_seconds", "transfers_ended")


def site_pair_statements(only: KeyFilter | None = None) -> tuple[Delete, Insert]:
    """Delete the daily site-pair rows of [day_lo, day_hi) (of the sites `only` keeps), then
    insert them from T_STATS_AVG."""
    avg = t_stats_avg
    in_range = and_(
        avg.c.bin_start >= DAY_LO,
        avg.c.bin_start < DAY_HI,
        of_either_site(only, avg.c.src_site, avg.c.dst_site),
    )
    with_day = (
        select(day_start(avg.c.bin_start).label("day"), *(avg.c[c] for c in PAIR_KEYS + PAIR_SUMS))
        .where(in_range)
        .subquery("with_day")
    )
    keys = [with_day.c.day, *(with_day.c[k] for k in PAIR_KEYS)]
    rows = select(*keys, *(func.sum(with_day.c[m]).label(m) for m in PAIR_SUMS)).group_by(*keys)
    target = t_site_pair_day
    clear = delete(target).where(
        target.c.day >= DAY_LO,
        target.c.day < DAY_HI,
        of_either_site(only, target.c.src_site, target.c.dst_site),
    )
    return clear, target.insert().from_select(["day", *PAIR_KEYS, *PAIR_SUMS], rows)


def unresolved_statements(only: KeyFilter | None = None) -> tuple[Delete, Insert]:
    """Delete the daily unresolved-domain rows of [day_lo, day_hi) (of the domains `only`
    keeps), then insert them from the T_STATS_AVG rows of those days whose server or client side
    has site 'unknown'."""
    avg = t_stats_avg
    in_range = and_(avg.c.bin_start >= DAY_LO, avg.c.bin_start < DAY_HI)
    sides = union_all(
        *(
            select(
                day_start(avg.c.bin_start).label("day"),
                avg.c.source,
                literal(side).label("side"),
                domain.label("domain"),
                avg.c.vo,
                avg.c.transfers_ended,
                avg.c.read_bytes,
                avg.c.write_bytes,
            ).where(in_range, site == UNKNOWN, of_unresolved(only, domain, site))
            for side, site, domain in (
                ("server", avg.c.src_site, avg.c.src_domain),
                ("client", avg.c.dst_site, avg.c.dst_domain),
            )
        )
    ).subquery("sides")
    keys = [sides.c.day, sides.c.source, sides.c.side, sides.c.domain, sides.c.vo]
    sums = ("transfers_ended", "read_bytes", "write_bytes")
    rows = select(*keys, *(func.sum(sides.c[m]).label(m) for m in sums)).group_by(*keys)
    target = t_unresolved_day
    clear = delete(target).where(
        target.c.day >= DAY_LO,
        target.c.day < DAY_HI,
        of_unresolved(only, target.c.domain, literal(UNKNOWN)),
    )
    columns = ["day", "source", "side", "domain", "vo", *sums]
    return clear, target.insert().from_select(columns, rows)


def statements(only: KeyFilter | None = None) -> list[Delete | Insert]:
    """Every statement of this module, in order, for the daily job (or for the rows `only`
    keeps)."""
    return [*site_pair_statements(only), *unresolved_statements(only)]
