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
