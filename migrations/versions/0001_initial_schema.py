"""Initial schema: statistics, topology, job tables; raw tables when no raw schema is configured.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 22:38:17.869130
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from xrdagg.db.types import Count, Number, RawNumber, RawText, Text, UtcDate

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The bins a transfer of up to seven days spans: offsets 0..1008 (frozen here, as in revision 0001).
_MAX_BIN_OFFSET = 7 * 86400 // 600


def _create_raw_tables() -> bool:
    """Raw tables belong to the collectors' account unless no raw schema is configured."""
    return bool(context.config.attributes.get("create_raw_tables", True))


def _allow_series_depth() -> None:
    # MariaDB stops a recursive CTE after max_recursive_iterations rows (1000 on some servers,
    # like MySQL 8's cte_max_recursion_depth); the series below needs 1009. Session only.
    if op.get_context().dialect.name == "mysql":
        op.execute("SET SESSION max_recursive_iterations = 100000")


def upgrade() -> None:
    op.create_table(
        "mv_site_stats",
        sa.Column("day", UtcDate(), nullable=False),
        sa.Column("site", Text(256), nullable=False),
        sa.Column("role", Text(6), nullable=False),
        sa.Column("source", Text(3), nullable=False),
        sa.Column("read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("transfers", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("local_read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("remote_read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("users", Count(), nullable=True),
        sa.PrimaryKeyConstraint("day", "site", "role", "source", name=op.f("pk_mv_site_stats")),
    )
    op.create_table(
        "t_agent",
        sa.Column("job_name", Text(64), nullable=False),
        sa.Column("watermark", UtcDate(), nullable=True),
        sa.Column("last_run_id", Count(), nullable=True),
        sa.Column("updated_at", UtcDate(), nullable=True),
        sa.PrimaryKeyConstraint("job_name", name=op.f("pk_t_agent")),
    )
    op.create_table(
        "t_bin_offset",
        sa.Column("n", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("n", name=op.f("pk_t_bin_offset")),
    )
    _allow_series_depth()
    offsets = sa.table("t_bin_offset", sa.column("n", sa.Integer))
    series = sa.select(sa.literal(0, sa.Integer).label("n")).cte("series", recursive=True)
    series = series.union_all(
        sa.select((series.c.n + 1).label("n")).where(series.c.n < _MAX_BIN_OFFSET)
    )
    op.execute(offsets.insert().from_select(["n"], sa.select(series.c.n)))
    op.create_table(
        "t_dirty_day",
        sa.Column("day", UtcDate(), nullable=False),
        sa.Column("source", Text(3), nullable=False),
        sa.Column("mark", Count(), nullable=False),
        sa.PrimaryKeyConstraint("day", "source", name=op.f("pk_t_dirty_day")),
    )
    op.create_table(
        "t_domain_site",
        sa.Column("from_value", Text(255), nullable=False),
        sa.Column("site", Text(256), nullable=False),
        sa.PrimaryKeyConstraint("from_value", name=op.f("pk_t_domain_site")),
    )
    op.create_table(
        "t_host_site",
        sa.Column("host_key", Text(1000), nullable=False),
        sa.Column("domain_key", Text(1000), nullable=False),
        sa.Column("fqdn", Text(2048), nullable=False),
        sa.Column("domain_name", Text(255), nullable=False),
        sa.Column("site", Text(256), nullable=False),
        sa.Column("rule_kind", Text(16), nullable=False),
        sa.Column("rule_ref", Text(1000), nullable=True),
        sa.Column("resolved_at", UtcDate(), nullable=False),
        sa.PrimaryKeyConstraint("host_key", "domain_key", name=op.f("pk_t_host_site")),
    )
    op.create_index("ix_host_site_site", "t_host_site", ["site"])
    op.create_table(
        "t_job_run",
        sa.Column(
            "run_id",
            Count().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("job_name", Text(64), nullable=False),
        sa.Column("run_kind", Text(16), nullable=False),
        sa.Column("host_name", Text(256), nullable=False),
        sa.Column("process_id", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDate(), nullable=False),
        sa.Column("finished_at", UtcDate(), nullable=True),
        sa.Column("window_lo", UtcDate(), nullable=True),
        sa.Column("window_hi", UtcDate(), nullable=True),
        sa.Column("rows_read", Count(), nullable=True),
        sa.Column("rows_bad_insert", Count(), nullable=True),
        sa.Column("rows_bad_clock", Count(), nullable=True),
        sa.Column("rows_written", Count(), nullable=True),
        sa.Column("duration_s", Number(), nullable=True),
        sa.Column("outcome", Text(16), nullable=False),
        sa.Column("message", Text(2000), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_t_job_run")),
    )
    op.create_index("ix_job_run_job", "t_job_run", ["job_name", "run_id"])
    op.create_table(
        "t_msg_rate",
        sa.Column("bin_start", UtcDate(), nullable=False),
        sa.Column("source", Text(3), nullable=False),
        sa.Column("domain", Text(255), nullable=False),
        sa.Column("messages", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("delay_seconds", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_delay_seconds", Number(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("bin_start", "source", "domain", name=op.f("pk_t_msg_rate")),
    )
    op.create_table(
        "t_site",
        sa.Column("site", Text(256), nullable=False),
        sa.Column("country", Text(128), server_default="unknown", nullable=False),
        sa.Column("is_server", Text(1), server_default="N", nullable=False),
        sa.Column("is_client", Text(1), server_default="N", nullable=False),
        sa.Column("first_seen", UtcDate(), nullable=True),
        sa.Column("last_seen", UtcDate(), nullable=True),
        sa.CheckConstraint("is_client IN ('Y', 'N')", name=op.f("ck_t_site_cli")),
        sa.CheckConstraint("is_server IN ('Y', 'N')", name=op.f("ck_t_site_srv")),
        sa.PrimaryKeyConstraint("site", name=op.f("pk_t_site")),
    )
    op.create_table(
        "t_site_alias",
        sa.Column("alias", Text(256), nullable=False),
        sa.Column("site", Text(256), nullable=False),
        sa.PrimaryKeyConstraint("alias", name=op.f("pk_t_site_alias")),
    )
    op.create_table(
        "t_site_country",
        sa.Column("site", Text(256), nullable=False),
        sa.Column("country", Text(128), nullable=False),
        sa.PrimaryKeyConstraint("site", name=op.f("pk_t_site_country")),
    )
    op.create_table(
        "t_site_vo_name",
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("site", Text(256), nullable=False),
        sa.Column("vo_site", Text(256), nullable=False),
        sa.PrimaryKeyConstraint("vo", "site", "vo_site", name=op.f("pk_t_site_vo_name")),
    )
    op.create_table(
        "t_stats_access_pattern",
        sa.Column("bin_start", UtcDate(), nullable=False),
        sa.Column("src_site", Text(256), nullable=False),
        sa.Column("dst_site", Text(256), nullable=False),
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("accesses", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("file_size", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_single_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_single_ops", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_vector_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_vector_ops", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_ops", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_min", Number(), nullable=True),
        sa.Column("read_max", Number(), nullable=True),
        sa.Column("n_frac_lt10", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_10_50", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_50_100", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_ge100", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_unknown", Count(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "bin_start", "src_site", "dst_site", "vo", name=op.f("pk_t_stats_access_pattern")
        ),
    )
    op.create_table(
        "t_stats_access_pattern_a",
        sa.Column("day", UtcDate(), nullable=False),
        sa.Column("src_site", Text(256), nullable=False),
        sa.Column("dst_site", Text(256), nullable=False),
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("accesses", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("file_size", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_single_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_single_ops", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_vector_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_vector_ops", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_ops", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_min", Number(), nullable=True),
        sa.Column("read_max", Number(), nullable=True),
        sa.Column("n_frac_lt10", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_10_50", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_50_100", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_ge100", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_frac_unknown", Count(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "src_site", "dst_site", "vo", name=op.f("pk_t_stats_access_pattern_a")
        ),
    )
    op.create_table(
        "t_stats_avg",
        sa.Column("bin_start", UtcDate(), nullable=False),
        sa.Column("source", Text(3), nullable=False),
        sa.Column("src_site", Text(256), nullable=False),
        sa.Column("src_domain", Text(255), nullable=False),
        sa.Column("dst_site", Text(256), nullable=False),
        sa.Column("dst_domain", Text(255), nullable=False),
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("active_seconds", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("transfers_active", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("transfers_ended", Count(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "bin_start",
            "source",
            "src_site",
            "src_domain",
            "dst_site",
            "dst_domain",
            "vo",
            name=op.f("pk_t_stats_avg"),
        ),
    )
    op.create_table(
        "t_topology",
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("pattern", Text(1000), nullable=False),
        sa.Column("site", Text(256), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", name=op.f("pk_t_topology")),
    )
    op.create_table(
        "t_topology_load",
        sa.Column("load_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("loaded_at", UtcDate(), nullable=False),
        sa.Column("source_dir", Text(1000), nullable=False),
        sa.Column("checksum", Text(64), nullable=False),
        sa.Column("n_patterns", sa.Integer(), nullable=False),
        sa.Column("n_domains", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("load_id", name=op.f("pk_t_topology_load")),
    )
    op.create_table(
        "t_user_activity",
        sa.Column("bin_start", UtcDate(), nullable=False),
        sa.Column("user_dn", Text(512), nullable=False),
        sa.Column("vo", Text(64), nullable=False),
        sa.Column("src_site", Text(256), nullable=False),
        sa.Column("dst_site", Text(256), nullable=False),
        sa.Column("accesses", Count(), server_default=sa.text("0"), nullable=False),
        sa.Column("read_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.Column("write_bytes", Number(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "bin_start", "user_dn", "vo", "src_site", "dst_site", name=op.f("pk_t_user_activity")
        ),
    )
    if _create_raw_tables():
        op.create_table(
            "t_raw_eos",
            sa.Column("unique_id", RawText(1000), nullable=False),
            sa.Column("file_lfn", RawText(1000), nullable=True),
            sa.Column("file_size", RawNumber(), nullable=True),
            sa.Column("client_domain", RawText(1000), nullable=True),
            sa.Column("client_host", RawText(1000), nullable=True),
            sa.Column("server_domain", RawText(1000), nullable=True),
            sa.Column("server_host", RawText(1000), nullable=True),
            sa.Column("read_bytes_at_close", RawNumber(), nullable=True),
            sa.Column("read_bytes", RawNumber(), nullable=True),
            sa.Column("read_operations", RawNumber(), nullable=True),
            sa.Column("read_average", RawNumber(), nullable=True),
            sa.Column("read_min", RawNumber(), nullable=True),
            sa.Column("read_max", RawNumber(), nullable=True),
            sa.Column("read_sigma", RawNumber(), nullable=True),
            sa.Column("read_single_bytes", RawNumber(), nullable=True),
            sa.Column("read_single_operations", RawNumber(), nullable=True),
            sa.Column("read_single_average", RawNumber(), nullable=True),
            sa.Column("read_single_min", RawNumber(), nullable=True),
            sa.Column("read_single_max", RawNumber(), nullable=True),
            sa.Column("read_single_sigma", RawNumber(), nullable=True),
            sa.Column("read_vector_bytes", RawNumber(), nullable=True),
            sa.Column("read_vector_operations", RawNumber(), nullable=True),
            sa.Column("read_vector_average", RawNumber(), nullable=True),
            sa.Column("read_vector_min", RawNumber(), nullable=True),
            sa.Column("read_vector_max", RawNumber(), nullable=True),
            sa.Column("read_vector_sigma", RawNumber(), nullable=True),
            sa.Column("read_vector_count_average", RawNumber(), nullable=True),
            sa.Column("read_vector_count_min", RawNumber(), nullable=True),
            sa.Column("read_vector_count_max", RawNumber(), nullable=True),
            sa.Column("read_vector_count_sigma", RawNumber(), nullable=True),
            sa.Column("write_bytes_at_close", RawNumber(), nullable=True),
            sa.Column("write_bytes", RawNumber(), nullable=True),
            sa.Column("write_operations", RawNumber(), nullable=True),
            sa.Column("write_min", RawNumber(), nullable=True),
            sa.Column("write_max", RawNumber(), nullable=True),
            sa.Column("write_average", RawNumber(), nullable=True),
            sa.Column("write_sigma", RawNumber(), nullable=True),
            sa.Column("server_username", RawText(1000), nullable=True),
            sa.Column("user_dn", RawText(1000), nullable=True),
            sa.Column("user_fqan", RawText(1000), nullable=True),
            sa.Column("user_role", RawText(1000), nullable=True),
            sa.Column("user_vo", RawText(1000), nullable=True),
            sa.Column("app_info", RawText(2048), nullable=True),
            sa.Column("start_time", RawNumber(), nullable=True),
            sa.Column("end_time", RawNumber(), nullable=True),
            sa.Column("start_date", UtcDate(), nullable=True),
            sa.Column("end_date", UtcDate(), nullable=False),
            sa.Column("insert_date", UtcDate(), nullable=True),
            sa.Column("server_site", RawText(256), nullable=True),
            sa.Column("queue_flag", RawText(8), nullable=True),
            sa.Column("user_protocol", RawText(64), nullable=True),
        )
        op.create_index("ix_raw_eos_end_date", "t_raw_eos", ["end_date"])
        op.create_index("ix_raw_eos_insert_date", "t_raw_eos", ["insert_date"])
        op.create_table(
            "t_raw_fed",
            sa.Column("unique_id", RawText(1000), nullable=False),
            sa.Column("file_lfn", RawText(1000), nullable=True),
            sa.Column("file_size", RawNumber(), nullable=True),
            sa.Column("client_domain", RawText(1000), nullable=True),
            sa.Column("client_host", RawText(1000), nullable=True),
            sa.Column("server_domain", RawText(1000), nullable=True),
            sa.Column("server_host", RawText(1000), nullable=True),
            sa.Column("read_bytes_at_close", RawNumber(), nullable=True),
            sa.Column("read_bytes", RawNumber(), nullable=True),
            sa.Column("read_operations", RawNumber(), nullable=True),
            sa.Column("read_average", RawNumber(), nullable=True),
            sa.Column("read_min", RawNumber(), nullable=True),
            sa.Column("read_max", RawNumber(), nullable=True),
            sa.Column("read_sigma", RawNumber(), nullable=True),
            sa.Column("read_single_bytes", RawNumber(), nullable=True),
            sa.Column("read_single_operations", RawNumber(), nullable=True),
            sa.Column("read_single_average", RawNumber(), nullable=True),
            sa.Column("read_single_min", RawNumber(), nullable=True),
            sa.Column("read_single_max", RawNumber(), nullable=True),
            sa.Column("read_single_sigma", RawNumber(), nullable=True),
            sa.Column("read_vector_bytes", RawNumber(), nullable=True),
            sa.Column("read_vector_operations", RawNumber(), nullable=True),
            sa.Column("read_vector_average", RawNumber(), nullable=True),
            sa.Column("read_vector_min", RawNumber(), nullable=True),
            sa.Column("read_vector_max", RawNumber(), nullable=True),
            sa.Column("read_vector_sigma", RawNumber(), nullable=True),
            sa.Column("read_vector_count_average", RawNumber(), nullable=True),
            sa.Column("read_vector_count_min", RawNumber(), nullable=True),
            sa.Column("read_vector_count_max", RawNumber(), nullable=True),
            sa.Column("read_vector_count_sigma", RawNumber(), nullable=True),
            sa.Column("write_bytes_at_close", RawNumber(), nullable=True),
            sa.Column("write_bytes", RawNumber(), nullable=True),
            sa.Column("write_operations", RawNumber(), nullable=True),
            sa.Column("write_min", RawNumber(), nullable=True),
            sa.Column("write_max", RawNumber(), nullable=True),
            sa.Column("write_average", RawNumber(), nullable=True),
            sa.Column("write_sigma", RawNumber(), nullable=True),
            sa.Column("server_username", RawText(1000), nullable=True),
            sa.Column("user_dn", RawText(1000), nullable=True),
            sa.Column("user_fqan", RawText(1000), nullable=True),
            sa.Column("user_role", RawText(1000), nullable=True),
            sa.Column("user_vo", RawText(1000), nullable=True),
            sa.Column("app_info", RawText(2048), nullable=True),
            sa.Column("start_time", RawNumber(), nullable=True),
            sa.Column("end_time", RawNumber(), nullable=True),
            sa.Column("start_date", UtcDate(), nullable=True),
            sa.Column("end_date", UtcDate(), nullable=False),
            sa.Column("insert_date", UtcDate(), nullable=True),
            sa.Column("server_site", RawText(256), nullable=True),
            sa.Column("queue_flag", RawText(8), nullable=True),
            sa.Column("user_protocol", RawText(64), nullable=True),
        )
        op.create_index("ix_raw_fed_end_date", "t_raw_fed", ["end_date"])
        op.create_index("ix_raw_fed_insert_date", "t_raw_fed", ["insert_date"])


def downgrade() -> None:
    if _create_raw_tables():
        op.drop_index("ix_raw_fed_insert_date", table_name="t_raw_fed")
        op.drop_index("ix_raw_fed_end_date", table_name="t_raw_fed")
        op.drop_table("t_raw_fed")
        op.drop_index("ix_raw_eos_insert_date", table_name="t_raw_eos")
        op.drop_index("ix_raw_eos_end_date", table_name="t_raw_eos")
        op.drop_table("t_raw_eos")
    op.drop_table("t_user_activity")
    op.drop_table("t_topology_load")
    op.drop_table("t_topology")
    op.drop_table("t_stats_avg")
    op.drop_table("t_stats_access_pattern_a")
    op.drop_table("t_stats_access_pattern")
    op.drop_table("t_site_vo_name")
    op.drop_table("t_site_country")
    op.drop_table("t_site_alias")
    op.drop_table("t_site")
    op.drop_table("t_msg_rate")
    op.drop_index("ix_job_run_job", table_name="t_job_run")
    op.drop_table("t_job_run")
    op.drop_index("ix_host_site_site", table_name="t_host_site")
    op.drop_table("t_host_site")
    op.drop_table("t_domain_site")
    op.drop_table("t_dirty_day")
    op.drop_table("t_bin_offset")
    op.drop_table("t_agent")
    op.drop_table("mv_site_stats")
