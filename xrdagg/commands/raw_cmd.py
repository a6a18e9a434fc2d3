"""`xrdagg raw`: raw records into the raw tables xrdagg created (never the collectors')."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from xrdagg.commands.common import (
    Context,
    console,
    err_console,
    operator_errors,
    parse_utc,
    pass_context,
)
from xrdagg.errors import XrdaggError
from xrdagg.extras import require
from xrdagg.jobs.agent import watermarks
from xrdagg.jobs.specs import load_job_specs

if TYPE_CHECKING:
    from xrdagg.raw.load import LoadReport

SHOWN = 50  # problems and notes printed; the rest are counted

SOURCE = click.option(
    "--source", type=click.Choice(["fed", "eos"]), required=True, help="Which raw table."
)


def _refuse_collector_tables(ctx: Context) -> None:
    if ctx.settings.raw_schema is not None:
        raise XrdaggError(
            f"XRDAGG_RAW_SCHEMA={ctx.settings.raw_schema}: the raw tables belong to the collectors "
            "and xrdagg never writes them; load test data into a database without a raw schema"
        )


@click.group()
def raw() -> None:
    """Raw records in, for trying xrdagg on a site's exports or on sample data.

    Example: xrdagg raw load export.csv --source fed
    """


@raw.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@SOURCE
@click.option(
    "--skip-invalid", is_flag=True, help="Load the valid records even when some are malformed."
)
@pass_context
@operator_errors
def load(ctx: Context, file: Path, source: str, skip_invalid: bool) -> None:
    """Load records from CSV, JSON lines (either may be .gz) or Parquet, in batches.

    Columns: SPEC §1 names in any case, or MONIT/CMSMonitoring record names (vo, user,
    site_name, ...). Dates: native Parquet timestamps (any unit, any time zone), ISO 8601 (UTC
    unless an offset is given) or epoch s/ms/us/ns; INSERT_DATE defaults to database now. A
    record whose UNIQUE_ID is already loaded (or earlier in the file) is skipped, so loading a
    file twice loads it once. A malformed record is reported with its line and reason, and then
    nothing is loaded unless --skip-invalid. Loaded rows at or behind a job's watermark are
    counted by no run: the command says so, and which `xrdagg audit --repair` counts them.

    Example: xrdagg raw load aaa-2024-03-01.jsonl.gz --source fed --skip-invalid
    """
    _refuse_collector_tables(ctx)
    require("pandas", "xrdagg raw load")
    if file.suffix.lower() in (".parquet", ".pq"):
        require("pyarrow", "xrdagg raw load of a Parquet file")
    from xrdagg.raw.load import load_file  # pandas: the `data` extra

    jobs = [j.name for j in load_job_specs(ctx.settings.jobs_dir) if j.source == source]
    with ctx.engine.connect() as conn:
        transaction = conn.begin()
        marks = [w for name, w in watermarks(conn).items() if name in jobs and w is not None]
        watermark = min(marks) if marks else None
        report = load_file(conn, file, source, skip_invalid=skip_invalid, watermark=watermark)
        if report.rows_refused and not skip_invalid:
            transaction.rollback()
        else:
            transaction.commit()
    _print_report(file, source, report, skip_invalid, watermark)


def _print_report(
    file: Path, source: str, report: LoadReport, skip_invalid: bool, watermark: object
) -> None:
    if report.renamed_columns:
        names = ", ".join(f"{a} -> {b}" for a, b in sorted(report.renamed_columns.items()))
        err_console.print(f"{file}: MONIT record names read as SPEC §1 columns: {names}")
    if report.ignored_columns:
        err_console.print(
            f"{file}: columns not in SPEC §1, ignored: {', '.join(report.ignored_columns)}"
        )
    for problem in report.problems[:SHOWN]:
        err_console.print(f"{file} {problem}", markup=False)
    if report.rows_refused > SHOWN:
        err_console.print(f"{file}: … and {report.rows_refused - SHOWN} more malformed records")
    if report.rows_refused and not skip_invalid:
        raise XrdaggError(
            f"{file}: {report.rows_refused} of {report.rows_read} records are malformed; nothing "
            "loaded (--skip-invalid loads the others)"
        )
    for note in report.notes[:SHOWN]:
        err_console.print(f"{file} {note}", markup=False)
    if report.notes_total > SHOWN:
        err_console.print(f"{file}: … and {report.notes_total - SHOWN} more rows skipped or fixed")
    skipped = f", {report.duplicates} already loaded (skipped)" if report.duplicates else ""
    refused = f", {report.rows_refused} malformed (skipped)" if report.rows_refused else ""
    console.print(
        f"{file}: {report.rows_loaded} of {report.rows_read} records loaded "
        f"into T_RAW_{source.upper()}{skipped}{refused}"
    )
    if report.behind and report.behind_first and report.behind_last:
        err_console.print(
            f"warning: {report.behind} loaded record(s) have an INSERT_DATE at or before the "
            f"watermark of the {source} job ({watermark}): no run will count them. Count them "
            f"with: xrdagg audit --repair --source {source} "
            f"--from {report.behind_first:%Y-%m-%d} --to {report.behind_last:%Y-%m-%d}",
            markup=False,
        )


@raw.command()
@SOURCE
@click.option("--rows", type=click.IntRange(min=1), default=10000, show_default=True)
@click.option(
    "--start",
    default="2024-03-01",
    show_default=True,
    help="First day of the transfers' end times (UTC).",
)
@click.option("--days", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@pass_context
@operator_errors
def generate(ctx: Context, source: str, rows: int, start: str, days: float, seed: int) -> None:
    """Fill a raw table with realistic synthetic records (see xrdagg.raw.generate).

    Example: xrdagg raw generate --source eos --rows 50000 --days 2
    """
    _refuse_collector_tables(ctx)
    require("pandas", "xrdagg raw generate")
    from xrdagg.raw.generate import generate as generate_records  # pandas: the `data` extra
    from xrdagg.raw.load import load_frame

    first_day = parse_utc(start, "--start") or datetime(2024, 3, 1)
    frame = generate_records(rows, start=first_day, days=days, seed=seed, source=source)
    with ctx.engine.begin() as conn:
        loaded = load_frame(conn, source, frame)
    console.print(f"{loaded} synthetic records loaded into T_RAW_{source.upper()}")
