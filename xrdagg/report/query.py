"""One read-only query per report kind, over the statistics tables, as a pandas DataFrame.

Every kind takes the same `Filters`. A range of whole UTC days reads the daily tables
(T_SITE_PAIR_DAY, T_STATS_ACCESS_PATTERN_A, MV_SITE_STATS); any other range reads the 10-minute
tables. Both give the same sums, because the daily rows are rolled up from the 10-minute rows
(as fresh as the daily job's last run). Aggregation runs in the database; pandas only renames
and ranks the grouped rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    CompoundSelect,
    Connection,
    Select,
    Table,
    and_,
    case,
    desc,
    func,
    or_,
    select,
)

from xrdagg.db.tables import (
    mv_site_stats,
    t_host_site,
    t_site_pair_day,
    t_site_vo_name,
    t_stats_access_pattern,
    t_stats_access_pattern_a,
    t_stats_avg,
    t_unresolved_day,
    t_user_activity,
)
from xrdagg.errors import XrdaggError
from xrdagg.rules import BIN_SECONDS, UNKNOWN

DAY = timedelta(days=1)
FRACTIONS = ("n_frac_lt10", "n_frac_10_50", "n_frac_50_100", "n_frac_ge100", "n_frac_unknown")
# Throughput of a whole-day range longer than this is shown per day, from the daily table.
DAILY_STEP_FROM = timedelta(days=2)


class ReportError(XrdaggError):
    """A report's options do not fit together; the message names the option."""


@dataclass(frozen=True)
class Filters:
    """What a report covers: bins or days in [start, end) (naive UTC), and optional filters."""

    start: datetime
    end: datetime
    site: str | None = None  # either side
    src_site: str | None = None
    dst_site: str | None = None
    vo: str | None = None  # lower case, as stored
    source: str | None = None  # 'FED' or 'EOS'
    names: str = "gocdb"  # or 'vo': each site by its VO's name for it (T_SITE_VO_NAME)
    top: int | None = None

    @property
    def whole_days(self) -> bool:
        """True when the range is whole UTC days: the daily tables answer it."""
        return all(t == datetime(t.year, t.month, t.day) for t in (self.start, self.end))

    def with_defaults(self, top: int) -> Filters:
        return self if self.top is not None else replace(self, top=top)


def _range(column: Any, f: Filters) -> Any:
    return and_(column >= f.start, column < f.end)


def _site_filters(table: Any, f: Filters) -> list[Any]:
    conditions = []
    if f.site is not None:
        conditions.append(or_(table.c.src_site == f.site, table.c.dst_site == f.site))
    if f.src_site is not None:
        conditions.append(table.c.src_site == f.src_site)
    if f.dst_site is not None:
        conditions.append(table.c.dst_site == f.dst_site)
    if f.vo is not None:
        conditions.append(table.c.vo == f.vo)
    return conditions


def _fed_only(kind: str, f: Filters) -> None:
    if f.source == "EOS":
        raise ReportError(f"--source eos: {kind} is kept for FED only (SPEC §5)")


def _read(conn: Connection, statement: Select | CompoundSelect) -> pd.DataFrame:
    return pd.read_sql(statement, conn)


def vo_names(conn: Connection) -> dict[tuple[str, str], str]:
    """(vo, GOCDB site) -> the VO's name for the site (the smallest, when a feed gives two)."""
    n = t_site_vo_name
    rows = conn.execute(
        select(n.c.vo, n.c.site, func.min(n.c.vo_site)).group_by(n.c.vo, n.c.site)
    ).all()
    return {(vo, site): name for vo, site, name in rows}


def _rename_sites(
    conn: Connection, frame: pd.DataFrame, columns: list[str], vo: pd.Series | str
) -> None:
    """Replace the GOCDB names in `columns` by the VO's names (kept when the VO has none)."""
    names = vo_names(conn)
    vos = [vo] * len(frame) if isinstance(vo, str) else list(vo)
    for column in columns:
        frame[column] = [names.get((v, s), s) for v, s in zip(vos, frame[column], strict=True)]


