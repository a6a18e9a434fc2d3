"""`xrdagg report KIND`: the statistics as a table, JSON, CSV or a picture; `report html`: one
self-contained page with all of them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select

from xrdagg.commands.common import Context, console, operator_errors, parse_utc, pass_context
from xrdagg.db.dialect import db_now
from xrdagg.extras import require
from xrdagg.report.kinds import FORMATS, KINDS
from xrdagg.rules import midnight

if TYPE_CHECKING:
    from xrdagg.report import query

_EXAMPLES = {
    "matrix": "xrdagg report matrix --from 2024-03-01 --to 2024-03-31 --source fed --format json",
    "throughput": 'xrdagg report throughput --from "2024-03-01 06:00" --to "2024-03-01 18:00" '
    "--site CERN-PROD --plot throughput.png",
    "users": "xrdagg report users --from 2024-03-01 --to 2024-03-07 --vo cms --top 10",
    "sites": "xrdagg report sites --from 2024-03-01 --to 2024-03-07 --site CERN-PROD",
    "access": "xrdagg report access --from 2024-03-01 --to 2024-03-01 --plot access.svg",
    "unresolved": "xrdagg report unresolved --from 2024-03-01 --to 2024-03-07 --format csv",
}
_SUMMARIES = {
    "matrix": "Site × site: bytes read and written, and transfers ended, per site pair.",
    "throughput": "Bytes per second over time, stacked by site pair (T_STATS_AVG).",
    "users": "Top users by bytes read (T_USER_ACTIVITY, FED).",
    "sites": "Per site and day: local and remote reads, writes, transfers, users (MV_SITE_STATS).",
    "access": "Accesses by fraction of the file read, per site pair (access pattern, FED).",
    "unresolved": "Domains that resolve to no site: example hosts, rows, bytes, share of volume.",
}


def _range_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--from",
            "start",
            help="First day or time, UTC ('YYYY-MM-DD[ HH:MM[:SS]]'). Default: 7 days before --to.",
        ),
        click.option(
            "--to",
            "end",
            help="Last day (included) or an end time (excluded), UTC. Default: today.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--site", help="Only pairs with this site on either side (a GOCDB name)."),
        click.option("--src-site", help="Only this server (source) site."),
        click.option("--dst-site", help="Only this client (destination) site."),
        click.option("--vo", help="Only this VO (e.g. cms, atlas)."),
        click.option("--source", type=click.Choice(["fed", "eos"]), help="Only FED or EOS rows."),
        click.option(
            "--names",
            type=click.Choice(["gocdb", "vo"]),
            default="gocdb",
            show_default=True,
            help="Show sites by their GOCDB names, or by their VO's names (T_SITE_VO_NAME).",
        ),
        click.option("--top", type=click.IntRange(min=1), help="Only the N largest rows."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _day_or_time(value: str, option: str) -> tuple[datetime, bool]:
    parsed = parse_utc(value, option)
    assert parsed is not None
    return parsed, len(value.strip()) == len("YYYY-MM-DD")


def resolve_range(ctx: Context, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """[start, end) from --from/--to: a bare day in --to includes that day; defaults: the seven
    days up to today (UTC, the database's clock)."""
    if end is None:
        with ctx.engine.connect() as conn:
            now = conn.execute(select(db_now())).scalar_one()
        upper = midnight(now) + timedelta(days=1)
    else:
        upper, is_day = _day_or_time(end, "--to")
        upper += timedelta(days=1) if is_day else timedelta(0)
    lower = upper - timedelta(days=7) if start is None else _day_or_time(start, "--from")[0]
    if lower >= upper:
        raise click.BadParameter(
            f"the range {lower:%Y-%m-%d %H:%M:%S} – {upper:%Y-%m-%d %H:%M:%S} is empty",
            param_hint="--from/--to",
        )
    return lower, upper


def _filters(lower: datetime, upper: datetime, options: dict[str, Any]) -> query.Filters:
    # The reports are pandas frames: a base install says which extra to add, and nothing else
    # of the command line needs pandas to start.
    require("pandas", "xrdagg report")
    from xrdagg.report import query

    return query.Filters(
        start=lower,
        end=upper,
        site=options["site"],
        src_site=options["src_site"],
        dst_site=options["dst_site"],
        vo=options["vo"].lower() if options["vo"] else None,
        source=options["source"].upper() if options["source"] else None,
        names=options["names"],
        top=options["top"],
    )


def _make_command(kind: str) -> click.Command:
    @click.command(name=kind, help=f"{_SUMMARIES[kind]}\n\nExample: {_EXAMPLES[kind]}")
    @_range_options
    @_filter_options
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table (rich on a terminal), json (a list of objects) or csv.",
    )
    @click.option(
        "--plot",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also draw it into FILE (.png or .svg); needs the 'plots' extra.",
    )
    @pass_context
    @operator_errors
    def command(
        ctx: Context,
        start: str | None,
        end: str | None,
        fmt: str,
        plot: Path | None,
        **filters: Any,
    ) -> None:
        lower, upper = resolve_range(ctx, start, end)
        chosen = _filters(lower, upper, filters)
        from xrdagg.report import output, query

        with ctx.engine.connect() as conn:
            frame = query.QUERIES[kind](conn, chosen)
        title = f"{kind}, {lower:%Y-%m-%d %H:%M} – {upper:%Y-%m-%d %H:%M} UTC"
        if plot is not None:
            from xrdagg.report import plots

            plots.save(plots.draw(kind, frame, title), plot)
        if fmt == "json":
            click.echo(output.to_json(frame))
        elif fmt == "csv":
            click.echo(output.to_csv(frame), nl=False)
        else:
            output.print_table(frame, console, title)

    return command


@click.command(name="html")
@_range_options
@_filter_options
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write index.html into (created if missing).",
)
@pass_context
@operator_errors
def html_page(
    ctx: Context, start: str | None, end: str | None, out_dir: Path, **filters: Any
) -> None:
    """One self-contained HTML page with every report of the range (charts embedded), the
    unresolved domains and the data-quality tables: for a day or a week.

    Example: xrdagg report html --from 2024-03-01 --to 2024-03-07 --out report/
    """
    lower, upper = resolve_range(ctx, start, end)
    chosen = _filters(lower, upper, filters)
    from xrdagg.report.html import write_page

    with ctx.engine.connect() as conn:
        now = conn.execute(select(db_now())).scalar_one()
        path = write_page(conn, chosen, out_dir, now)
    console.print(f"wrote {path}", markup=False)


@click.group()
def report() -> None:
    """The statistics as tables, JSON, CSV, pictures, or one HTML page.

    A range of whole days (--from DAY --to DAY) reads the daily tables; a range with times
    reads the 10-minute tables. Times are UTC.

    Example: xrdagg report matrix --from 2024-03-01 --to 2024-03-07 --top 20
    """


for _kind in KINDS:
    report.add_command(_make_command(_kind))
report.add_command(html_page)
