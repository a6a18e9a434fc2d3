"""Pictures of the reports: the matrix as a heatmap, throughput as a time series stacked by site
pair, the access pattern as bars, and bars for the other kinds.

matplotlib is the optional `plots` extra (`pip install 'xrdagg[plots]'`); without it, asking for
a picture says so. Figures are built with matplotlib's object API (no pyplot state), so nothing
here needs a display.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from xrdagg.report.query import FRACTIONS, ReportError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

EXTRA_MESSAGE = (
    "plots need matplotlib, the optional 'plots' extra of xrdagg: pip install 'xrdagg[plots]'"
)
FORMATS = {".png": "png", ".svg": "svg"}
_FRACTION_LABELS = ("< 10 %", "10–50 %", "50–100 %", "≥ 100 %", "size unknown")


def _figure(width: float = 9, height: float = 5) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ReportError(EXTRA_MESSAGE) from error
    return Figure(figsize=(width, height), layout="constrained")


def _empty(fig: Figure, title: str) -> Figure:
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, "no statistics in this range", ha="center", va="center")
    ax.set_axis_off()
    return fig


def _bytes_axis(ax: Any, axis: str = "x", per_second: bool = False) -> None:
    from matplotlib.ticker import FuncFormatter

    from xrdagg.report.output import human_bytes

    suffix = "/s" if per_second else ""
    formatter = FuncFormatter(lambda v, _pos: human_bytes(v) + suffix)
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(formatter)


def matrix(frame: pd.DataFrame, title: str, sites: int = 20) -> Figure:
    """Heatmap of read bytes, servers (rows) by clients (columns), the busiest `sites` of each."""
    fig = _figure(10, 8)
    if frame.empty:
        return _empty(fig, title)
    from matplotlib.colors import LogNorm

    servers = frame.groupby("src_site")["read_bytes"].sum().nlargest(sites).index
    clients = frame.groupby("dst_site")["read_bytes"].sum().nlargest(sites).index
    shown = frame[frame.src_site.isin(servers) & frame.dst_site.isin(clients)]
    grid = shown.pivot_table(
        index="src_site", columns="dst_site", values="read_bytes", aggfunc="sum"
    ).reindex(index=list(servers), columns=list(clients))
    ax = fig.subplots()
    values = grid.to_numpy(dtype=float)
    positive = values[values > 0]
    norm = LogNorm(positive.min(), positive.max()) if positive.size else None
    image = ax.imshow(values, cmap="viridis", norm=norm, aspect="auto")
    ax.set_xticks(range(len(clients)), labels=list(clients), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(servers)), labels=list(servers), fontsize=8)
    ax.set_xlabel("client site (destination)")
    ax.set_ylabel("server site (source)")
    ax.set_title(title)
    bar = fig.colorbar(image, ax=ax, label="bytes read")
    _bytes_axis(bar.ax, "y")
    return fig


def throughput(frame: pd.DataFrame, title: str) -> Figure:
    """Read throughput (bytes/s) over time, stacked by site pair."""
    fig = _figure(11, 5)
    if frame.empty:
        return _empty(fig, title)
    pairs = frame.assign(pair=frame.src_site + " → " + frame.dst_site)
    grid = pairs.pivot_table(
        index="time", columns="pair", values="read_rate", aggfunc="sum", fill_value=0.0
    ).sort_index()
    grid = grid[grid.sum().sort_values(ascending=False).index]
    ax = fig.subplots()
    ax.stackplot(grid.index.to_pydatetime(), grid.to_numpy().T, labels=list(grid.columns))
    ax.set_ylabel("read throughput")
    _bytes_axis(ax, "y", per_second=True)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.autofmt_xdate()
    return fig


def access(frame: pd.DataFrame, title: str, pairs: int = 15) -> Figure:
    """Per site pair, the shares of accesses by fraction of the file read, as stacked bars."""
    fig = _figure(10, 6)
    if frame.empty:
        return _empty(fig, title)
    shown = frame.head(pairs).iloc[::-1]
    labels = list(shown.src_site + " → " + shown.dst_site)
    ax = fig.subplots()
    left = pd.Series(0.0, index=shown.index)
    for column, label in zip(FRACTIONS, _FRACTION_LABELS, strict=True):
        share = shown[column.replace("n_frac", "share")]
        ax.barh(labels, share, left=left, label=label)
        left += share
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of accesses, by fraction of the file read")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def _bars(frame: pd.DataFrame, title: str, label: str, value: str, xlabel: str) -> Figure:
    fig = _figure(10, 6)
    if frame.empty:
        return _empty(fig, title)
    shown = frame.head(20).iloc[::-1]
    ax = fig.subplots()
    ax.barh([str(v)[-60:] for v in shown[label]], shown[value])
    _bytes_axis(ax, "x")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=8)
    return fig


def users(frame: pd.DataFrame, title: str) -> Figure:
    return _bars(frame, title, "user_dn", "read_bytes", "bytes read")


def sites(frame: pd.DataFrame, title: str) -> Figure:
    totals = (
        frame[frame.role == "SERVER"]
        .groupby("site", as_index=False)["read_bytes"]
        .sum()
        .sort_values("read_bytes", ascending=False)
    )
    return _bars(totals, title, "site", "read_bytes", "bytes read from the site (as server)")


def unresolved(frame: pd.DataFrame, title: str) -> Figure:
    labelled = frame.assign(label=frame.side + ": " + frame.domain)
    return _bars(labelled, title, "label", "bytes", "bytes with this side unresolved")


FIGURES = {
    "matrix": matrix,
    "throughput": throughput,
    "users": users,
    "sites": sites,
    "access": access,
    "unresolved": unresolved,
}


def draw(kind: str, frame: pd.DataFrame, title: str) -> Figure:
    """The figure of a report kind."""
    return FIGURES[kind](frame, title)


def save(fig: Figure, path: Path) -> None:
    """Write `fig` as PNG or SVG, chosen by the file's suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ReportError(f"--plot {path}: the file must end in .png or .svg")
    fig.savefig(path, format=fmt, dpi=110)


def inline_svg(fig: Figure) -> str:
    """`fig` as an <svg> element to embed in an HTML page (no XML prologue)."""
    out = io.StringIO()
    fig.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg") :]
