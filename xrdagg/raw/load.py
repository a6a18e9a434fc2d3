"""`xrdagg raw load`: records from CSV, Parquet or JSON lines into T_RAW_FED / T_RAW_EOS.

This is how a site tries xrdagg on its own exports, on the embedded database or a test schema.
It writes only raw tables that xrdagg's migrations created (no XRDAGG_RAW_SCHEMA): in production
the raw tables belong to the collectors, and xrdagg never writes them.

Column names are those of SPEC §1 in any case. Dates are ISO 8601 strings (UTC unless they
carry an offset) or epoch numbers (seconds; values above 1e11 are taken as milliseconds, as the
MONIT and OSG collectors emit). END_DATE/START_DATE missing but END_TIME/START_TIME given are
taken from those. INSERT_DATE is kept when given, database now when absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Numeric, insert, select

from xrdagg.db.dialect import db_now
from xrdagg.db.tables import RAW_COLUMNS, RAW_TABLES, t_raw_fed
from xrdagg.errors import XrdaggError

DATE_COLUMNS = ("start_date", "end_date", "insert_date")
EPOCH_MS_THRESHOLD = 1e11  # epoch seconds reach 1e11 in the year 5138
BATCH_ROWS = 5000


@dataclass
class LoadReport:
    """What a raw load did: rows loaded, and each refused record with its line and reason."""

    rows_read: int = 0
    rows_loaded: int = 0
    problems: list[str] = field(default_factory=list)  # "line N: reason"
    ignored_columns: list[str] = field(default_factory=list)


def read_records(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as a DataFrame of strings/numbers, and what a row number is called in it."""
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".csv", ".csv.gz"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]), "csv"
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), "parquet"
        if suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz"):
            return pd.read_json(path, lines=True, dtype=False, convert_dates=False), "jsonl"
    except (ValueError, OSError) as exc:
        raise XrdaggError(f"{path}: cannot be read ({exc})") from None
    raise XrdaggError(f"{path}: unknown format {suffix!r} (use .csv, .parquet or .jsonl)")


def _line_label(kind: str, index: int) -> str:
    if kind == "csv":
        return f"line {index + 2}"  # line 1 is the header
    return f"line {index + 1}" if kind == "jsonl" else f"row {index + 1}"


class _Problems:
    """Reasons per record index; a record with any reason is not loaded."""

    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self.reasons: dict[int, list[str]] = {}

    def flag(self, mask: pd.Series, reason: str, values: pd.Series | None = None) -> None:
        for i in self.index[mask.fillna(False).to_numpy(dtype=bool)]:
            shown = f" ({values[i]!r})" if values is not None else ""
            self.reasons.setdefault(i, []).append(reason + shown)

    def bad(self) -> pd.Series:
        return pd.Series(self.index.isin(list(self.reasons)), index=self.index)


def prepare(frame: pd.DataFrame, kind: str, now: datetime) -> tuple[pd.DataFrame, LoadReport]:
    """Validate and convert every record; invalid ones are reported and left out of the result."""
    report = LoadReport(rows_read=len(frame))
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    report.ignored_columns = sorted(c for c in frame.columns if c not in RAW_COLUMNS)
    problems = _Problems(frame.index)
    out = pd.DataFrame(index=frame.index)
    for column in RAW_COLUMNS:
        if column in frame.columns:
            values = frame[column]
        else:
            values = pd.Series(None, index=frame.index, dtype=object)
        column_type = t_raw_fed.c[column].type
        present = values.notna() & values.map(lambda v: not (isinstance(v, str) and not v.strip()))
        if column in DATE_COLUMNS:
            out[column] = _dates(values.where(present))
            problems.flag(present & out[column].isna(), f"{column}: not a date", values)
        elif isinstance(column_type, Numeric):
            out[column] = pd.to_numeric(values.where(present), errors="coerce")
            problems.flag(present & out[column].isna(), f"{column}: not a number", values)
        else:
            text = values.where(present).map(lambda v: None if pd.isna(v) else str(v))
            limit = column_type.length  # type: ignore[attr-defined]
            too_long = text.map(lambda v, n=limit: v is not None and len(v.encode()) > n)
            problems.flag(too_long, f"{column}: longer than {limit} bytes")
            out[column] = text
    # Dates from epoch numbers when only those are given (GLED/MONIT exports).
    for date_column, time_column in (("end_date", "end_time"), ("start_date", "start_time")):
        out[date_column] = out[date_column].fillna(_epoch_to_datetime(out[time_column]))
    problems.flag(out["unique_id"].isna(), "unique_id: missing")
    problems.flag(out["end_date"].isna(), "end_date: missing, and no end_time")
    out["insert_date"] = out["insert_date"].fillna(pd.Timestamp(now))
    for index in sorted(problems.reasons):
        report.problems.append(f"{_line_label(kind, index)}: " + "; ".join(problems.reasons[index]))
    good = out[~problems.bad()]
    report.rows_loaded = len(good)
    return good, report


def _epoch_to_datetime(numbers: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(numbers, errors="coerce")
    seconds = numbers.where(numbers < EPOCH_MS_THRESHOLD, numbers / 1000.0)
    return pd.to_datetime(seconds, unit="s", errors="coerce").dt.floor("s")


def _dates(values: pd.Series) -> pd.Series:
    """Epoch numbers or ISO 8601 strings -> naive UTC timestamps (NaT where neither)."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.where(numbers.isna()).map(lambda v: None if pd.isna(v) else str(v))
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    parsed = parsed.dt.tz_convert(None).dt.floor("s")
    return _epoch_to_datetime(numbers).fillna(parsed)


def load_frame(conn: Connection, source: str, frame: pd.DataFrame) -> int:
    """Insert prepared rows into the raw table of `source`, in batches. Returns rows inserted."""
    table = RAW_TABLES[source]
    total = 0
    for start in range(0, len(frame), BATCH_ROWS):
        chunk = frame.iloc[start : start + BATCH_ROWS]
        records = [
            {k: _plain(v) for k, v in row.items()} for row in chunk.to_dict(orient="records")
        ]
        conn.execute(insert(table), records)
        total += len(records)
    return total


def _plain(value: object) -> object:
    """Python values for the driver: NaN/NaT -> None, numpy/pandas scalars -> builtins."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_file(conn: Connection, path: Path, source: str, *, skip_invalid: bool) -> LoadReport:
    """Load a CSV, Parquet or JSON-lines file of raw records into the `source` raw table; returns
    the report (bad records refused one by one, the rest loaded)."""
    frame, kind = read_records(path)
    now = conn.execute(select(db_now())).scalar_one()
    good, report = prepare(frame, kind, now)
    if report.problems and not skip_invalid:
        report.rows_loaded = 0
        return report
    load_frame(conn, source, good)
    return report
