"""`xrdagg run`, `check`, `status` and `demo`: the jobs and what they produced."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

import click
from sqlalchemy import exc

from xrdagg import health
from xrdagg.backlog import rows_behind_safety_lag, safety_lag
from xrdagg.commands.common import (
    Context,
    console,
    err_console,
    operator_errors,
    parse_utc,
    pass_context,
)
from xrdagg.db.dialect import is_unreachable
from xrdagg.errors import XrdaggError
from xrdagg.health import State
from xrdagg.jobs.runner import RunReport
from xrdagg.jobs.specs import JobSpec, load_job_specs
from xrdagg.operations import prepare_demo, run_jobs, select_jobs, summarise
from xrdagg.reports import Rows, invalid_rows, job_status, odd_numbers, since, unresolved


def _print(report: RunReport, suffix: str = "") -> RunReport:
    line = report.summary() + suffix
    (console if report.outcome == "OK" else err_console).print(line, markup=False)
    return report


def _waiting(ctx: Context, spec: JobSpec) -> str:
    """', N rows wait behind the safety lag' for a raw-source job ('' for the others)."""
    try:
        with ctx.engine.connect() as conn:
            rows = rows_behind_safety_lag(conn, spec, ctx.settings)
    except exc.SQLAlchemyError:
        return ""  # the run's own line says what is wrong with the database
    if rows is None:
        return ""
    return f"; {rows} rows wait behind the {safety_lag(spec, ctx.settings)} s safety lag"


@click.command()
@click.argument("jobs", nargs=-1)
@click.option(
    "--until", help="Process rows inserted up to this UTC time at most ('YYYY-MM-DD HH:MM:SS')."
)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for a job another process is running, instead of skipping it.",
)
@pass_context
@operator_errors
def run(ctx: Context, jobs: tuple[str, ...], until: str | None, wait: bool) -> None:
    """Run JOBS once (default: every enabled job, in declaration order).

    Each job processes the rows inserted since its watermark, up to --until capped by database
    now minus the safety lag, and moves its watermark in the same transaction. Exit status: 0 when
    every job ran, 1 when one failed, 75 when one was skipped because another process runs it.

    Example: xrdagg run fed10 --until "2024-03-02 00:00:00"
    """
    chosen = select_jobs(ctx.settings, jobs)
    until_at = parse_utc(until, "--until")
    by_name = {spec.name: spec for spec in chosen}
    reports = [
        _print(r, _waiting(ctx, by_name[r.job]) if r.outcome == "OK" else "")
        for r in run_jobs(ctx.engine, ctx.settings, chosen, until=until_at, wait=wait)
    ]
    outcomes = {r.outcome for r in reports}
    if "FAILED" in outcomes:
        sys.exit(1)
    if "SKIPPED" in outcomes:
        sys.exit(75)  # EX_TEMPFAIL: try again later


@click.command()
@click.option(
    "--days", type=float, default=None, help="Only raw rows of the last DAYS days (default: all)."
)
@pass_context
@operator_errors
def check(ctx: Context, days: float | None) -> None:
    """Report invalid raw rows and odd numbers by reason, and unresolved domains, per source.

    Example: xrdagg check --days 1
    """
    with ctx.engine.begin() as conn:
        start = since(conn, days)
        invalid = invalid_rows(conn, start)
        odd = odd_numbers(conn, start)
        missing = unresolved(conn, start)
    console.print("invalid raw rows (excluded from every statistic, SPEC §6):")
    console.print(invalid.to_text(), markup=False)
    console.print("\nraw rows with NaN, infinite or out-of-range numbers (counted as 0):")
    console.print("(none)" if odd.empty else odd.to_text(), markup=False)
    console.print("\nunresolved domains (site 'unknown'), by raw rows:")
    console.print("(none)" if missing.empty else missing.to_text(), markup=False)


class NagiosCommand(click.Command):
    """A command whose bad options are UNKNOWN (exit 3), as a Nagios plugin's must be."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            click.echo(health.unknown(f"bad option: {error.format_message()}").text(0))
            sys.exit(State.UNKNOWN)


@click.command(cls=NagiosCommand)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--warning",
    type=click.FloatRange(min=0),
    help="WARNING when a job's watermark lags more than this many minutes behind database now.",
)
@click.option(
    "--critical",
    type=click.FloatRange(min=0),
    help="CRITICAL when a job's watermark lags more than this many minutes.",
)
@click.option("--max-lag", type=click.FloatRange(min=0), help="The same as --critical.")
@pass_context
def status(
    ctx: Context,
    as_json: bool,
    warning: float | None,
    critical: float | None,
    max_lag: float | None,
) -> None:
    """Where each job stands, as a Nagios plugin: first line `XRDAGG STATE - summary | perfdata`.

    OK (exit 0), WARNING (1: a paused job, a lag above --warning), CRITICAL (2: a failed last
    run, a lag above --critical, a job that never ran when a threshold is given, the database
    unreachable), UNKNOWN (3: a configuration error or a bad option). Perfdata: each job's lag in
    seconds.

    Example: xrdagg status --warning 30 --critical 60
    """
    critical = critical if critical is not None else max_lag
    verdict, frame, jobs = _status_verdict(ctx, warning, critical)
    if as_json:
        records = [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            for row in (frame.records() if frame is not None else [])
        ]
        document = {
            "state": verdict.state.name,
            "ok": verdict.state == State.OK,
            "problems": [text for _, text in verdict.problems],
            "jobs": records,
        }
        click.echo(json.dumps(document))
    else:
        click.echo(verdict.text(jobs))
    sys.exit(verdict.state)


