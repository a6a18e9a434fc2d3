"""`xrdagg plot`: the statistics as a picture, for a first look without a dashboard."""

from __future__ import annotations

from pathlib import Path

import click

from xrdagg.commands.common import Context, console, operator_errors, pass_context
from xrdagg.extras import require
from xrdagg.plots import ROLES, draw_throughput, throughput
from xrdagg.reports import since


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default="throughput.png",
    show_default=True,
    help="The picture to write (PNG, or SVG/PDF by the suffix).",
)
@click.option("--site", help="Only transfers with this site on the --role side.")
@click.option("--role", type=click.Choice(ROLES), default="server", show_default=True)
@click.option("--days", type=click.FloatRange(min=0), help="Only the last DAYS days.")
@pass_context
@operator_errors
def plot(ctx: Context, out: Path, site: str | None, role: str, days: float | None) -> None:
    """Draw the read throughput over time, per source, from T_STATS_AVG (needs the `plots`
    extra: pip install 'xrdagg[plots]').

    Example: xrdagg plot --site CERN-PROD --role server --days 2 --out cern.png
    """
    require("matplotlib", "xrdagg plot")  # before reading anything
    with ctx.engine.connect() as conn:
        series = throughput(conn, site=site, role=role, start=since(conn, days))
    title = "read throughput" + (f", {site} as {role}" if site else ", all sites")
    draw_throughput(series, out, title)
    console.print(f"{out}: {len(series)} points (10-minute bins x sources)")
