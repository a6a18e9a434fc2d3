"""A first look at the statistics as a picture: read throughput over time, per source (the
`plots` extra, matplotlib). Dashboards are the real consumers; this is for a new user's demo
and an operator's quick check, without a dashboard at hand.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, func, select

from xrdagg.db.tables import t_stats_avg
from xrdagg.extras import require
from xrdagg.reports import Rows
from xrdagg.rules import BIN_SECONDS

ROLES = ("server", "client")


def throughput(
    conn: Connection,
    *,
    site: str | None = None,
    role: str = "server",
    start: datetime | None = None,
) -> Rows:
    """Bytes read per 10-minute bin and source (bin_start, source, read_bytes), from T_STATS_AVG;
    only the transfers with `site` on the `role` side ('server' = SRC_SITE), when given."""
    avg = t_stats_avg
    statement = select(
        avg.c.bin_start, avg.c.source, func.sum(avg.c.read_bytes).label("read_bytes")
    ).group_by(avg.c.bin_start, avg.c.source)
    if site is not None:
        side = avg.c.src_site if role == "server" else avg.c.dst_site
        statement = statement.where(side == site)
    if start is not None:
        statement = statement.where(avg.c.bin_start >= start)
    return Rows.query(conn, statement.order_by(avg.c.bin_start, avg.c.source))


def draw_throughput(series: Rows, path: Path, title: str) -> None:
    """A PNG (or any format matplotlib knows by `path`'s suffix) of `series`: MB/s per source."""
    matplotlib = require("matplotlib", "xrdagg plot")
    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4), layout="constrained")
    for source in sorted(set(series.column("source"))):
        points = [r for r in series.records() if r["source"] == source]
        axes.plot(
            [p["bin_start"] for p in points],
            [(p["read_bytes"] or 0) / BIN_SECONDS / 1e6 for p in points],
            label=source,
            linewidth=1,
        )
    axes.set_title(title)
    axes.set_ylabel("read throughput (MB/s)")
    axes.set_xlabel("UTC")
    axes.grid(alpha=0.3)
    if series.rows:
        axes.legend()
    figure.autofmt_xdate()
    figure.savefig(path, dpi=100)
    plt.close(figure)
