"""`xrdagg raw`: raw records into the raw tables xrdagg created (never the collectors')."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

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
from xrdagg.raw.generate import generate as generate_records
from xrdagg.raw.load import load_file, load_frame

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
    """Load records from CSV, Parquet or JSON lines (SPEC §1 column names, any case).

    Dates are ISO 8601 (UTC) or epoch seconds; INSERT_DATE defaults to database now. A malformed
    record is reported with its line and reason, and then nothing is loaded unless --skip-invalid.

    Example: xrdagg raw load aaa-2024-03-01.jsonl --source fed --skip-invalid
    """
    _refuse_collector_tables(ctx)
    with ctx.engine.begin() as conn:
        report = load_file(conn, file, source, skip_invalid=skip_invalid)
    if report.ignored_columns:
        err_console.print(
            f"{file}: columns not in SPEC §1, ignored: {', '.join(report.ignored_columns)}"
        )
    for problem in report.problems[:50]:
        err_console.print(f"{file} {problem}")
    if len(report.problems) > 50:
        err_console.print(f"{file}: … and {len(report.problems) - 50} more malformed records")
    if report.problems and not skip_invalid:
        raise XrdaggError(
            f"{file}: {len(report.problems)} of {report.rows_read} records are malformed; nothing "
            "loaded (--skip-invalid loads the others)"
        )
    console.print(
        f"{file}: {report.rows_loaded} of {report.rows_read} records loaded "
        f"into T_RAW_{source.upper()}"
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
    first_day = parse_utc(start, "--start") or datetime(2024, 3, 1)
    frame = generate_records(rows, start=first_day, days=days, seed=seed, source=source)
    with ctx.engine.begin() as conn:
        loaded = load_frame(conn, source, frame)
    console.print(f"{loaded} synthetic records loaded into T_RAW_{source.upper()}")
