"""`xrdagg report html`: one self-contained HTML page (charts as inline SVG, inline CSS, no
script and no link out of the file) with every report of a range, the unresolved domains and the
data-quality tables."""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection

from xrdagg.report import plots, query
from xrdagg.report.kinds import KINDS
from xrdagg.report.output import cell
from xrdagg.reports import Rows, invalid_rows, job_status

PAGE_NAME = "index.html"

_STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
th { background: #f3f3f3; } td.n { text-align: right; }
.chart svg { max-width: 100%; height: auto; }
p.note { color: #555; font-size: 0.9em; }
"""


def _frame(rows: Rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows.rows), columns=list(rows.columns))


def _table(frame: pd.DataFrame, limit: int = 25) -> str:
    """An HTML table of `frame` (bytes in readable units), escaped."""
    if frame.empty:
        return '<p class="note">none in this range</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.head(limit).itertuples(index=False, name=None):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            numeric = pd.api.types.is_numeric_dtype(frame[column])
            css = ' class="n"' if numeric else ""
            cells.append(f"<td{css}>{html.escape(cell(column, value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = len(frame) - limit
    note = f'<p class="note">and {more} more rows</p>' if more > 0 else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}"


def _chart(kind: str, frame: pd.DataFrame, title: str) -> str:
    svg = plots.inline_svg(plots.draw(kind, frame, title))
    return f'<div class="chart" id="chart-{kind}">{svg}</div>'


def build_page(conn: Connection, filters: query.Filters, generated_at: datetime) -> str:
    """The page's HTML for `filters` (its range and filters; each section its own top N)."""
    span = f"{filters.start:%Y-%m-%d %H:%M} – {filters.end:%Y-%m-%d %H:%M} UTC"
    frames = {kind: query.QUERIES[kind](conn, filters) for kind in KINDS}
    pairs = replace(filters, top=15)
    jobs = _frame(
        job_status(conn).select(
            ["job_name", "watermark", "lag_minutes", "paused_by", "last_outcome"]
        )
    )
    invalid = _frame(invalid_rows(conn, filters.start))
    sections = [
        f"<h1>xrdagg statistics, {html.escape(span)}</h1>",
        f'<p class="note">generated {generated_at:%Y-%m-%d %H:%M} UTC from the statistics '
        "tables; volumes are bytes read from the server site by the client site.</p>",
        "<h2>Transfer matrix</h2>",
        _chart("matrix", frames["matrix"], "bytes read, server site × client site"),
        _table(query.matrix(conn, pairs)),
        "<h2>Throughput over time</h2>",
        _chart("throughput", frames["throughput"], "read throughput by site pair"),
        "<h2>Access pattern</h2>",
        _chart("access", frames["access"], "accesses by fraction of the file read"),
        "<h2>Site statistics</h2>",
        _chart("sites", frames["sites"], "bytes read from each site"),
        "<h2>Top users</h2>",
        _table(frames["users"]),
        "<h2>Unresolved domains</h2>",
        '<p class="note">hosts that resolve to no site (site <code>unknown</code>): add them '
        "to the topology and run <code>xrdagg topology apply</code>.</p>",
        _table(frames["unresolved"]),
        "<h2>Data quality</h2>",
        "<h3>Jobs</h3>",
        _table(jobs),
        f"<h3>Invalid raw rows ending since {filters.start:%Y-%m-%d %H:%M} "
        "(excluded from every statistic)</h3>",
        _table(invalid),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>xrdagg statistics {html.escape(span)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_page(conn: Connection, filters: query.Filters, out_dir: Path, now: datetime) -> Path:
    """Write the page into `out_dir` (created if missing) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PAGE_NAME
    path.write_text(build_page(conn, filters, now), encoding="utf-8")
    return path
