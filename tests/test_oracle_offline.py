"""The Oracle tier that runs everywhere: every statement xrdagg executes, and every migration,
compiled with the Oracle dialect and checked by xrdagg.db.oracle_lint."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import ClauseElement, event
from sqlalchemy.dialects import oracle

from xrdagg.cli import main
from xrdagg.config import PROJECT_ROOT, Settings
from xrdagg.db import migrate
from xrdagg.db.dialect.ddl import PARTITION_INTERVALS
from xrdagg.db.engine import make_engine
from xrdagg.db.offline import ORACLE_PRODUCTION, oracle_grants, oracle_schema
from xrdagg.db.oracle_lint import lint_ddl, lint_metadata, lint_script, lint_sql
from xrdagg.db.tables import RAW_SCHEMA, metadata
from xrdagg.jobs import apply, daily
from xrdagg.jobs.apply import apply_topology
from xrdagg.jobs.audit import audit, repair_in_transaction, source_jobs
from xrdagg.jobs.recompute import Recompute
from xrdagg.jobs.runner import JobRunner
from xrdagg.jobs.specs import load_job_specs
from xrdagg.plots import throughput
from xrdagg.raw.generate import generate
from xrdagg.raw.load import load_file, load_frame
from xrdagg.report.query import QUERIES, Filters
from xrdagg.reports import invalid_rows, job_status, top_site_pairs, unresolved, unresolved_share
from xrdagg.sources import SOURCES
from xrdagg.topology.files import read_topology_dir
from xrdagg.topology.store import load_topology

SQL_DIR = PROJECT_ROOT / "sql"


@pytest.fixture(scope="module")
def executed_statements(tmp_path_factory: pytest.TempPathFactory) -> list[ClauseElement]:
    """Every SQLAlchemy statement a whole workflow executes (run on SQLite, captured)."""
    path = tmp_path_factory.mktemp("capture") / "capture.db"
    settings = Settings.from_env({"XRDAGG_DATABASE_URL": f"sqlite:///{path}"}).with_overrides(
        safety_lag_seconds=0
    )
    migrate.upgrade(settings)
    engine = make_engine(settings)
    captured: list[ClauseElement] = []

    @event.listens_for(engine, "before_execute")
    def capture(conn, clauseelement, multiparams, params, execution_options):  # type: ignore[no-untyped-def]
        if isinstance(clauseelement, ClauseElement):
            captured.append(clauseelement)

    specs = load_job_specs(PROJECT_ROOT / "jobs")
    with engine.begin() as conn:
        load_topology(conn, read_topology_dir(PROJECT_ROOT / "topology"), PROJECT_ROOT / "topology")
        for source in ("fed", "eos"):
            load_frame(conn, source, generate(500, start=datetime(2024, 3, 1), source=source))
    runner = JobRunner(engine, settings, specs)
    for spec in specs:
        assert runner.run(spec, until=datetime(2024, 3, 3)).outcome == "OK"
    # A second window whose rows land in bins the first one wrote: the upsert (MERGE) path, where
    # the first windows, on empty tables, took the plain INSERT path.
    with engine.begin() as conn:
        for source in ("fed", "eos"):
            late = generate(200, start=datetime(2024, 3, 1), source=source, seed=9)
            late["unique_id"] = "late-" + late["unique_id"]
            late["insert_date"] = datetime(2024, 3, 3, 12)
            load_frame(conn, source, late)
    for spec in specs:
        assert runner.run(spec, until=datetime(2024, 3, 4)).outcome == "OK"
    # Backfill and topology change: every statement kind they run.
    recompute = Recompute(engine, specs)
    recompute_id, chunks = recompute.start(datetime(2024, 3, 1), datetime(2024, 3, 1), 1000)
    recompute.run(recompute_id, chunks)
    topology = read_topology_dir(PROJECT_ROOT / "topology")
    topology.domain_map["cern.ch"] = "CERN-RENAMED"
    apply_topology(engine, topology, PROJECT_ROOT / "topology", specs)
    # A file loaded (twice: the second skips every record) behind the watermark, then an
    # audit that repairs in its transaction: the statements of issue 10.
    export = path.parent / "late.csv"
    export.write_text(
        "unique_id,end_date,insert_date\nbehind-1,2024-03-01 10:00:00,2024-03-01 11:00:00\n"
    )
    for _ in range(2):
        with engine.begin() as conn:
            load_file(conn, export, "fed", skip_invalid=False, watermark=datetime(2024, 3, 4))
    jobs = source_jobs(specs)
    with engine.begin() as conn:
        found = audit(conn, jobs, datetime(2024, 3, 1), datetime(2024, 3, 2), lock=True)
        assert found.differences
        repair_in_transaction(conn, jobs, found)
    with engine.begin() as conn:
        job_status(conn)
    with engine.begin() as conn:
        invalid_rows(conn)
        unresolved(conn)
        top_site_pairs(conn)
        unresolved_share(conn)
        job_status(conn)
        throughput(conn, site="CERN-PROD", role="client", start=datetime(2024, 3, 1))
        # `xrdagg report`: every kind, on the daily tables (whole days) and the 10-minute ones.
        for start, end in ((datetime(2024, 3, 1), datetime(2024, 3, 3)),
                           (datetime(2024, 3, 1, 6), datetime(2024, 3, 2, 6))):  # fmt: skip
            for names in ("gocdb", "vo"):
                filters = Filters(start, end, site="CERN-PROD", vo="cms", names=names, top=5)
                for kind, report in QUERIES.items():
                    if kind != "sites":
                        report(conn, filters)
                report(conn, replace(filters, site=None, names="gocdb", vo=None))
                QUERIES["sites"](conn, replace(filters, vo="cms", names="vo"))
    engine.dispose()
    return captured


def test_every_executed_statement_compiles_for_oracle_and_passes_the_lint(
    executed_statements: list[ClauseElement],
) -> None:
    dialect = oracle.dialect()
    translate = {RAW_SCHEMA: "atlas_xrd_mon"}
    rendered = set()
    # The workflow's apply names its few delta sites as values; past Oracle's 1,000-value IN
    # list the roll-up of the changed keys reads them from T_TOPOLOGY_DELTA: compiled here, and
    # so is the read of a changed alias's spellings (the workflow changes no alias).
    spellings = [apply._spellings_statement(source) for source in SOURCES.values()]
    # The daily job's test for trimmed days runs only on days marked long after they happened.
    for statement in [
        *executed_statements,
        *apply._rollup_statements(as_values=False),
        *spellings,
        *daily.TRIMMED_DAY_CHECKS,
    ]:
        compiled = statement.compile(dialect=dialect, schema_translate_map=translate)
        # What execution does with the map (SQLAlchemy applies it only when executing).
        rendered.add(compiled.preparer._render_schema_translates(compiled.string, translate))
    assert len(rendered) >= 30, "the capture missed the workflow"
    assert any(sql.startswith("MERGE INTO t_stats_avg") for sql in rendered)  # incremental
    assert any(sql.startswith("INSERT INTO t_stats_avg") for sql in rendered)  # empty range
    assert any(sql.startswith("INSERT INTO t_stage_group") for sql in rendered)  # the staging
    assert any(sql.startswith("DELETE FROM t_stats_avg") for sql in rendered)  # recompute, apply
    assert any("t_topology_delta" in sql for sql in rendered)
    assert any("FROM t_site_pair_day" in sql for sql in rendered)  # reports on whole days
    assert any("INSERT INTO t_site_pair_day" in sql for sql in rendered)  # the daily roll-up
    # The apply's roll-up of the changed keys' daily rows, both ways of naming the delta sites.
    assert any(
        sql.startswith("DELETE FROM mv_site_stats") and "delta_sites" in sql for sql in rendered
    )
    assert any(
        sql.startswith("DELETE FROM mv_site_stats") and "FROM t_topology_delta" in sql
        for sql in rendered
    )
    assert any("INSERT INTO t_unresolved_day" in sql for sql in rendered)
    assert any("FROM t_unresolved_day" in sql for sql in rendered)
    assert any("sum(t_msg_rate.messages" in sql.lower() for sql in rendered)  # the audit
    assert any("atlas_xrd_mon.t_raw_fed" in sql for sql in rendered)  # the raw schema is honoured
    assert any("sum(t_site_pair_day.transfers_ended)" in sql for sql in rendered)  # trimmed days
    problems = {sql[:120]: lint_sql(sql) for sql in rendered if lint_sql(sql)}
    assert problems == {}


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT a FROM t LIMIT 5", "LIMIT"),
        ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING", "ON CONFLICT"),
        ("SELECT a::text FROM t", "::"),
        ("CREATE TABLE t (flag BOOLEAN)", "BOOLEAN"),
        ("SELECT a FROM t WHERE b = ''", "= ''"),
        ("SELECT a FROM t WHERE b IS TRUE", "TRUE/FALSE"),
        ('SELECT "level" FROM t', "quoted identifier"),
    ],
)
def test_the_lint_catches_what_oracle_refuses(sql: str, problem: str) -> None:
    assert any(problem in p for p in lint_sql(sql))


def test_the_lint_leaves_string_contents_alone() -> None:
    assert lint_sql("SELECT 'LIMIT :: TRUE' FROM dual WHERE LENGTH(TRIM(a)) > 0") == []


def test_schema_names_fit_oracle() -> None:
    assert lint_metadata(metadata) == []


@pytest.mark.parametrize("raw_schema", ["ATLAS_XRD_MON", None], ids=["production", "embedded-raw"])
def test_offline_oracle_migration_is_clean(raw_schema: str | None) -> None:
    script = migrate.offline_sql(ORACLE_PRODUCTION.with_overrides(raw_schema=raw_schema))
    assert "CREATE TABLE t_stats_avg" in script
    assert ("CREATE TABLE t_raw_fed" in script) == (raw_schema is None)
    assert lint_ddl(script) == []
    assert lint_script(script) == []
    downgrade = migrate.offline_sql(ORACLE_PRODUCTION, "head:base", downgrade=True)
    assert "DROP TABLE t_stats_avg" in downgrade
    assert lint_script(downgrade) == []


def test_the_schema_script_runs_top_to_bottom_in_sqlplus() -> None:
    """Stops at the first error, binds nothing, says BYTE, commits its DML (the version row)."""
    script = (SQL_DIR / "oracle_schema.sql").read_text()
    assert lint_script(script) == []
    assert ":ret_0" not in script and "RETURNING" not in script
    assert "site VARCHAR2(256 BYTE) NOT NULL" in script
    assert script.rstrip().endswith("COMMIT\n\n/")


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ("CREATE TABLE t (\n    a NUMBER\n)\n/\n", "WHENEVER SQLERROR"),
        (
            "WHENEVER SQLERROR EXIT FAILURE\nINSERT INTO t (a) VALUES (1) RETURNING a INTO :ret_0\n/\nCOMMIT\n/\n",
            "bind variable",
        ),
        (
            "WHENEVER SQLERROR EXIT FAILURE\nCREATE TABLE t (\n    a VARCHAR2(10)\n)\n/\n",
            "NLS_LENGTH_SEMANTICS",
        ),
        ("WHENEVER SQLERROR EXIT FAILURE\nUPDATE t SET a = 1\n/\n", "COMMIT"),
    ],
)
def test_the_script_lint_catches_what_stops_sqlplus(script: str, problem: str) -> None:
    assert any(problem in p for p in lint_script(script))


def test_the_script_lint_leaves_strings_and_substitutions_alone() -> None:
    script = "WHENEVER SQLERROR EXIT FAILURE\nCOMMENT ON TABLE t IS 'a :b c'\n/\n"
    assert lint_script(script) == []
    assert lint_script(oracle_grants()) == []  # &&stats_account..v_x is SQL*Plus substitution


@pytest.mark.parametrize("table", sorted(PARTITION_INTERVALS))
def test_time_series_tables_are_interval_partitioned_on_oracle(table: str) -> None:
    column, interval = PARTITION_INTERVALS[table]
    script = (SQL_DIR / "oracle_schema.sql").read_text()
    assert (
        f"ALTER TABLE {table} MODIFY\n    PARTITION BY RANGE ({column}) INTERVAL ({interval})"
        in script
    )
    assert f"ONLINE UPDATE INDEXES (pk_{table} LOCAL)" in script
    unpartitioned = migrate.offline_sql(ORACLE_PRODUCTION.with_overrides(oracle_partitioning=False))
    assert "PARTITION BY" not in unpartitioned and "COMPRESS 1 LOCAL" not in unpartitioned
    assert lint_script(unpartitioned) == []


def test_dashboard_indexes_are_per_site_then_time_compressed_and_local() -> None:
    script = (SQL_DIR / "oracle_schema.sql").read_text()
    for index in (
        "ix_stats_avg_src ON t_stats_avg (src_site, bin_start)",
        "ix_stats_avg_dst ON t_stats_avg (dst_site, bin_start)",
        "ix_site_stats_site ON mv_site_stats (site, day)",
    ):
        assert f"CREATE INDEX {index} COMPRESS 1 LOCAL" in script


def test_every_statistics_column_has_a_comment_in_the_oracle_script() -> None:
    script = (SQL_DIR / "oracle_schema.sql").read_text()
    for table in ("t_stats_avg", "t_user_activity", "t_stats_access_pattern",
                  "t_stats_access_pattern_a", "t_msg_rate", "t_site", "mv_site_stats"):  # fmt: skip
        assert f"COMMENT ON TABLE {table} IS '" in script
        for column in metadata.tables[table].columns:
            assert f"COMMENT ON COLUMN {table}.{column.name} IS '" in script, column


def test_the_dashboard_account_reads_read_only_views_through_synonyms() -> None:
    grants = (SQL_DIR / "oracle_grants.sql").read_text()
    statements = [line for line in grants.splitlines() if line and not line.startswith("--")]
    dashboard = [s for s in statements if "&&dashboard_role" in s]
    assert dashboard and all(s.startswith("GRANT SELECT ON v_") for s in dashboard)
    views = [s for s in statements if s.startswith("CREATE OR REPLACE VIEW")]
    assert views and all(s.endswith("WITH READ ONLY;") for s in views)
    assert "CREATE OR REPLACE SYNONYM t_stats_avg FOR &&stats_account..v_t_stats_avg;" in grants
    assert "t_dirty_day" not in grants and "t_recompute" not in grants  # bookkeeping stays private


def test_committed_oracle_scripts_are_what_the_migrations_produce() -> None:
    assert (SQL_DIR / "oracle_schema.sql").read_text() == oracle_schema(), "run `make oracle-sql`"
    assert (SQL_DIR / "oracle_grants.sql").read_text() == oracle_grants(), "run `make oracle-sql`"


def test_db_sql_command_prints_the_oracle_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRDAGG_DATABASE_URL", "oracle+oracledb://scott@dbhost/?service_name=XE")
    monkeypatch.setenv("XRDAGG_RAW_SCHEMA", "ATLAS_XRD_MON")
    result = CliRunner().invoke(main, ["db", "sql"])
    assert result.exit_code == 0, result.output
    assert "MERGE" not in result.output and "CREATE TABLE t_user_activity" in result.output


def test_the_oracle_staging_table_has_the_columns_the_engine_stages() -> None:
    """Oracle's global temporary table (revisions 0010 and 0013: the last one created counts)
    is created by the migrations, the other databases' staging table by each fill: both must
    take the same columns, NULLs included (a side whose pair is not cached yet is staged with NULL
    site and domain)."""
    from xrdagg.jobs.stage import t_stage_group

    script = (SQL_DIR / "oracle_schema.sql").read_text()
    block = script.split("CREATE GLOBAL TEMPORARY TABLE t_stage_group (")[-1].split("\n)")[0]
    declared = {line.split()[0]: "NOT NULL" in line for line in block.splitlines() if line.strip()}
    assert declared == {c.name: not c.nullable for c in t_stage_group.columns}