def _regroup(frame: pd.DataFrame, keys: list[str], order: str) -> pd.DataFrame:
    """Sum `frame` over `keys` (after renaming, two rows may name one pair) and sort by `order`
    descending, then by the keys."""
    if frame.empty:
        return frame.drop(columns=[c for c in ("vo",) if c not in keys and c in frame])
    sums = [c for c in frame.columns if c not in keys and c != "vo"]
    grouped = frame.groupby(keys, as_index=False, sort=False)[sums].sum()
    ascending = [False] + [True] * len(keys)
    return grouped.sort_values([order, *keys], ascending=ascending, kind="stable").reset_index(
        drop=True
    )


def _top(frame: pd.DataFrame, top: int | None) -> pd.DataFrame:
    return frame if top is None else frame.head(top).reset_index(drop=True)


# --- matrix --------------------------------------------------------------------------------------


def _pairs_table(f: Filters) -> tuple[Table, Any]:
    """T_SITE_PAIR_DAY for whole days, else T_STATS_AVG: the same columns, the same sums."""
    if f.whole_days:
        return t_site_pair_day, t_site_pair_day.c.day
    return t_stats_avg, t_stats_avg.c.bin_start


def matrix(conn: Connection, f: Filters) -> pd.DataFrame:
    """Site x site: read_bytes and write_bytes (sums of T_STATS_AVG over the range's bins) and
    transfers (the sum of TRANSFERS_ENDED), one row per (src_site, dst_site), by read volume."""
    table, time = _pairs_table(f)
    keys = [table.c.src_site, table.c.dst_site]
    if f.names == "vo":
        keys.append(table.c.vo)
    statement = (
        select(
            *keys,
            func.sum(table.c.read_bytes).label("read_bytes"),
            func.sum(table.c.write_bytes).label("write_bytes"),
            func.sum(table.c.transfers_ended).label("transfers"),
        )
        .where(_range(time, f), *_site_filters(table, f))
        .group_by(*keys)
    )
    if f.source is not None:
        statement = statement.where(table.c.source == f.source)
    frame = _read(conn, statement)
    if f.names == "vo":
        _rename_sites(conn, frame, ["src_site", "dst_site"], frame["vo"])
    frame = _regroup(frame, ["src_site", "dst_site"], "read_bytes")
    frame["transfers"] = frame["transfers"].astype("int64")
    return _top(frame, f.top)


# --- throughput ----------------------------------------------------------------------------------


def throughput_step(f: Filters) -> int:
    """Seconds per point: a day for whole-day ranges longer than two days, else a bin."""
    if f.whole_days and f.end - f.start > DAILY_STEP_FROM:
        return int(DAY.total_seconds())
    return BIN_SECONDS


def throughput(conn: Connection, f: Filters) -> pd.DataFrame:
    """Bytes per second over time, per site pair: one row per (time, src_site, dst_site), the
    `top` pairs by read volume and the rest summed as ('other', 'other')."""
    f = f.with_defaults(top=8)
    step = throughput_step(f)
    table, time = (
        (t_site_pair_day, t_site_pair_day.c.day)
        if step > BIN_SECONDS
        else (
            t_stats_avg,
            t_stats_avg.c.bin_start,
        )
    )
    keys = [time.label("time"), table.c.src_site, table.c.dst_site, table.c.vo]
    statement = (
        select(
            *keys,
            func.sum(table.c.read_bytes).label("read_bytes"),
            func.sum(table.c.write_bytes).label("write_bytes"),
        )
        .where(_range(time, f), *_site_filters(table, f))
        .group_by(*keys)
    )
    if f.source is not None:
        statement = statement.where(table.c.source == f.source)
    frame = _read(conn, statement)
    if f.names == "vo":
        _rename_sites(conn, frame, ["src_site", "dst_site"], frame["vo"])
    frame = frame.drop(columns="vo")
    if not frame.empty and f.top is not None:
        volume = frame.groupby(["src_site", "dst_site"])["read_bytes"].sum()
        ranked = volume.sort_values(ascending=False, kind="stable").index[: f.top]
        keep = pd.MultiIndex.from_frame(frame[["src_site", "dst_site"]]).isin(ranked)
        frame.loc[~keep, ["src_site", "dst_site"]] = "other"
    frame = frame.groupby(["time", "src_site", "dst_site"], as_index=False)[
        ["read_bytes", "write_bytes"]
    ].sum()
    frame["time"] = pd.to_datetime(frame["time"])
    frame["read_rate"] = frame["read_bytes"] / step
    frame["write_rate"] = frame["write_bytes"] / step
    return frame.sort_values(["time", "src_site", "dst_site"], kind="stable").reset_index(drop=True)


