"""`xrdagg raw load`: records from CSV, Parquet or JSON lines into T_RAW_FED / T_RAW_EOS.

This is how a site tries xrdagg on its own exports, on the embedded database or a test schema.
It writes only raw tables that xrdagg's migrations created (no XRDAGG_RAW_SCHEMA): in production
the raw tables belong to the collectors, and xrdagg never writes them.

- **Formats**: CSV and JSON lines, plain or gzip-compressed (`.csv.gz`, `.jsonl.gz`), and
  Parquet (with the optional `pyarrow`: `pip install 'xrdagg[parquet]'`). Files are read in
  batches of BATCH_ROWS records, so memory stays flat on a file of millions of rows.
- **Column names**: those of SPEC §1 in any case, and the MONIT / CMSMonitoring record names
  (`MONIT_NAMES`: `vo` -> USER_VO, `user` -> USER_DN, `site_name` -> SERVER_SITE, ...). A
  MONIT document's `data` object is read as the record, and its `metadata.timestamp` (when the
  record reached MONIT) as INSERT_DATE when the record has none.
- **Dates**: native timestamps (Arrow/Parquet `timestamp[s|ms|us|ns]`, naive = UTC, or with a
  time zone, converted to UTC), epoch numbers (seconds; milliseconds, microseconds and
  nanoseconds recognised by size, as MONIT and OSG collectors emit them) and ISO 8601 strings
  (UTC unless they carry an offset). Digits that also read as a calendar date (20240301) are
  refused as ambiguous, naming the line. END_DATE/START_DATE missing but END_TIME/START_TIME given
  are taken from those. INSERT_DATE is kept when given, database now when absent.
- **Idempotent**: a record whose UNIQUE_ID is already in the raw table, or earlier in the file,
  is reported and skipped: loading a file twice loads it once.
- **Odd text** is normalised, and each row where that happened is reported: bytes that are not
  UTF-8 become U+FFFD, control characters are removed (tab and line breaks become spaces).
  A value longer than its column is refused, by row, as is a number or date that is none, and
  an infinite number.
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Numeric, insert, select

from xrdagg.db.dialect import db_now
from xrdagg.db.tables import RAW_COLUMNS, RAW_TABLES, t_raw_fed
from xrdagg.errors import XrdaggError

DATE_COLUMNS = ("start_date", "end_date", "insert_date")
# Epoch numbers by size: seconds reach 1e11 only in the year 5138.
EPOCH_MS_THRESHOLD = 1e11
EPOCH_US_THRESHOLD = 1e14
EPOCH_NS_THRESHOLD = 1e17
BATCH_ROWS = 5000
MAX_REPORTED = 1000  # problems and notes kept for the operator; the rest only counted
IN_LIST_MAX = 1000  # Oracle's limit of items in one IN list

# MONIT / CMSMonitoring (WLCG "generic file monitoring") and OSG collector record names that
# differ from SPEC §1's. The WLCG records use SPEC §1's own names in lower case besides these.
MONIT_NAMES = {
    "vo": "user_vo",
    "user": "user_dn",
    "site_name": "server_site",
    "site": "server_site",
    "server_hostname": "server_host",
    "host": "client_host",
    "user_domain": "client_domain",
    "filename": "file_lfn",
    "filesize": "file_size",
    "appinfo": "app_info",
    "protocol": "user_protocol",
    "fqan": "user_fqan",
    "role": "user_role",
    "write": "write_bytes",
}
_SPACES = re.compile(r"[\t\n\r]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Anything `_text` may change: controls, U+FFFD, lone surrogates (JSON escapes of bad bytes).
_ODD = re.compile("[\x00-\x1f\x7f\ufffd\ud800-\udfff]")


@dataclass
class LoadReport:
    """What a raw load did: rows loaded, refused (with line and reason), skipped as already
    loaded, normalised, and where loaded rows fall behind a job's watermark."""

    rows_read: int = 0
    rows_loaded: int = 0
    rows_refused: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)  # "line N: reason" (first MAX_REPORTED)
    notes: list[str] = field(default_factory=list)  # duplicates and normalised values, by row
    notes_total: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    renamed_columns: dict[str, str] = field(default_factory=dict)  # MONIT name -> SPEC §1
    # Loaded rows with INSERT_DATE <= the watermark, and the days they touch.
    behind: int = 0
    behind_first: datetime | None = None
    behind_last: datetime | None = None

    def note(self, line: str) -> None:
        """Record one note (a row skipped or normalised), keeping the first MAX_REPORTED."""
        self.notes_total += 1
        if len(self.notes) < MAX_REPORTED:
            self.notes.append(line)


