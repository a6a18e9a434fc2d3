"""What the command line (and anyone scripting xrdagg) does, as a library: choose jobs, run
them, roll up after a rebuild, set up the demo. Commands only parse options and print; the
policy ("which jobs", "when the daily job runs after a rebuild") lives here once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, delete, func, select

from xrdagg.config import Settings
from xrdagg.db import migrate
from xrdagg.db.dialect import JOB_ISOLATION, isolated_transaction
from xrdagg.db.tables import STATS_TABLES, t_dirty_day, t_host_site
from xrdagg.errors import ConfigError
from xrdagg.extras import require
from xrdagg.jobs.audit import AuditResult, audit, repair_with_recompute, source_jobs
from xrdagg.jobs.runner import JobRunner, RunReport
from xrdagg.jobs.specs import JobSpec, load_job_specs
from xrdagg.reports import (
    Rows,
    invalid_rows,
    job_status,
    top_site_pairs,
    unresolved,
    unresolved_share,
)
from xrdagg.sources import SOURCES
from xrdagg.topology.files import read_topology_dir
from xrdagg.topology.store import has_topology, load_topology

DEMO_START = datetime(2024, 3, 1)


def select_jobs(settings: Settings, names: Sequence[str] = ()) -> list[JobSpec]:
    """The named jobs in the order given, or every enabled job in declaration order; an unknown
    name is refused with the names that are declared."""
    specs = load_job_specs(settings.jobs_dir)
    if not names:
        return [s for s in specs if s.enabled]
    by_name = {s.name: s for s in specs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown job(s) {', '.join(unknown)}; declared: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def run_jobs(
    engine: Engine,
    settings: Settings,
    jobs: Sequence[JobSpec],
    *,
    until: datetime | None = None,
    wait: bool = False,
) -> Iterator[RunReport]:
    """Run each job once, in order; yields each run's report as it finishes."""
    runner = JobRunner(engine, settings, load_job_specs(settings.jobs_dir))
    for job in jobs:
        yield runner.run(job, until=until, wait=wait)


def roll_up_after_rebuild(engine: Engine, settings: Settings) -> list[RunReport]:
    """Run the daily jobs now, waiting for a run in flight: after a recompute or an audit's
    repair the days they rebuilt are marked dirty, and the daily tables catch up here. (A
    topology apply rolls the daily rows of the keys it changed up itself; this catches up the
    days the 10-minute jobs marked.)"""
    daily = [s for s in load_job_specs(settings.jobs_dir) if s.kind == "daily"]
    return list(run_jobs(engine, settings, daily, wait=True))


@dataclass
class AuditOutcome:
    """`xrdagg audit`: what it found, and with --repair what a second audit found after."""

    found: AuditResult
    after: AuditResult | None = None
    daily: list[RunReport] = field(default_factory=list)


def audit_statistics(
    engine: Engine,
    settings: Settings,
    *,
    sources: Sequence[str] = (),
    day_from: datetime | None = None,
    day_to: datetime | None = None,
    repair: bool = False,
    workers: int = 1,
    duplicates: bool = False,
) -> AuditOutcome:
    """Audit the statistics of `sources` (default: every source with an enabled job) over
    [day_from, day_to] (None: unbounded); with `repair`, rebuild the differing days through
    recompute, roll the daily tables up, and audit again."""
    jobs = source_jobs(select_jobs(settings), sources)
    missing = sorted(set(sources) - set(jobs))
    if missing:
        raise ConfigError(f"no enabled 10-minute job aggregates source {', '.join(missing)}")

    def compare() -> AuditResult:
        # Watermark and statistics from one snapshot.
        with isolated_transaction(engine, JOB_ISOLATION) as conn:
            return audit(conn, jobs, day_from, day_to, duplicates=duplicates)

    outcome = AuditOutcome(compare())
    if repair and outcome.found.differences:
        repair_with_recompute(engine, jobs, outcome.found, workers=workers)
        outcome.daily = roll_up_after_rebuild(engine, settings)
        outcome.after = compare()
    return outcome


@dataclass
class DemoSetup:
    """What `prepare_demo` did, in lines for the operator."""

    lines: list[str] = field(default_factory=list)


def prepare_demo(
    engine: Engine, settings: Settings, *, fed_rows: int, eos_rows: int, days: float, fresh: bool
) -> DemoSetup:
    """Bring the schema up to date, load the topology when none is (or `fresh`), and sample raw
    records when the raw tables are empty (after emptying everything, with `fresh`)."""
    if settings.raw_schema is not None:
        raise ConfigError("the demo writes sample raw rows: unset XRDAGG_RAW_SCHEMA")
    require("pandas", "the demo's sample records")  # before anything is written
    from xrdagg.raw.generate import generate  # pandas: the `data` extra
    from xrdagg.raw.load import load_frame

    setup = DemoSetup([f"database: {settings.safe_url()}"])
    migrate.upgrade(settings)
    with engine.begin() as conn:
        if fresh:
            for table in (
                *(s.raw for s in SOURCES.values()),
                *STATS_TABLES,
                t_dirty_day,
                t_host_site,
            ):
                conn.execute(delete(table))
        if fresh or not has_topology(conn):
            summary = load_topology(
                conn, read_topology_dir(settings.topology_dir), settings.topology_dir
            )
            setup.lines.append(f"topology: {summary.patterns} patterns, {summary.domains} domains")
        existing = sum(
            conn.execute(select(func.count()).select_from(s.raw)).scalar_one()
            for s in SOURCES.values()
        )
        if existing:
            setup.lines.append(
                f"sample data: {existing} raw records already there (--fresh to start over)"
            )
            return setup
        for source, rows, seed in ((SOURCES["fed"], fed_rows, 1), (SOURCES["eos"], eos_rows, 2)):
            if rows:
                frame = generate(rows, start=DEMO_START, days=days, seed=seed, source=source.name)
                loaded = load_frame(conn, source.name, frame)
                setup.lines.append(f"sample data: {loaded} records into T_RAW_{source.label}")
    return setup


@dataclass(frozen=True)
class Summary:
    """What the statistics say, for the demo's closing summary."""

    top_pairs: Rows
    unresolved_share: float
    unresolved: Rows
    invalid: Rows
    jobs: Rows


def summarise(engine: Engine) -> Summary:
    """Top site pairs, the unresolved share and domains, invalid rows and the jobs' state."""
    with engine.begin() as conn:
        return Summary(
            top_pairs=top_site_pairs(conn),
            unresolved_share=unresolved_share(conn),
            unresolved=unresolved(conn, None, limit=5),
            invalid=invalid_rows(conn),
            jobs=job_status(conn),
        )
