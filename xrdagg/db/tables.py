"""Every table xrdagg reads or writes, declared once with SQLAlchemy Core.

Names are lower case so that Oracle renders them unquoted (stored upper case, as SPEC names
them) and PostgreSQL keeps them unquoted too. All names are at most 30 characters and none is an
Oracle reserved word; `xrdagg.db.oracle_lint` checks both. Every key column is NOT NULL: Oracle
stores '' as NULL and NULL never matches in a join or MERGE, so a missing value is the literal
'unknown' (see `UNKNOWN`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    text,
)
from sqlalchemy.types import TypeEngine

from xrdagg.db.comments import COLUMN_COMMENTS, TABLE_COMMENTS
from xrdagg.db.types import Count, Number, RawNumber, RawText, Text, UtcDate
from xrdagg.rules import DOMAIN_LEN, NAME_LEN, SITE_LEN, UNKNOWN, USER_LEN, VO_LEN

# Placeholder schema of the collectors' raw tables. Engines translate it to the configured
# XRDAGG_RAW_SCHEMA (or to the default schema) through `schema_translate_map`.
RAW_SCHEMA = "xrdagg_raw"

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Key lengths (xrdagg.rules): every statistics key must fit one Oracle index entry.

# --- raw tables (SPEC §1), read-only for xrdagg -------------------------------------------------

_STATS = ["average", "min", "max", "sigma"]


def _text(length: int) -> Callable[[], TypeEngine[Any]]:
    return lambda: RawText(length)


# Every column of SPEC §1, in its order, with its type.
_RAW_TYPES: dict[str, Callable[[], TypeEngine[Any]]] = {
    "unique_id": _text(NAME_LEN),
    "file_lfn": _text(NAME_LEN),
    "file_size": RawNumber,
    **dict.fromkeys(
        ["client_domain", "client_host", "server_domain", "server_host"], _text(NAME_LEN)
    ),
    **dict.fromkeys(
        [
            "read_bytes_at_close", "read_bytes", "read_operations", *[f"read_{s}" for s in _STATS],
            *[f"read_single_{s}" for s in ["bytes", "operations", *_STATS]],
            *[f"read_vector_{s}" for s in ["bytes", "operations", *_STATS]],
            *[f"read_vector_count_{s}" for s in _STATS],
            "write_bytes_at_close", "write_bytes", "write_operations",
            "write_min", "write_max", "write_average", "write_sigma",
        ],
        RawNumber,
    ),
    **dict.fromkeys(
        ["server_username", "user_dn", "user_fqan", "user_role", "user_vo"], _text(NAME_LEN)
    ),
    "app_info": _text(2048),
    "start_time": RawNumber,
    "end_time": RawNumber,
    "start_date": UtcDate,
    "end_date": UtcDate,
    "insert_date": UtcDate,
    "server_site": _text(256),
    "queue_flag": _text(8),
    "user_protocol": _text(64),
}  # fmt: skip
_RAW_NOT_NULL = {"unique_id", "end_date"}

# Column order of SPEC §1, used by loaders and fixtures.
RAW_COLUMNS: tuple[str, ...] = tuple(_RAW_TYPES)


def _raw_table(name: str, short: str) -> Table:
    return Table(
        name,
        metadata,
        *(Column(c, kind(), nullable=c not in _RAW_NOT_NULL) for c, kind in _RAW_TYPES.items()),
        Index(f"ix_{short}_insert_date", "insert_date"),
        # (END_DATE, START_DATE) since revision 0011: a recompute chunk's 7-day reach.
        Index(f"ix_{short}_end_start", "end_date", "start_date"),
        # Created by xrdagg only on raw tables it owns (revision 0008): `raw load` skips
        # records already loaded.
        Index(f"ix_{short}_unique_id", "unique_id"),
        schema=RAW_SCHEMA,
    )


t_raw_fed = _raw_table("t_raw_fed", "raw_fed")
t_raw_eos = _raw_table("t_raw_eos", "raw_eos")
RAW_TABLES = {"fed": t_raw_fed, "eos": t_raw_eos}

# --- statistics tables (SPEC §5) -----------------------------------------------------------------


def _key(name: str, length: int) -> Column:
    return Column(name, Text(length), nullable=False)


def _sum(name: str) -> Column:
    return Column(name, Number(), nullable=False, server_default=text("0"))


def _count(name: str) -> Column:
    return Column(name, Count(), nullable=False, server_default=text("0"))


t_stats_avg = Table(
    "t_stats_avg",
    metadata,
    Column("bin_start", UtcDate(), nullable=False),
    _key("source", 3),
    _key("src_site", SITE_LEN),
    _key("src_domain", DOMAIN_LEN),
    _key("dst_site", SITE_LEN),
    _key("dst_domain", DOMAIN_LEN),
    _key("vo", VO_LEN),
    _sum("read_bytes"),
    _sum("write_bytes"),
    _sum("active_seconds"),
    _count("transfers_active"),
    _count("transfers_ended"),
    PrimaryKeyConstraint(
        "bin_start", "source", "src_site", "src_domain", "dst_site", "dst_domain", "vo"
    ),
)

t_user_activity = Table(
    "t_user_activity",
    metadata,
    Column("bin_start", UtcDate(), nullable=False),
    _key("user_dn", USER_LEN),
    _key("vo", VO_LEN),
    _key("src_site", SITE_LEN),
    _key("dst_site", SITE_LEN),
    _count("accesses"),
    _sum("read_bytes"),
    _sum("write_bytes"),
    PrimaryKeyConstraint("bin_start", "user_dn", "vo", "src_site", "dst_site"),
)


def _access_pattern_measures() -> list[Column]:
    return [
        _count("accesses"),
        _sum("file_size"),
        _sum("read_bytes"),
        _sum("read_single_bytes"),
        _sum("read_single_ops"),
        _sum("read_vector_bytes"),
        _sum("read_vector_ops"),
        _sum("write_bytes"),
        _sum("write_ops"),
        Column("read_min", Number()),
        Column("read_max", Number()),
        _count("n_frac_lt10"),
        _count("n_frac_10_50"),
        _count("n_frac_50_100"),
        _count("n_frac_ge100"),
        _count("n_frac_unknown"),
    ]


t_stats_access_pattern = Table(
    "t_stats_access_pattern",
    metadata,
    Column("bin_start", UtcDate(), nullable=False),
    _key("src_site", SITE_LEN),
    _key("dst_site", SITE_LEN),
    _key("vo", VO_LEN),
    *_access_pattern_measures(),
    PrimaryKeyConstraint("bin_start", "src_site", "dst_site", "vo"),
)

t_stats_access_pattern_a = Table(
    "t_stats_access_pattern_a",
    metadata,
    Column("day", UtcDate(), nullable=False),
    _key("src_site", SITE_LEN),
    _key("dst_site", SITE_LEN),
    _key("vo", VO_LEN),
    *_access_pattern_measures(),
    PrimaryKeyConstraint("day", "src_site", "dst_site", "vo"),
)

t_msg_rate = Table(
    "t_msg_rate",
    metadata,
    Column("bin_start", UtcDate(), nullable=False),
    _key("source", 3),
    _key("domain", DOMAIN_LEN),
    _count("messages"),
    _sum("delay_seconds"),
    _sum("max_delay_seconds"),
    PrimaryKeyConstraint("bin_start", "source", "domain"),
)

t_site = Table(
    "t_site",
    metadata,
    _key("site", SITE_LEN),
    Column("country", Text(128), nullable=False, server_default=UNKNOWN),
    Column("is_server", Text(1), nullable=False, server_default="N"),
    Column("is_client", Text(1), nullable=False, server_default="N"),
    Column("first_seen", UtcDate()),
    Column("last_seen", UtcDate()),
    PrimaryKeyConstraint("site"),
    CheckConstraint("is_server IN ('Y', 'N')", name="srv"),
    CheckConstraint("is_client IN ('Y', 'N')", name="cli"),
)

mv_site_stats = Table(
    "mv_site_stats",
    metadata,
    Column("day", UtcDate(), nullable=False),
    _key("site", SITE_LEN),
    _key("role", 6),
    _key("source", 3),
    _sum("read_bytes"),
    _sum("write_bytes"),
    _count("transfers"),
    _sum("local_read_bytes"),
    _sum("remote_read_bytes"),
    Column("users", Count()),  # NULL for EOS: no user activity is kept for it
    PrimaryKeyConstraint("day", "site", "role", "source"),
)

# Daily site-pair volumes, rolled up from T_STATS_AVG by the daily job (xrdagg.jobs.site_pairs),
# so that month and year matrices never scan 10-minute rows. Domains are dropped: a matrix is
# between sites.
t_site_pair_day = Table(
    "t_site_pair_day",
    metadata,
    Column("day", UtcDate(), nullable=False),
    _key("source", 3),
    _key("src_site", SITE_LEN),
    _key("dst_site", SITE_LEN),
    _key("vo", VO_LEN),
    _sum("read_bytes"),
    _sum("write_bytes"),
    _sum("active_seconds"),
    _count("transfers_ended"),
    PrimaryKeyConstraint("day", "source", "src_site", "dst_site", "vo"),
)

# Daily volume of each unresolved domain (site 'unknown'), per side, rolled up with
# T_SITE_PAIR_DAY, so that the unresolved report of a month never scans 10-minute rows.
t_unresolved_day = Table(
    "t_unresolved_day",
    metadata,
    Column("day", UtcDate(), nullable=False),
    _key("source", 3),
    _key("side", 6),  # 'server' (SRC) or 'client' (DST)
    _key("domain", DOMAIN_LEN),
    _key("vo", VO_LEN),
    _count("transfers_ended"),
    _sum("read_bytes"),
    _sum("write_bytes"),
    PrimaryKeyConstraint("day", "source", "side", "domain", "vo"),
)

# --- topology (SPEC §3) ---------------------------------------------------------------------------

t_topology = Table(
    "t_topology",
    metadata,
    Column("rule_id", Integer, nullable=False),
    Column("pattern", Text(NAME_LEN), nullable=False),
    _key("site", SITE_LEN),
    PrimaryKeyConstraint("rule_id"),
)

t_domain_site = Table(
    "t_domain_site",
    metadata,
    _key("from_value", DOMAIN_LEN),
    _key("site", SITE_LEN),
    PrimaryKeyConstraint("from_value"),
)

t_site_country = Table(
    "t_site_country",
    metadata,
    _key("site", SITE_LEN),
    Column("country", Text(128), nullable=False),
    PrimaryKeyConstraint("site"),
)

# Per VO, the name a VO gives a site (T1_FR_CCIN2P3 for IN2P3-CC in CMS). This is T_SITE's child
# table of VO site names, and the source of the alias map of SPEC §3 rule 1.
t_site_vo_name = Table(
    "t_site_vo_name",
    metadata,
    _key("vo", VO_LEN),
    _key("site", SITE_LEN),
    _key("vo_site", SITE_LEN),
    PrimaryKeyConstraint("vo", "site", "vo_site"),
)

# VO site name (upper case) -> GOCDB site; one site per alias (the smallest when a feed is
# ambiguous). Derived from t_site_vo_name on every topology load.
t_site_alias = Table(
    "t_site_alias",
    metadata,
    _key("alias", SITE_LEN),
    _key("site", SITE_LEN),
    PrimaryKeyConstraint("alias"),
)

t_topology_load = Table(
    "t_topology_load",
    metadata,
    Column("load_id", Integer, Identity(), nullable=False),
    Column("loaded_at", UtcDate(), nullable=False),
    Column("source_dir", Text(1000), nullable=False),
    Column("checksum", Text(64), nullable=False),
    Column("n_patterns", Integer, nullable=False),
    Column("n_domains", Integer, nullable=False),
    PrimaryKeyConstraint("load_id"),
)

# Resolution cache: one row per distinct raw (host, domain) pair. The key is the raw value with
# NULL spelled as NULL_KEY, so that the aggregation can join raw rows to it with an equality.
t_host_site = Table(
    "t_host_site",
    metadata,
    _key("host_key", NAME_LEN),
    _key("domain_key", NAME_LEN),
    Column("fqdn", Text(2048), nullable=False),
    _key("domain_name", DOMAIN_LEN),
    _key("site", SITE_LEN),
    Column("rule_kind", Text(16), nullable=False),
    Column("rule_ref", Text(NAME_LEN)),
    Column("resolved_at", UtcDate(), nullable=False),
    PrimaryKeyConstraint("host_key", "domain_key"),
    Index("ix_host_site_site", "site"),
    # SQLite only: every staged raw row probes the cache twice for (domain_name, site); holding
    # them in the index answers each probe from it alone, where SQLite's primary key (an index
    # beside a rowid table) went on to the table row. PostgreSQL hash-joins the cache (but for a
    # window of few rows: `dialect.joining_by_index_lookups`) and MariaDB clusters it on its key:
    # there it only made each new pair dearer to write (revision 0012).
    Index("ix_host_site_resolution", "host_key", "domain_key", "domain_name", "site").ddl_if(
        dialect="sqlite"
    ),
)

# Work table of `xrdagg topology apply` (filled and emptied in its transaction): the (domain,
# site) pairs a topology change makes hosts leave or join. ANY_DOMAIN stands for every domain
# (a site named through the SERVER_SITE alias map).
t_topology_delta = Table(
    "t_topology_delta",
    metadata,
    _key("domain_name", DOMAIN_LEN),
    _key("site", SITE_LEN),
    PrimaryKeyConstraint("domain_name", "site"),
)

# --- jobs -----------------------------------------------------------------------------------------

t_agent = Table(
    "t_agent",
    metadata,
    _key("job_name", 64),
    Column("watermark", UtcDate()),
    Column("last_run_id", Count()),
    Column("updated_at", UtcDate()),
    PrimaryKeyConstraint("job_name"),
)

# Pauses: while a rebuild (recompute, topology apply) holds a job, its runs skip, so that the
# watermark the rebuild read stays put (xrdagg.jobs.agent: the pause protocol). One row per job
# and holding process; several owners may pause one job, each removes only its own rows. A row
# whose heartbeat is older than its lease belongs to a dead process and is cleared.
t_job_pause = Table(
    "t_job_pause",
    metadata,
    _key("job_name", 64),
    _key("owner", 128),  # the rebuild: 'recompute 12', 'topology apply'
    _key("host_name", 256),
    Column("process_id", Integer, nullable=False, autoincrement=False),
    Column("reason", Text(256)),
    # The days the rebuild rewrites (NULL: all): rebuilds with overlapping days exclude each other.
    Column("day_from", UtcDate()),
    Column("day_to", UtcDate()),
    Column("paused_since", UtcDate(), nullable=False),
    Column("heartbeat_at", UtcDate(), nullable=False),
    Column("lease_seconds", Integer, nullable=False),
    PrimaryKeyConstraint("job_name", "owner", "host_name", "process_id"),
)

t_job_run = Table(
    "t_job_run",
    metadata,
    # SQLite assigns ids only to INTEGER PRIMARY KEY, not BIGINT.
    Column("run_id", Count().with_variant(Integer, "sqlite"), Identity(), nullable=False),
    _key("job_name", 64),
    Column("run_kind", Text(16), nullable=False),
    Column("host_name", Text(256), nullable=False),
    Column("process_id", Integer, nullable=False),
    Column("started_at", UtcDate(), nullable=False),
    Column("finished_at", UtcDate()),
    Column("window_lo", UtcDate()),
    Column("window_hi", UtcDate()),
    Column("rows_read", Count()),
    Column("rows_bad_insert", Count()),
    Column("rows_bad_clock", Count()),
    # Rows holding a NaN, an infinite or an out-of-range number (counted as 0), per reason.
    Column("rows_bad_nan", Count()),
    Column("rows_bad_infinite", Count()),
    Column("rows_bad_range", Count()),
    Column("rows_written", Count()),
    Column("duration_s", Number()),
    Column("outcome", Text(16), nullable=False),
    Column("message", Text(2000)),
    PrimaryKeyConstraint("run_id"),
    Index("ix_job_run_job", "job_name", "run_id"),
)

# Recompute ledger: one row per `xrdagg recompute`, one per chunk, so that --resume continues.
t_recompute = Table(
    "t_recompute",
    metadata,
    Column("recompute_id", Count().with_variant(Integer, "sqlite"), Identity(), nullable=False),
    Column("created_at", UtcDate(), nullable=False),
    Column("host_name", Text(256), nullable=False),
    Column("day_from", UtcDate(), nullable=False),
    Column("day_to", UtcDate(), nullable=False),
    Column("jobs", Text(1000), nullable=False),
    Column("state", Text(16), nullable=False),  # RUNNING, DONE, INTERRUPTED
    Column("finished_at", UtcDate()),
    PrimaryKeyConstraint("recompute_id"),
)

t_recompute_chunk = Table(
    "t_recompute_chunk",
    metadata,
    Column("recompute_id", Count(), nullable=False),
    _key("job_name", 64),
    Column("chunk_start", UtcDate(), nullable=False),
    Column("chunk_end", UtcDate(), nullable=False),
    Column("state", Text(16), nullable=False),  # PENDING, DONE
    Column("rows_read", Count()),
    Column("duration_s", Number()),
    Column("finished_at", UtcDate()),
    PrimaryKeyConstraint("recompute_id", "job_name", "chunk_start"),
)

# Days whose 10-minute rows changed since the daily job last rolled them up. `mark` grows with
# every change, so the daily job deletes only the marks it has seen and never loses a change
# that commits while it runs.
t_dirty_day = Table(
    "t_dirty_day",
    metadata,
    Column("day", UtcDate(), nullable=False),
    _key("source", 3),
    Column("mark", Count(), nullable=False),
    PrimaryKeyConstraint("day", "source"),
)

# For every span of k extra bins (0..MAX_BIN_OFFSET), the offsets 0..k: a row spread over time
# joins it on equality (span = its bin count - 1) and gets exactly one row per bin it touches.
# An equality join is a hash join everywhere; a range join on a plain offsets table made
# PostgreSQL filter every offset for every row. A 7-day transfer touches at most 7*144 + 1 bins.
t_bin_span = Table(
    "t_bin_span",
    metadata,
    Column("span", Integer, nullable=False, autoincrement=False),
    Column("n", Integer, nullable=False, autoincrement=False),
    PrimaryKeyConstraint("span", "n"),
)

# Dashboards ask "what did site X do between T1 and T2": per site, then time (revision 0006; on
# Oracle prefix-compressed on the site, LOCAL to the partitions). Time alone is the primary key.
Index("ix_stats_avg_src", t_stats_avg.c.src_site, t_stats_avg.c.bin_start)
Index("ix_stats_avg_dst", t_stats_avg.c.dst_site, t_stats_avg.c.bin_start)
Index("ix_site_stats_site", mv_site_stats.c.site, mv_site_stats.c.day)

for _name, _comment in TABLE_COMMENTS.items():
    metadata.tables[_name].comment = _comment
for _name, _columns in COLUMN_COMMENTS.items():
    for _column, _comment in _columns.items():
        metadata.tables[_name].c[_column].comment = _comment

STATS_TABLES = (
    t_stats_avg,
    t_user_activity,
    t_stats_access_pattern,
    t_stats_access_pattern_a,
    t_msg_rate,
    t_site,
    mv_site_stats,
    t_site_pair_day,
    t_unresolved_day,
)
