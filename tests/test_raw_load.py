"""`xrdagg raw load`: formats, dates, per-line errors, and never the collectors' tables."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from tests.helpers import Harness
from xrdagg.db.tables import t_raw_fed

HEADER = "UNIQUE_ID,client_host,Client_Domain,server_host,server_domain,read_bytes,start_date,end_date,insert_date,user_vo"


def _rows(db: Harness) -> list[dict]:
    with db.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(t_raw_fed).order_by(t_raw_fed.c.unique_id))
        ]


def test_csv_with_any_case_iso_and_epoch_dates(db: Harness, tmp_path: Path, cli) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        HEADER + "\n"
        "a1,wn1,cern.ch,srv,fnal.gov,100,2024-03-01T00:00:00Z,2024-03-01 00:05:00,2024-03-01 00:05:30,cms\n"
        "a2,wn2,cern.ch,srv,fnal.gov,,1709251200,1709251500000,,\n"
    )
    result = cli("raw", "load", str(path), "--source", "fed")
    assert result.exit_code == 0, result.output
    a1, a2 = _rows(db)
    assert (a1["start_date"], a1["end_date"], a1["insert_date"]) == (
        datetime(2024, 3, 1),
        datetime(2024, 3, 1, 0, 5),
        datetime(2024, 3, 1, 0, 5, 30),
    )
    assert a1["read_bytes"] == 100 and a1["user_vo"] == "cms" and a1["client_domain"] == "cern.ch"
    assert a2["end_date"] == datetime(2024, 3, 1, 0, 5)  # epoch milliseconds
    assert a2["insert_date"] is not None and a2["read_bytes"] is None  # database now; NULL kept


def test_malformed_records_are_named_by_line_and_nothing_is_loaded(
    db: Harness, tmp_path: Path, cli
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER + "\n"
        "ok1,wn1,cern.ch,srv,fnal.gov,1,,2024-03-01 00:05:00,,atlas\n"
        "bad1,wn1,cern.ch,srv,fnal.gov,lots,,2024-03-01 00:05:00,,atlas\n"
        ",wn1,cern.ch,srv,fnal.gov,1,,yesterday,,atlas\n"
    )
    result = cli("raw", "load", str(path), "--source", "fed")
    assert result.exit_code == 2
    assert "line 3: read_bytes: not a number ('lots')" in result.output
    assert (
        "line 4: end_date: not a date ('yesterday')" in result.output
        and "unique_id: missing" in result.output
    )
    assert "nothing loaded" in result.output and _rows(db) == []
    result = cli("raw", "load", str(path), "--source", "fed", "--skip-invalid")
    assert result.exit_code == 0 and "1 of 3 records loaded" in result.output
    assert [r["unique_id"] for r in _rows(db)] == ["ok1"]


def test_json_lines_and_parquet(db: Harness, tmp_path: Path, cli) -> None:
    records = [
        {
            "unique_id": "j1",
            "end_time": 1709251500,
            "start_time": 1709251200,
            "client_host": "wn",
            "read_bytes_at_close": 5,
        },
        {"unique_id": "j2", "end_date": "2024-03-01T01:00:00+01:00", "user_dn": "/CN=x"},
    ]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records))
    assert cli("raw", "load", str(jsonl), "--source", "fed").exit_code == 0
    parquet = tmp_path / "r.parquet"
    pd.DataFrame(
        [{"UNIQUE_ID": "p1", "END_DATE": "2024-03-02 00:00:00", "FILE_SIZE": 12.0}]
    ).to_parquet(parquet)
    assert cli("raw", "load", str(parquet), "--source", "fed").exit_code == 0
    rows = {r["unique_id"]: r for r in _rows(db)}
    assert rows["j1"]["start_date"] == datetime(2024, 3, 1) and rows["j1"]["end_date"] == datetime(
        2024, 3, 1, 0, 5
    )
    assert rows["j2"]["end_date"] == datetime(2024, 3, 1)  # +01:00 converted to UTC
    assert rows["p1"]["file_size"] == 12


def test_raw_load_refuses_a_configured_raw_schema(db: Harness, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from xrdagg.cli import main

    env = {
        **db.backend.env,
        "XRDAGG_DATABASE_URL": "postgresql://nowhere/db",
        "XRDAGG_RAW_SCHEMA": "atlas_xrd_mon",
    }
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "\n")
    result = CliRunner().invoke(main, ["raw", "load", str(path), "--source", "fed"], env=env)
    assert result.exit_code == 2 and "never writes them" in result.output


def test_ambiguous_digit_dates_and_infinite_numbers_are_refused_by_line(
    db: Harness, tmp_path: Path, cli
) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        HEADER + "\n"
        "d1,wn1,cern.ch,srv,fnal.gov,1,,20240301,,atlas\n"
        "d2,wn1,cern.ch,srv,fnal.gov,1,,20240301120000,,atlas\n"
        "d3,wn1,cern.ch,srv,fnal.gov,inf,,2024-03-01 00:05:00,,atlas\n"
        "ok,wn1,cern.ch,srv,fnal.gov,1,1709251200,1969-12-31 23:55:00,2024-03-01,atlas\n"
    )
    result = cli("raw", "load", str(path), "--source", "fed")
    assert result.exit_code == 2
    assert "line 2: end_date: ambiguous" in result.output and "'20240301'" in result.output
    assert "line 3: end_date: ambiguous" in result.output
    assert "line 4: read_bytes: not a finite number ('inf')" in result.output
    assert "line 5" not in result.output  # epoch seconds and a date before 1970 are fine
    result = cli("raw", "load", str(path), "--source", "fed", "--skip-invalid")
    assert result.exit_code == 0, result.output
    (ok,) = _rows(db)
    assert ok["end_date"] == datetime(1969, 12, 31, 23, 55)


# --- idempotent loads, real formats, odd text (issue 10) -----------------------------------------


def _stats(db: Harness) -> dict[str, pd.DataFrame]:
    from tests.helpers import KEYS

    return {t: db.table(t) for t in KEYS}


def test_a_file_loaded_twice_gives_the_same_tables_as_once(
    db: Harness, tmp_path: Path, cli
) -> None:
    from tests.helpers import check_invariant, generated_rows

    rows = generated_rows(400, start=datetime(2024, 3, 1), days=1, seed=11)
    path = tmp_path / "export.csv.gz"
    pd.DataFrame(rows).to_csv(path, index=False, compression="gzip")
    first = cli("raw", "load", str(path), "--source", "fed", "--skip-invalid")
    assert first.exit_code == 0, first.output
    db.run_all(datetime(2024, 3, 5))
    once = _stats(db)
    second = cli("raw", "load", str(path), "--source", "fed", "--skip-invalid")
    assert second.exit_code == 0, second.output
    assert "0 of 400 records loaded" in second.output and "400 already loaded" in second.output
    assert "already in T_RAW_FED: skipped" in second.output
    db.run_all(datetime(2024, 3, 5))
    for table, frame in _stats(db).items():
        pd.testing.assert_frame_equal(frame, once[table], obj=table)
    loaded = _rows(db)
    assert len(loaded) == 400
    check_invariant(db, [("fed", r) for r in loaded])


def test_duplicates_inside_a_file_are_skipped_and_named(db: Harness, tmp_path: Path, cli) -> None:
    path = tmp_path / "dups.jsonl"
    lines = [{"unique_id": "d1", "end_time": 1709251500 + i} for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in lines))
    result = cli("raw", "load", str(path), "--source", "fed")
    assert result.exit_code == 0, result.output
    assert "line 2: unique_id 'd1' earlier in this file: skipped" in result.output
    assert "1 of 3 records loaded" in result.output and "2 already loaded" in result.output
    assert [r["end_date"] for r in _rows(db)] == [datetime(2024, 3, 1, 0, 5)]


def test_parquet_native_timestamps_of_every_unit_and_time_zone(
    db: Harness, tmp_path: Path, cli
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    end = datetime(2026, 10, 1, 0, 0, 27)  # UTC
    expected = {}
    for unit in ("s", "ms", "us", "ns"):
        for tz in (None, "UTC", "Europe/Zurich", "America/Chicago"):
            local = pd.Timestamp(end, tz="UTC").tz_convert(tz) if tz else pd.Timestamp(end)
            uid = f"{unit}-{tz}"
            table = pa.table(
                {
                    "UNIQUE_ID": [uid],
                    "END_DATE": pa.array([local], type=pa.timestamp(unit, tz=tz)),
                    "START_DATE": pa.array(
                        [local - pd.Timedelta(minutes=5)], type=pa.timestamp(unit, tz=tz)
                    ),
                    "read_bytes": pa.array([10], type=pa.int64()),
                }
            )
            pq.write_table(table, tmp_path / f"{unit}-{len(expected)}.parquet")
            expected[uid] = end
    for path in sorted(tmp_path.glob("*.parquet")):
        result = cli("raw", "load", str(path), "--source", "fed")
        assert result.exit_code == 0, result.output
    rows = {r["unique_id"]: r for r in _rows(db)}
    assert set(rows) == set(expected)
    for uid, row in rows.items():
        assert row["end_date"] == end, uid
        assert row["start_date"] == datetime(2026, 10, 1, 0, 0, 27) - pd.Timedelta(minutes=5), uid


def test_monit_documents_names_epoch_units_and_gzip(db: Harness, tmp_path: Path, cli) -> None:
    import gzip

    documents = [
        {  # a MONIT document: the record under "data", its arrival under metadata.timestamp
            "data": {
                "unique_id": "m1",
                "vo": "cms",
                "user": "/CN=carol",
                "site_name": "T2_CH_CERN",
                "client_host": "wn",
                "end_time": 1709251500000,  # milliseconds
            },
            "metadata": {"timestamp": 1709251560000},
        },
        {"unique_id": "m2", "end_date": 1709251500000000, "vo": "atlas"},  # microseconds
        {"unique_id": "m3", "end_date": 1709251500000000000},  # nanoseconds
    ]
    path = tmp_path / "monit.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(d) for d in documents))
    result = cli("raw", "load", str(path), "--source", "fed")
    assert result.exit_code == 0, result.output
    assert "vo -> user_vo" in result.output
    rows = {r["unique_id"]: r for r in _rows(db)}
    m1 = rows["m1"]
    assert (m1["user_vo"], m1["user_dn"], m1["server_site"]) == ("cms", "/CN=carol", "T2_CH_CERN")
    assert m1["end_date"] == datetime(2024, 3, 1, 0, 5)
    assert m1["insert_date"] == datetime(2024, 3, 1, 0, 6)
    assert rows["m2"]["end_date"] == rows["m3"]["end_date"] == datetime(2024, 3, 1, 0, 5)


def test_control_characters_and_bytes_not_utf8_are_normalised_by_row(
    db: Harness, tmp_path: Path, cli
) -> None:
    path = tmp_path / "odd.csv"
    body = (
        "unique_id,end_date,user_dn,client_host\n"
        "o1,2024-03-01 00:05:00,/CN=a\x00b\x07c,wn\tone\n"
        "o2,2024-03-01 00:05:00,/CN=\xe9t\xe9,wn2\n"
    ).encode()
    # o3: a Latin-1 byte, not UTF-8; o4: too long for USER_DN
    body += b"o3,2024-03-01 00:05:00,/CN=caf\xe9,wn3\n"
    body += b"o4,2024-03-01 00:05:00," + b"x" * 1500 + b",wn4\n"
    path.write_bytes(body)
    result = cli("raw", "load", str(path), "--source", "fed", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "line 2: user_dn: control characters removed" in result.output
    assert "line 4: user_dn: bytes that are not UTF-8 replaced by U+FFFD" in result.output
    assert "line 5: user_dn: longer than 1000 bytes" in result.output
    rows = {r["unique_id"]: r for r in _rows(db)}
    assert rows["o1"]["user_dn"] == "/CN=abc" and rows["o1"]["client_host"] == "wn one"
    assert rows["o2"]["user_dn"] == "/CN=été"
    assert rows["o3"]["user_dn"] == "/CN=caf\ufffd"
    assert "o4" not in rows


def test_rows_loaded_behind_a_watermark_are_warned_about(db: Harness, tmp_path: Path, cli) -> None:
    db.insert_raw("fed", [])
    db.run("fed10", datetime(2024, 3, 10))
    path = tmp_path / "late.csv"
    path.write_text(
        "unique_id,start_date,end_date,insert_date\n"
        "l1,2024-03-01 23:00:00,2024-03-02 01:00:00,2024-03-02 01:00:05\n"
        "l2,,2024-03-11 00:00:00,2024-03-11 00:00:00\n"
    )
    result = cli("raw", "load", str(path), "--source", "fed")
    assert result.exit_code == 0, result.output
    assert "1 loaded record(s) have an INSERT_DATE at or before the watermark" in result.output
    assert "xrdagg audit --repair --source fed --from 2024-03-01 --to 2024-03-02" in result.output
    assert cli("audit", "--source", "fed").exit_code == 1
    assert cli("audit", "--source", "fed", "--repair").exit_code == 1
    assert cli("audit", "--source", "fed").exit_code == 0


def test_parquet_needs_pyarrow_and_says_so(tmp_path: Path, monkeypatch) -> None:
    import builtins

    from xrdagg.errors import XrdaggError
    from xrdagg.raw.load import read_batches

    real_import = builtins.__import__

    def no_pyarrow(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    batches, _ = read_batches(tmp_path / "x.parquet")
    try:
        next(batches)
    except XrdaggError as error:
        assert "pip install 'xrdagg[parquet]'" in str(error)
    else:
        raise AssertionError("no error without pyarrow")


def test_memory_stays_flat_as_the_file_grows(db: Harness, tmp_path: Path, monkeypatch) -> None:
    import tracemalloc

    from xrdagg.raw import load

    monkeypatch.setattr(load, "BATCH_ROWS", 500)

    def peak_bytes(rows: int) -> int:
        path = tmp_path / f"big-{rows}.csv.gz"
        frame = pd.DataFrame(
            {
                "unique_id": [f"r{rows}-{i}" for i in range(rows)],
                "end_time": [1709251200 + i for i in range(rows)],
                "user_dn": ["/CN=someone/CN=with a rather long distinguished name"] * rows,
            }
        )
        frame.to_csv(path, index=False, compression="gzip")
        del frame
        tracemalloc.start()
        with db.engine.begin() as conn:
            report = load.load_file(conn, path, "fed", skip_invalid=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.rows_loaded == rows
        return peak

    small, large = peak_bytes(2000), peak_bytes(10000)
    assert large < 1.5 * small, (small, large)
