"""A report's DataFrame as a table (rich on a terminal, plain text elsewhere), JSON or CSV.

JSON and CSV carry the numbers as the database summed them (bytes, counts, bytes per second);
only the table shows bytes in readable units.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

_BYTE_COLUMNS = ("bytes", "read_bytes", "write_bytes", "local_read_bytes", "remote_read_bytes")
_RATE_COLUMNS = ("read_rate", "write_rate")


def _plain(value: Any) -> Any:
    """A cell as a JSON value: ISO times, integers as integers, NaN/NA as null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `frame` as JSON-ready dicts, columns in order."""
    columns = list(frame.columns)
    return [
        {c: _plain(v) for c, v in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def to_json(frame: pd.DataFrame) -> str:
    return json.dumps(records(frame), indent=1)


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S")


def human_bytes(value: float) -> str:
    """1234567 -> '1.23 MB' (decimal units, as transfer dashboards show them)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def cell(column: str, value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "-"
    if column in _BYTE_COLUMNS:
        return human_bytes(float(value))
    if column in _RATE_COLUMNS:
        return human_bytes(float(value)) + "/s"
    if column == "share" or column.startswith("share_"):
        return f"{float(value):.1%}"
    return str(value)


def print_table(frame: pd.DataFrame, console: Console, title: str) -> None:
    """`frame` as a rich table on a terminal, as aligned plain text in a pipe or a file."""
    if frame.empty:
        console.print(f"{title}: no statistics in this range", markup=False)
        return
    cells = [[cell(c, v) for c, v in zip(frame.columns, row, strict=True)] for row in
             frame.itertuples(index=False, name=None)]  # fmt: skip
    if console.is_terminal:
        table = Table(title=title)
        for column in frame.columns:
            numeric = pd.api.types.is_numeric_dtype(frame[column])
            table.add_column(column, justify="right" if numeric else "left")
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    shown = pd.DataFrame(cells, columns=list(frame.columns))
    console.print(title, markup=False)
    console.print(shown.to_string(index=False), markup=False)
