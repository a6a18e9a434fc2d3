"""`xrdagg run`, `check`, `status` and `demo`: the jobs and what they produced."""

from __future__ import annotations

import json
import logging
import sys

import click
import pandas as pd

from xrdagg.commands.common import (
    Context,
    console,
    err_console,
    operator_errors,
    parse_utc,
    pass_context,
)
from xrdagg.jobs.runner import RunReport
from xrdagg.jobs.specs import load_job_specs
from xrdagg.operations import prepare_demo, run_jobs, select_jobs, summarise
from xrdagg.reports import invalid_rows, job_status, since, unresolved


def _print(report: RunReport) -> RunReport:
    (console if report.outcome == "OK" else err_console).print(report.summary(), markup=False)
    return report


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
    reports = [
        _print(r) for r in run_jobs(ctx.engine, ctx.settings, chosen, until=until_at, wait=wait)
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
    """Report invalid raw rows by reason, and unresolved domains, per source.

    Example: xrdagg check --days 1
    """
    with ctx.engine.begin() as conn:
        start = since(conn, days)
        invalid = invalid_rows(conn, start)
        missing = unresolved(conn, start)
    console.print("invalid raw rows (excluded from every statistic, SPEC §6):")
    console.print(invalid.to_string(index=False))
    console.print("\nunresolved domains (site 'unknown'), by raw rows:")
    console.print("(none)" if missing.empty else missing.to_string(index=False))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--max-lag",
    type=click.FloatRange(min=0),
    help="Exit 2 when a job's watermark is more than this many minutes behind database now.",
)
@pass_context
@operator_errors
def status(ctx: Context, as_json: bool, max_lag: float | None) -> None:
    """Where each job stands: watermark, lag behind database now, last run, last error.

    Exit status, for cron or Nagios: 0 when all is well; 2 when an enabled job's last run failed,
    or (with --max-lag) its watermark lags more than MAX_LAG minutes; 3 when the database cannot
    be reached.

    Example: xrdagg status --max-lag 30 --json
    """
    specs = {s.name: s for s in load_job_specs(ctx.settings.jobs_dir)}
    with ctx.engine.connect() as conn:
        frame = job_status(conn)
    problems = []
    for row in frame.itertuples():
        spec = specs.get(row.job_name)
        if spec is None or not spec.enabled:
            continue
        if row.last_outcome == "FAILED":
            problems.append(f"{row.job_name}: last run failed: {row.last_error}")
        lag = row.lag_minutes
        if max_lag is not None and spec.has_watermark and (pd.isna(lag) or lag > max_lag):
            problems.append(f"{row.job_name}: lags {lag} minutes (more than {max_lag})")
    missing = [n for n, s in specs.items() if s.enabled and n not in set(frame.job_name)]
    if max_lag is not None:
        problems += [f"{n}: has never run" for n in missing if specs[n].has_watermark]
    if as_json:
        records = json.loads(frame.to_json(orient="records", date_format="iso"))
        click.echo(json.dumps({"ok": not problems, "problems": problems, "jobs": records}))
    else:
        if frame.empty:
            console.print("no job has run yet")
        else:
            shown = frame.drop(columns=["last_error"]).fillna("-")
            console.print(shown.to_string(index=False))
        for problem in problems:
            err_console.print(f"CRITICAL {problem}", markup=False)
    if problems:
        sys.exit(2)


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
    pairs["read_TB"] = (pairs.pop("read_bytes") / 1e12).round(3)
    console.print("\ntop site pairs by volume read (server -> client):")
    console.print(pairs.to_string(index=False))
    console.print(
        f"\nunresolved: {share:.1%} of the volume has a side with site 'unknown'; top domains:"
    )
    console.print(missing.to_string(index=False))
    console.print("\ninvalid raw rows, excluded:")
    console.print(invalid.to_string(index=False))
    console.print("\njobs:")
    console.print(
        states[["job_name", "watermark", "lag_minutes", "last_outcome", "last_rows"]].to_string(
            index=False
        )
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