# --- users ---------------------------------------------------------------------------------------


def users(conn: Connection, f: Filters) -> pd.DataFrame:
    """Top users of T_USER_ACTIVITY (FED): accesses, read and write bytes, by read volume."""
    _fed_only("user activity", f)
    f = f.with_defaults(top=20)
    ua = t_user_activity
    statement = (
        select(
            ua.c.user_dn,
            ua.c.vo,
            func.sum(ua.c.accesses).label("accesses"),
            func.sum(ua.c.read_bytes).label("read_bytes"),
            func.sum(ua.c.write_bytes).label("write_bytes"),
        )
        .where(_range(ua.c.bin_start, f), *_site_filters(ua, f))
        .group_by(ua.c.user_dn, ua.c.vo)
        .order_by(desc("read_bytes"), ua.c.user_dn, ua.c.vo)
        .limit(f.top)
    )
    frame = _read(conn, statement)
    frame["accesses"] = frame["accesses"].astype("int64")
    return frame


# --- sites ---------------------------------------------------------------------------------------


def sites(conn: Connection, f: Filters) -> pd.DataFrame:
    """MV_SITE_STATS per site and day: reads (local, remote), writes, transfers, users."""
    if f.src_site is not None or f.dst_site is not None:
        raise ReportError("--src-site/--dst-site: site statistics are per site; use --site")
    if f.vo is not None and f.names != "vo":
        raise ReportError(
            "--vo: site statistics are not kept per VO; with --names vo, --vo chooses the names"
        )
    if f.names == "vo" and f.vo is None:
        raise ReportError("--names vo needs --vo for site statistics (they are not per VO)")
    s = mv_site_stats
    first_day = datetime(f.start.year, f.start.month, f.start.day)
    statement = select(s).where(s.c.day >= first_day, s.c.day < f.end)
    if f.site is not None:
        statement = statement.where(s.c.site == f.site)
    if f.source is not None:
        statement = statement.where(s.c.source == f.source)
    if f.top is not None:
        volume = (
            select(s.c.site)
            .where(s.c.day >= first_day, s.c.day < f.end)
            .group_by(s.c.site)
            .order_by(desc(func.sum(s.c.read_bytes)), s.c.site)
            .limit(f.top)
        )
        statement = statement.where(s.c.site.in_(list(conn.execute(volume).scalars())))
    frame = _read(conn, statement.order_by(s.c.day, s.c.site, s.c.role, s.c.source))
    if f.names == "vo" and f.vo is not None:
        _rename_sites(conn, frame, ["site"], f.vo)
    frame["day"] = pd.to_datetime(frame["day"])
    frame["users"] = frame["users"].astype("Int64")
    return frame


# --- access pattern ------------------------------------------------------------------------------


def access(conn: Connection, f: Filters) -> pd.DataFrame:
    """Per site pair: accesses by fraction of the file read (T_STATS_ACCESS_PATTERN[_A]), as
    counts and as shares of the pair's accesses, by accesses."""
    _fed_only("the access pattern", f)
    table = t_stats_access_pattern_a if f.whole_days else t_stats_access_pattern
    time = table.c.day if f.whole_days else table.c.bin_start
    keys = [table.c.src_site, table.c.dst_site, table.c.vo]
    statement = (
        select(
            *keys,
            func.sum(table.c.accesses).label("accesses"),
            *(func.sum(table.c[n]).label(n) for n in FRACTIONS),
        )
        .where(_range(time, f), *_site_filters(table, f))
        .group_by(*keys)
    )
    frame = _read(conn, statement)
    if f.names == "vo":
        _rename_sites(conn, frame, ["src_site", "dst_site"], frame["vo"])
    frame = _regroup(frame, ["src_site", "dst_site"], "accesses")
    for column in ("accesses", *FRACTIONS):
        frame[column] = frame[column].astype("int64")
    for column in FRACTIONS:
        share = column.replace("n_frac", "share")
        frame[share] = (frame[column] / frame["accesses"].where(frame["accesses"] > 0)).fillna(0.0)
    return _top(frame, f.top)


# --- unresolved ----------------------------------------------------------------------------------


