"""`xrdagg audit`: compare the statistics with the raw rows under the watermark, day by day."""

from __future__ import annotations

import json
import sys

import click
from sqlalchemy import exc

from xrdagg.commands.common import Context, console, err_console, parse_utc, pass_context
from xrdagg.errors import XrdaggError
from xrdagg.jobs.audit import AuditResult
from xrdagg.operations import audit_statistics
from xrdagg.rules import midnight

# Exit status: the audit's answer, or that it could not give one.
CONSISTENT, DIFFERENT, FAILED = 0, 1, 2


@click.command()
@click.option(
    "--from", "day_from", help="First day to audit (UTC, YYYY-MM-DD; default: the first)."
)
@click.option("--to", "day_to", help="Last day to audit, included (default: the last).")
@click.option(
    "--source",
    "sources",
    type=click.Choice(["fed", "eos"]),
    multiple=True,
    help="Only this source (repeatable; default: both).",
)
@click.option("--repair", is_flag=True, help="Rebuild the days that differ (through recompute).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --repair: chunks rebuilt at once (PostgreSQL, Oracle).",
)
@click.option(
    "--duplicates",
    is_flag=True,
    help="Also count raw rows whose UNIQUE_ID is there more than once (a costlier scan).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def audit(
    ctx: Context,
    day_from: str | None,
    day_to: str | None,
    sources: tuple[str, ...],
    repair: bool,
    workers: int,
    duplicates: bool,
    as_json: bool,
) -> None:
    """Find the days whose statistics differ from the raw rows under the jobs' watermarks.

    Per source and UTC day, counts and sums the statistics hold (transfers ended and active,
    active seconds, messages, their bins; FED: accesses and read bytes) are compared with the
    same over the valid raw rows with INSERT_DATE <= the job's watermark: rows that arrived
    behind the watermark, and rows deleted after they were counted, show up as days that differ.
    No statistic is recomputed. --repair rebuilds exactly those days, as `xrdagg recompute` does,
    and rolls the daily tables up. Exit status: 0 consistent, 1 days differed (and were
    repaired, with --repair) or --duplicates found some, 2 the audit or the repair failed, or a
    source could not be audited (its job is paused by a recompute).

    Example: xrdagg audit --from 2024-03-01 --to 2024-03-31 --repair
    """
    try:
        first, last = parse_utc(day_from, "--from"), parse_utc(day_to, "--to")
        first = first and midnight(first)
        last = last and midnight(last)
        if first and last and last < first:
            raise click.BadParameter("--to is before --from", param_hint="--to")
        if repair and workers > 1 and ctx.settings.backend == "sqlite":
            raise click.BadParameter(
                "SQLite has one writer at a time, so more workers would only wait on its lock",
                param_hint="--workers",
            )
        outcome = audit_statistics(
            ctx.engine,
            ctx.settings,
            sources=sources,
            day_from=first,
            day_to=last,
            repair=repair,
            workers=workers,
            duplicates=duplicates,
        )
    except click.ClickException as error:
        error.show()
        sys.exit(FAILED)
    except (XrdaggError, exc.SQLAlchemyError) as error:
        detail = error.orig if isinstance(error, exc.DBAPIError) else error
        err_console.print(f"[red]audit failed:[/red] {detail}", markup=True, highlight=False)
        sys.exit(FAILED)
    found, after = outcome.found, outcome.after
    if as_json:
        document = found.as_dict()
        if after is not None:
            document["after_repair"] = after.as_dict()
        console.print(json.dumps(document, indent=2), markup=False)
    else:
        _print(found)
        for report in outcome.daily:
            console.print(report.summary(), markup=False)
        if after is not None:
            console.print(f"after the repair: {after.summary()}", markup=False)
    if after is not None and not after.consistent:
        err_console.print("the repair left days that still differ (see above)")
        sys.exit(FAILED)
    if found.skipped:
        sys.exit(FAILED)
    sys.exit(CONSISTENT if found.consistent and not found.duplicates else DIFFERENT)


def _print(result: AuditResult) -> None:
    for name, watermark in sorted(result.watermarks.items()):
        shown = "never ran" if watermark is None else f"{watermark:%Y-%m-%d %H:%M:%S}"
        console.print(
            f"{name}: watermark {shown}, {result.days_checked.get(name, 0)} day(s) checked",
            markup=False,
        )
    for difference in result.differences:
        checks = ", ".join(
            f"{check} raw {raw:g} stats {stats:g}"
            for check, (raw, stats) in sorted(difference.checks.items())
        )
        console.print(
            f"{difference.source} {difference.day:%Y-%m-%d}: {difference.reason} [{checks}]",
            markup=False,
        )
    for (source, day), copies in sorted(result.duplicates.items()):
        console.print(
            f"{source} {day:%Y-%m-%d}: {copies} raw row(s) repeat a UNIQUE_ID of that day "
            "(counted as often as they are there; not repaired: raw tables are the collectors')",
            markup=False,
        )
    console.print(f"audit: {result.summary()}", markup=False)
