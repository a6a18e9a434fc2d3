"""The Oracle tier that runs everywhere: every statement xrdagg executes, and every migration,
compiled with the Oracle dialect and checked by xrdagg.db.oracle_lint."""

from __future__ import annotations

from datetime import datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import ClauseElement, event
from sqlalchemy.dialects import oracle

from xrdagg.cli import main
from xrdagg.config import PROJECT_ROOT, Settings
from xrdagg.db import migrate
from xrdagg.db.engine import make_engine
from xrdagg.db.offline import ORACLE_PRODUCTION, oracle_grants, oracle_schema
from xrdagg.db.oracle_lint import lint_ddl, lint_metadata, lint_sql
from xrdagg.db.tables import RAW_SCHEMA, metadata
from xrdagg.jobs.apply import apply_topology
from xrdagg.jobs.recompute import Recompute
from xrdagg.jobs.runner import JobRunner
from xrdagg.jobs.specs import load_job_specs
from xrdagg.raw.generate import generate
from xrdagg.raw.load import load_frame
from xrdagg.reports import invalid_rows, job_status, top_site_pairs, unresolved, unresolved_share
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
    with engine.begin() as conn:
        job_status(conn)
    with engine.begin() as conn:
        invalid_rows(conn)
        unresolved(conn)
        top_site_pairs(conn)
        unresolved_share(conn)
        job_status(conn)
    engine.dispose()
    return captured


def test_every_executed_statement_compiles_for_oracle_and_passes_the_lint(
    executed_statements: list[ClauseElement],
) -> None:
    dialect = oracle.dialect()
    translate = {RAW_SCHEMA: "atlas_xrd_mon"}
    rendered = set()
    for statement in executed_statements:
        compiled = statement.compile(dialect=dialect, schema_translate_map=translate)
        # What execution does with the map (SQLAlchemy applies it only when executing).
        rendered.add(compiled.preparer._render_schema_translates(compiled.string, translate))
    assert len(rendered) >= 30, "the capture missed the workflow"
    assert any(sql.startswith("MERGE INTO t_stats_avg") for sql in rendered)  # incremental
    assert any(sql.startswith("INSERT INTO t_stats_avg") for sql in rendered)  # empty range
    assert any(sql.startswith("INSERT INTO t_stage_norm") for sql in rendered)  # the staging
    assert any(sql.startswith("DELETE FROM t_stats_avg") for sql in rendered)  # recompute, apply
    assert any("t_topology_delta" in sql for sql in rendered)
    assert any("atlas_xrd_mon.t_raw_fed" in sql for sql in rendered)  # the raw schema is honoured
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
    downgrade = migrate.offline_sql(ORACLE_PRODUCTION, "head:base", downgrade=True)
    assert "DROP TABLE t_stats_avg" in downgrade


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
    """Oracle's global temporary table (revision 0005) is created by the migrations, the other
    databases' staging table by each fill: both must take the same columns, NULLs included (a
    side whose pair is not cached yet is staged with NULL site and domain)."""
    from xrdagg.jobs.stage import t_stage_norm

    script = (SQL_DIR / "oracle_schema.sql").read_text()
    block = script.split("CREATE GLOBAL TEMPORARY TABLE t_stage_norm (")[1].split("\n)")[0]
    declared = {line.split()[0]: "NOT NULL" in line for line in block.splitlines() if line.strip()}
    assert declared == {c.name: not c.nullable for c in t_stage_norm.columns}