def unresolved(conn: Connection, f: Filters) -> pd.DataFrame:
    """Domains whose side resolves to no site: side, domain, example hosts, rows (transfers
    ended), bytes (read + write) and their share of the range's volume, by bytes.

    Whole days without a site filter read T_UNRESOLVED_DAY (and the total T_SITE_PAIR_DAY);
    otherwise one pass over the range's 10-minute rows gives both sides and the total."""
    f = f.with_defaults(top=30)
    sited = any(s is not None for s in (f.site, f.src_site, f.dst_site))
    frame, total = (
        _unresolved_10min(conn, f) if sited or not f.whole_days else _unresolved_daily(conn, f)
    )
    frame["rows"] = frame["rows"].astype("int64")
    frame["share"] = frame["bytes"] / total if total else 0.0
    frame = frame.sort_values(
        ["bytes", "side", "domain"], ascending=[False, True, True], kind="stable"
    )
    frame = _top(frame.reset_index(drop=True), f.top)
    hosts = _example_hosts(conn, list(frame["domain"]))
    frame.insert(2, "example_hosts", [", ".join(hosts.get(d, [])) for d in frame["domain"]])
    return frame


def _unresolved_daily(conn: Connection, f: Filters) -> tuple[pd.DataFrame, float]:
    daily, pairs = t_unresolved_day, t_site_pair_day
    where = [_range(daily.c.day, f)]
    totals = [_range(pairs.c.day, f)]
    for table, conditions in ((daily, where), (pairs, totals)):
        if f.source is not None:
            conditions.append(table.c.source == f.source)
        if f.vo is not None:
            conditions.append(table.c.vo == f.vo)
    statement = (
        select(
            daily.c.side,
            daily.c.domain,
            func.sum(daily.c.transfers_ended).label("rows"),
            func.sum(daily.c.read_bytes + daily.c.write_bytes).label("bytes"),
        )
        .where(*where)
        .group_by(daily.c.side, daily.c.domain)
    )
    total = conn.execute(
        select(func.sum(pairs.c.read_bytes + pairs.c.write_bytes)).where(*totals)
    ).scalar_one()
    return _read(conn, statement), float(total or 0.0)


def _unresolved_10min(conn: Connection, f: Filters) -> tuple[pd.DataFrame, float]:
    avg = t_stats_avg
    where = [_range(avg.c.bin_start, f), *_site_filters(avg, f)]
    if f.source is not None:
        where.append(avg.c.source == f.source)
    # One scan: each row's unresolved domain per side (NULL when resolved), summed; the rows
    # with both sides resolved make one group that only counts toward the total.
    server = case((avg.c.src_site == UNKNOWN, avg.c.src_domain)).label("server")
    client = case((avg.c.dst_site == UNKNOWN, avg.c.dst_domain)).label("client")
    grouped = _read(
        conn,
        select(
            server,
            client,
            func.sum(avg.c.transfers_ended).label("rows"),
            func.sum(avg.c.read_bytes + avg.c.write_bytes).label("bytes"),
        )
        .where(*where)
        .group_by(server, client),
    )
    parts = [
        grouped[grouped[side].notna()]
        .groupby(side, as_index=False)[["rows", "bytes"]]
        .sum()
        .rename(columns={side: "domain"})
        .assign(side=side)
        for side in ("server", "client")
    ]
    frame = pd.concat(parts, ignore_index=True)[["side", "domain", "rows", "bytes"]]
    return frame, float(grouped["bytes"].sum())


def _example_hosts(conn: Connection, domains: list[str]) -> dict[str, list[str]]:
    """Two unresolved FQDNs of each domain (the first and the last by name), from the resolution
    cache; aggregated in the database, since a domain may have thousands of hosts."""
    if not domains:
        return {}
    cache = t_host_site
    rows = conn.execute(
        select(cache.c.domain_name, func.min(cache.c.fqdn), func.max(cache.c.fqdn))
        .where(cache.c.site == UNKNOWN, cache.c.domain_name.in_(domains))
        .group_by(cache.c.domain_name)
    ).all()
    return {domain: sorted({low, high}) for domain, low, high in rows}


QUERIES = {
    "matrix": matrix,
    "throughput": throughput,
    "users": users,
    "sites": sites,
    "access": access,
    "unresolved": unresolved,
}