def _status_verdict(
    ctx: Context, warning: float | None, critical: float | None
) -> tuple[health.Verdict, Rows | None, int]:
    """The verdict, the job rows it came from and the number of enabled jobs."""
    if warning is not None and critical is not None and warning > critical:
        return health.unknown(f"--warning {warning:g} is above --critical {critical:g}"), None, 0
    try:
        specs = load_job_specs(ctx.settings.jobs_dir)
        engine = ctx.engine
    except XrdaggError as error:
        return health.unknown(f"configuration: {error}"), None, 0
    enabled = sum(1 for s in specs if s.enabled)
    try:
        with engine.connect() as conn:
            frame = job_status(conn)
    except exc.SQLAlchemyError as error:
        if is_unreachable(error):
            verdict = health.Verdict()
            reason = getattr(error, "orig", None) or error
            verdict.add(State.CRITICAL, f"database unreachable: {_one_line(reason)}")
            return verdict, None, enabled
        return health.unknown(f"cannot read the job table: {_one_line(error)}"), None, enabled
    return health.evaluate(frame, specs, warning=warning, critical=critical), frame, enabled


def _one_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


@click.command()
@click.option("--fed-rows", type=click.IntRange(min=0), default=60000, show_default=True)
@click.option("--eos-rows", type=click.IntRange(min=0), default=20000, show_default=True)
@click.option("--days", type=click.FloatRange(min=0.1), default=2.0, show_default=True)
@click.option("--fresh", is_flag=True, help="Empty the raw and statistics tables first.")
@pass_context
@operator_errors
def demo(ctx: Context, fed_rows: int, eos_rows: int, days: float, fresh: bool) -> None:
    """Set up the database, load sample records, run every job and summarise the result.

    On the embedded default this needs no server: a new user sees the whole pipeline.

    Example: xrdagg demo --fed-rows 200000 --days 3
    """
    setup = prepare_demo(
        ctx.engine, ctx.settings, fed_rows=fed_rows, eos_rows=eos_rows, days=days, fresh=fresh
    )
    for line in setup.lines:
        console.print(line)
    jobs = select_jobs(ctx.settings)
    reports = [_print(r) for r in run_jobs(ctx.engine, ctx.settings, jobs)]
    summary = summarise(ctx.engine)
    pairs, share, missing = summary.top_pairs, summary.unresolved_share, summary.unresolved
    invalid, states = summary.invalid, summary.jobs
    read_tb = [round((b or 0) / 1e12, 3) for b in pairs.column("read_bytes")]
    pairs = pairs.select(["source", "src_site", "dst_site", "transfers"])
    console.print("\ntop site pairs by volume read (server -> client):")
    console.print(pairs.with_column("read_TB", read_tb).to_text(), markup=False)
    console.print(
        f"\nunresolved: {share:.1%} of the volume has a side with site 'unknown'; top domains:"
    )
    console.print(missing.to_text(), markup=False)
    console.print("\ninvalid raw rows, excluded:")
    console.print(invalid.to_text(), markup=False)
    console.print("\njobs:")
    console.print(
        states.select(
            ["job_name", "watermark", "lag_minutes", "last_outcome", "last_rows"]
        ).to_text(),
        markup=False,
    )
    if any(r.outcome != "OK" for r in reports):
        sys.exit(1)


@click.command()
@click.argument("jobs", nargs=-1)
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port."
)
@click.option("--metrics-address", default="0.0.0.0", show_default=True)
@pass_context
@operator_errors
def serve(
    ctx: Context, jobs: tuple[str, ...], metrics_port: int | None, metrics_address: str
) -> None:
    """Run JOBS (default: every enabled job) on their schedules until SIGTERM or SIGINT.

    Safe on several hosts against one database: a job's T_AGENT row lock decides who runs it.
    A database outage is retried with backoff; a run in flight finishes before the service stops.

    Example: xrdagg serve --metrics-port 9310
    """
    from xrdagg.service import Metrics, Service

    logging.getLogger("xrdagg").setLevel(logging.INFO)
    specs = select_jobs(ctx.settings, jobs)
    log = logging.getLogger("xrdagg.serve")
    log.info("database %s", ctx.settings.safe_url())
    Service(ctx.engine, ctx.settings, specs, metrics=Metrics(metrics_port, metrics_address)).serve()


COMMANDS = [run, check, status, demo, serve]