# --- reading ------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    if path.suffix.lower() == ".gz":
        return "".join(path.suffixes[-2:]).lower()
    return path.suffix.lower()


def read_batches(path: Path) -> tuple[Iterator[pd.DataFrame], str]:
    """The file's records in DataFrames of at most BATCH_ROWS rows, indexed by record number
    (0-based, across batches), and what a row number is called in it ('csv', 'jsonl',
    'parquet')."""
    suffix = _suffix(path)
    if suffix in (".csv", ".csv.gz"):
        return _guarded(path, _csv(path)), "csv"
    if suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz"):
        return _guarded(path, _json_lines(path)), "jsonl"
    if suffix in (".parquet", ".pq"):
        return _guarded(path, _parquet(path)), "parquet"
    raise XrdaggError(
        f"{path}: unknown format {suffix!r} (use .csv, .jsonl or .parquet; .gz for the first two)"
    )


def _guarded(path: Path, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The batches, with a reading error turned into one clear line naming the file."""
    try:
        yield from batches
    except (ValueError, OSError, EOFError, UnicodeError) as exc:
        raise XrdaggError(f"{path}: cannot be read ({exc})") from None


def _open_text(path: Path) -> Any:
    opener: Any = gzip.open if path.suffix.lower() == ".gz" else open
    # errors="replace": bytes that are not UTF-8 become U+FFFD instead of failing the file.
    return opener(path, "rt", encoding="utf-8", errors="replace", newline="")


class _NulAsSub:
    """A text file whose NUL characters read as SUB (U+001A): pandas' CSV parser would end the
    field at a NUL and drop the rest silently; SUB is a control character like any other, which
    the normalisation removes and reports."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def read(self, size: int = -1) -> str:
        return str(self.handle.read(size)).replace("\x00", "\x1a")

    def __iter__(self) -> Iterator[str]:
        return (line.replace("\x00", "\x1a") for line in self.handle)


def _csv(path: Path) -> Iterator[pd.DataFrame]:
    with _open_text(path) as handle:
        yield from pd.read_csv(
            _NulAsSub(handle),
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            chunksize=BATCH_ROWS,
        )


def _json_lines(path: Path) -> Iterator[pd.DataFrame]:
    with _open_text(path) as handle:
        reader = pd.read_json(
            handle, lines=True, dtype=False, convert_dates=False, chunksize=BATCH_ROWS
        )
        for batch in reader:
            yield _monit_documents(batch)


def _monit_documents(batch: pd.DataFrame) -> pd.DataFrame:
    """A MONIT document ({"data": {...}, "metadata": {...}}) as its flat record; the time it
    reached MONIT (metadata.timestamp) stands for INSERT_DATE when the record has none. Other
    lines stay as they are."""
    if "data" not in batch.columns or not batch["data"].map(lambda v: isinstance(v, dict)).any():
        return batch
    records = []
    for row in batch.to_dict(orient="records"):
        data, metadata = row.get("data"), row.get("metadata")
        if isinstance(data, dict):
            record = dict(data)
            lowered = {str(k).lower() for k in record}
            if "insert_date" not in lowered and isinstance(metadata, dict):
                record["insert_date"] = metadata.get("timestamp")
        else:
            record = {k: v for k, v in row.items() if k not in ("data", "metadata")}
        records.append(record)
    return pd.DataFrame(records, index=batch.index)


def _parquet(path: Path) -> Iterator[pd.DataFrame]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise XrdaggError(
            f"{path}: reading Parquet needs pyarrow, an optional dependency: "
            "pip install 'xrdagg[parquet]'"
        ) from None
    offset = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        # Timestamps stay timestamps (any unit, with their time zone), converted below.
        frame = batch.to_pandas(timestamp_as_object=False)
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        offset += len(frame)
        yield frame


# --- checking and converting --------------------------------------------------------------------


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
            shown = f" ({_shown(values[i])})" if values is not None else ""
            self.reasons.setdefault(i, []).append(reason + shown)

    def bad(self) -> pd.Series:
        return pd.Series(self.index.isin(list(self.reasons)), index=self.index)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _rename(frame: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    """SPEC §1 names in lower case; MONIT names mapped when the SPEC §1 name is not there."""
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    renames = {
        c: MONIT_NAMES[c]
        for c in frame.columns
        if c in MONIT_NAMES and MONIT_NAMES[c] not in frame.columns
    }
    report.renamed_columns.update(renames)
    frame = frame.rename(columns=renames)
    # OSG records give the bytes of read() and readv() apart; READ_BYTES is their sum.
    if "read_bytes" not in frame.columns and {"read", "readv"} <= set(frame.columns):
        numbers = frame[["read", "readv"]].apply(pd.to_numeric, errors="coerce")
        frame["read_bytes"] = numbers.sum(axis=1, min_count=1)
        frame = frame.rename(columns={"read": "read_single_bytes", "readv": "read_vector_bytes"})
        report.renamed_columns.update({"read + readv": "read_bytes"})
    return frame


def prepare(frame: pd.DataFrame, kind: str, now: datetime) -> tuple[pd.DataFrame, LoadReport]:
    """Validate and convert every record; invalid ones are reported and left out of the result."""
    report = LoadReport(rows_read=len(frame))
    frame = _rename(frame, report)
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
            given = values.where(present)
            out[column] = _dates(given)
            ambiguous = _calendar_digits(given)
            problems.flag(
                ambiguous,
                f"{column}: ambiguous, a calendar date written as digits or epoch seconds? "
                "(write it as ISO 8601, e.g. 2024-03-01T00:00:00Z)",
                values,
            )
            problems.flag(
                present & ~ambiguous & out[column].isna(), f"{column}: not a date", values
            )
        elif isinstance(column_type, Numeric):
            out[column] = pd.to_numeric(values.where(present), errors="coerce")
            problems.flag(present & out[column].isna(), f"{column}: not a number", values)
            infinite = out[column].map(lambda v: isinstance(v, float) and math.isinf(v))
            problems.flag(infinite, f"{column}: not a finite number", values)
        else:
            text = _text(values.where(present), column, kind, report)
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
        if len(report.problems) < MAX_REPORTED:
            line = f"{_line_label(kind, index)}: " + "; ".join(problems.reasons[index])
            report.problems.append(line)
    report.rows_refused = len(problems.reasons)
    good = out[~problems.bad()]
    report.rows_loaded = len(good)
    return good, report


def _calendar_digits(values: pd.Series) -> pd.Series:
    """Values that read as a calendar date written in digits (YYYYMMDD or YYYYMMDDhhmmss,
    years 1900-2199) as well as an epoch number: 20240301 would be 1970-08-23 in seconds.
    Refused rather than guessed."""

    def digits_date(value: object) -> bool:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return False
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip()
        if not text.isdigit() or len(text) not in (8, 14):
            return False
        try:
            datetime.strptime(text, "%Y%m%d" if len(text) == 8 else "%Y%m%d%H%M%S")
        except ValueError:
            return False
        return 1900 <= int(text[:4]) < 2200

    return values.map(digits_date).astype(bool)


def _text(values: pd.Series, column: str, kind: str, report: LoadReport) -> pd.Series:
    """Text values as str (None where absent), made storable: no lone surrogates (JSON escapes
    of bytes that are not UTF-8) and no control characters; each row changed is noted."""
    text = values.map(_as_text)
    # One vectorised pass finds the few values to fix; only those are handled one by one.
    odd = text.str.contains(_ODD, regex=True, na=False)
    for index in text.index[odd.to_numpy(dtype=bool)]:
        value = text[index]
        fixed = value.encode("utf-8", "replace").decode("utf-8")
        changes = ["bytes that are not UTF-8 replaced by U+FFFD"] if "\ufffd" in fixed else []
        cleaned = _CONTROLS.sub("", _SPACES.sub(" ", fixed))
        if cleaned != fixed:
            changes.append("control characters removed")
        if changes:
            report.note(f"{_line_label(kind, int(index))}: {column}: {', '.join(changes)}")
            text[index] = cleaned
    return text


def _as_text(value: Any) -> str | None:
    if isinstance(value, bytes):  # a Parquet BINARY column
        return value.decode("utf-8", "replace")
    return None if pd.isna(value) else str(value)


def _epoch_to_datetime(numbers: pd.Series) -> pd.Series:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (told apart by size) -> naive
    UTC timestamps, whole seconds (NaT where not a number or out of range)."""
    numbers = pd.to_numeric(numbers, errors="coerce").astype("float64")
    seconds = numbers.where(numbers < EPOCH_MS_THRESHOLD, numbers / 1e3)
    seconds = seconds.where(numbers < EPOCH_US_THRESHOLD, numbers / 1e6)
    seconds = seconds.where(numbers < EPOCH_NS_THRESHOLD, numbers / 1e9)
    # Out of any date's range (or NaN): NaT, reported by the caller as "not a date".
    seconds = seconds.where(seconds.abs() < EPOCH_MS_THRESHOLD)
    if not seconds.notna().any():
        return pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[ns]")
    with np.errstate(all="ignore"):
        return pd.to_datetime(seconds, unit="s", errors="coerce").dt.floor("s")


def _dates(values: pd.Series) -> pd.Series:
    """Native timestamps, epoch numbers or ISO 8601 strings -> naive UTC timestamps, whole
    seconds (NaT where none of these)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        # Any unit (Parquet timestamp[s|ms|us|ns]); a naive timestamp is UTC.
        return values.astype("datetime64[ns]").dt.floor("s")
    native = values.map(lambda v: isinstance(v, datetime | pd.Timestamp))
    numbers = pd.to_numeric(values.where(~native), errors="coerce")
    text = values.where(numbers.isna()).map(lambda v: None if pd.isna(v) else str(v))
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    parsed = parsed.dt.tz_convert(None).dt.floor("s")
    return _epoch_to_datetime(numbers).fillna(parsed)


# --- writing ------------------------------------------------------------------------------------


def _already_loaded(conn: Connection, source: str, ids: list[str]) -> set[str]:
    """The UNIQUE_IDs among `ids` already in the raw table (its index makes this a probe)."""
    table = RAW_TABLES[source]
    found: set[str] = set()
    for start in range(0, len(ids), IN_LIST_MAX):
        part = ids[start : start + IN_LIST_MAX]
        found.update(
            conn.execute(select(table.c.unique_id).where(table.c.unique_id.in_(part))).scalars()
        )
    return found


def skip_duplicates(
    conn: Connection, source: str, frame: pd.DataFrame, kind: str, report: LoadReport
) -> pd.DataFrame:
    """The rows of `frame` whose UNIQUE_ID is neither in the raw table (loaded before, or by an
    earlier batch of this file) nor earlier in `frame`; each skipped row is noted."""
    ids = frame["unique_id"]
    twice = ids.duplicated(keep="first")
    existing = _already_loaded(conn, source, list(ids[~twice].unique()))
    loaded = ids.isin(existing)
    for index in frame.index[(twice | loaded).to_numpy()]:
        where = "earlier in this file" if twice[index] else f"already in T_RAW_{source.upper()}"
        report.note(
            f"{_line_label(kind, int(index))}: unique_id {_shown(ids[index])} {where}: skipped"
        )
    report.duplicates += int((twice | loaded).sum())
    return frame[~(twice | loaded)]


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


def _note_behind(frame: pd.DataFrame, watermark: datetime, report: LoadReport) -> None:
    """Count the rows no incremental run will see (INSERT_DATE <= watermark) and widen the
    range of days they touch: their (clipped) start, end and arrival."""
    behind = frame[frame["insert_date"] <= pd.Timestamp(watermark)]
    if behind.empty:
        return
    report.behind += len(behind)
    end = behind["end_date"]
    start = behind["start_date"].fillna(end).clip(upper=end)
    start = start.where(start >= end - timedelta(days=7), end - timedelta(days=7))
    first = min(start.min(), behind["insert_date"].min()).to_pydatetime()
    last = max(end.max(), behind["insert_date"].max()).to_pydatetime()
    report.behind_first = first if report.behind_first is None else min(report.behind_first, first)
    report.behind_last = last if report.behind_last is None else max(report.behind_last, last)


def load_file(
    conn: Connection,
    path: Path,
    source: str,
    *,
    skip_invalid: bool,
    watermark: datetime | None = None,
) -> LoadReport:
    """Load a CSV, JSON-lines (either maybe gzipped) or Parquet file of raw records into the
    `source` raw table, batch by batch, in the caller's transaction.

    Malformed records are refused one by one; unless `skip_invalid`, a file with any is loaded
    not at all: the report then has rows_loaded 0 and the caller must roll back. Records whose
    UNIQUE_ID is loaded already are skipped. `watermark` (the source job's) counts loaded rows
    no incremental run will see.
    """
    batches, kind = read_batches(path)
    now = conn.execute(select(db_now())).scalar_one()
    total = LoadReport()
    for batch in batches:
        good, report = prepare(batch, kind, now)
        total.rows_read += report.rows_read
        total.rows_refused += report.rows_refused
        total.problems += report.problems[: MAX_REPORTED - len(total.problems)]
        total.ignored_columns = sorted(set(total.ignored_columns) | set(report.ignored_columns))
        total.renamed_columns.update(report.renamed_columns)
        for line in report.notes:
            total.note(line)
        if total.rows_refused and not skip_invalid:
            continue  # nothing will be loaded: only the problems are collected now
        fresh = skip_duplicates(conn, source, good, kind, total)
        load_frame(conn, source, fresh)
        total.rows_loaded += len(fresh)
        if watermark is not None:
            _note_behind(fresh, watermark, total)
    if total.rows_refused and not skip_invalid:
        total.rows_loaded = 0
    return total
