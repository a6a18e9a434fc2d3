"""SPEC §6: after any sequence of runs over any arrival order, every statistics table equals the
from-scratch computation over the raw rows with INSERT_DATE <= watermark (tests/reference.py)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from tests.helpers import (
    KEYS,
    TEST_TOPOLOGY,
    Harness,
    check_invariant,
    generated_rows,
    raw_row,
)
from tests.reference import RefTopology
from xrdagg.db.tables import RAW_TABLES
from xrdagg.jobs.apply import apply_topology
from xrdagg.jobs.audit import audit, repair_in_transaction, repair_with_recompute, source_jobs
from xrdagg.jobs.recompute import Recompute
from xrdagg.topology.files import read_topology_dir

T0 = datetime(2024, 3, 1)

SIDES = [
    ("eos01", "cern.ch"), ("x.pp.rl.ac.uk", None), ("srm", "rl.ac.uk"), ("grid-lab105.desy.de", None),
    ("wn1", "bnl.gov"), ("cmsstor3", "fnal.gov"), ("node.example.org", None), (None, None),
    ("wn7", None), ("a.LAL.in2p3.fr.", ""), ("special-host", "fnal.gov"), (" lapp-se1 ", "in2p3.fr"),
    # Past the width MySQL/MariaDB first look for new pairs at (dialect.narrow_distinct_chars).
    ("worker-" + "n" * 70, "cern.ch"), ("wn1", "sub." + "d" * 70 + ".bnl.gov"),
]  # fmt: skip


@st.composite
def raw_rows(draw: st.DrawFn) -> dict:
    end = T0 + timedelta(seconds=draw(st.integers(0, 8 * 3600)))
    kind = draw(st.sampled_from(["zero", "short", "bins", "null", "inverted", "long"]))
    start = {
        "zero": end,
        "short": end - timedelta(seconds=draw(st.integers(1, 300))),
        "bins": end - timedelta(seconds=draw(st.integers(300, 4 * 3600))),
        "null": None,
        "inverted": end + timedelta(seconds=draw(st.integers(1, 900))),
        "long": end - timedelta(days=8, seconds=draw(st.integers(0, 3600))),
    }[kind]
    delay = draw(st.sampled_from([None, -2 * 86400, -1800, 0, 5, 120, 900, 4 * 3600, 3 * 86400]))
    server_host, server_domain = draw(st.sampled_from(SIDES))
    client_host, client_domain = draw(st.sampled_from(SIDES))
    # Boundary values too: reading exactly 10 %, 50 %, 100 % of the 1000-byte or 500 kB file.
    boundaries = st.sampled_from([0, 100, 500, 1000, 50_000, 250_000, 500_000])
    number = st.one_of(st.none(), boundaries, st.integers(-1000, 10**6))
    file_size = draw(st.sampled_from([None, 0, 1000, 5 * 10**5]))
    read_at_close = draw(number)
    if file_size and draw(st.booleans()):
        # a fraction read on each side of every bucket boundary of SPEC §5
        fraction = draw(st.sampled_from([0.05, 0.1, 0.3, 0.5, 0.999, 1, 1.5]))
        read_at_close = int(file_size * fraction)
    return raw_row(
        start_date=start,
        end_date=end,
        insert_date=None if delay is None else end + timedelta(seconds=delay),
        server_host=server_host,
        server_domain=server_domain,
        client_host=client_host,
        client_domain=client_domain,
        server_site=draw(
            st.sampled_from([None, None, None, "", "T2_CH_CERN", "t1_fr_ccin2p3", "Elsewhere"])
        ),
        user_vo=draw(st.sampled_from([None, "", "atlas", " CMS ", "cms"])),
        user_dn=draw(st.sampled_from([None, "", "/CN=a", "/CN=b"])),
        server_username=draw(st.sampled_from([None, "xrootd"])),
        read_bytes_at_close=read_at_close,
        read_bytes=draw(number),
        write_bytes_at_close=draw(st.sampled_from([None, 0, 100, -1])),
        file_size=file_size,
        read_single_bytes=draw(number),
        read_single_operations=draw(st.sampled_from([None, 3])),
        read_vector_bytes=draw(number),
        read_min=draw(st.sampled_from([None, 1, 50])),
        read_max=draw(st.sampled_from([None, 70, 2000])),
        write_operations=draw(st.sampled_from([None, 2])),
    )


scenario = st.fixed_dictionaries(
    {
        "rows": st.lists(
            st.tuples(st.sampled_from(["fed", "eos"]), raw_rows()), min_size=10, max_size=40
        ),
        # hours after T0; in any order, so a run may come with an --until behind the watermark
        "runs": st.lists(st.integers(0, 14 * 24), min_size=1, max_size=5),
        "early": st.lists(
            st.booleans(), min_size=40, max_size=40
        ),  # rows inserted before their time
        "daily_between": st.booleans(),
        # a last run past every row, so that the whole of SPEC is checked, not only early bins
        "catch_up": st.booleans(),
        # a topology change applied after the n-th run: a domain remapped (only its hosts are
        # resolved again) or a pattern added (every cached host is), each over sparse days
        "apply": st.one_of(
            st.none(), st.tuples(st.integers(0, 4), st.sampled_from(["domain", "pattern"]))
        ),
        # a recompute of a range of days (0-14 after T0) at the end, before the daily roll-up
        "recompute": st.one_of(st.none(), st.tuples(st.integers(-1, 14), st.integers(0, 3))),
        # then rows arriving *behind* the watermark (seconds before it), and raw rows deleted
        # after they were counted; `xrdagg audit --repair` (through a recompute, or in an audit
        # job's transaction) must bring every table back to the from-scratch computation
        "late": st.lists(
            st.tuples(st.sampled_from(["fed", "eos"]), raw_rows(), st.integers(0, 3 * 86400)),
            max_size=4,
        ),
        "deleted": st.lists(st.integers(0, 39), max_size=4, unique=True),
        "repair_in_job": st.booleans(),
    }
)

_CHANGED: dict[str, Path] = {}


def _changed_topology(kind: str) -> Path:
    """The test topology with bnl.gov remapped, or with a pattern for the host wn7 added."""
    if kind not in _CHANGED:
        directory = Path(tempfile.mkdtemp(prefix=f"xrdagg-topology-{kind}-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)  # kept for the session
        shutil.copytree(TEST_TOPOLOGY, directory, dirs_exist_ok=True)
        if kind == "domain":
            path = directory / "site_topology.json"
            entries = [e for e in json.loads(path.read_text()) if e["from_value"] != "bnl.gov"]
            path.write_text(
                json.dumps([*entries, {"from_value": "bnl.gov", "to_value": "BNL-NEW"}])
            )
        else:
            path = directory / "topology_patterns.json"
            entries = json.loads(path.read_text())
            path.write_text(json.dumps([*entries, {"pattern": "^wn7$", "site": "WN7-SITE"}]))
        _CHANGED[kind] = directory
    return _CHANGED[kind]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario)
def test_statistics_equal_a_from_scratch_computation(db: Harness, case: dict) -> None:
    db.backend.clear()
    db.load_topology(TEST_TOPOLOGY)
    pending = list(enumerate(case["rows"]))
    for number, hours in enumerate(case["runs"]):
        until = T0 + timedelta(hours=hours)
        # Every row inserted at or before `until` is in the table before a run can pass it; some
        # rows (and every row without INSERT_DATE) may also be there long before their time.
        due = [
            (i, (source, row))
            for i, (source, row) in pending
            if row["insert_date"] is None or row["insert_date"] <= until or case["early"][i]
        ]
        for source in ("fed", "eos"):
            db.insert_raw(source, [row for _, (s, row) in due if s == source])
        pending = [p for p in pending if p not in due]
        db.run("fed10", until)
        db.run("eos10", until)
        if case["daily_between"]:
            db.run("daily")
        if case["apply"] is not None and case["apply"][0] == number:
            directory = _changed_topology(case["apply"][1])
            topology = read_topology_dir(directory)
            apply_topology(db.engine, topology, directory, list(db.jobs.values()))
    db.insert_raw("fed", [row for _, (s, row) in pending if s == "fed"])
    db.insert_raw("eos", [row for _, (s, row) in pending if s == "eos"])
    if case["catch_up"]:
        db.run("fed10", T0 + timedelta(days=30))
        db.run("eos10", T0 + timedelta(days=30))
    if case["recompute"] is not None:
        first = T0 + timedelta(days=case["recompute"][0])
        recompute = Recompute(db.engine, [db.jobs["fed10"], db.jobs["eos10"]])
        # small chunks: days split into runs of bins, each rebuilt from the rows that overlap it
        recompute_id, chunks = recompute.start(
            first, first + timedelta(days=case["recompute"][1]), 8
        )
        recompute.run(recompute_id, chunks, workers=1 if db.dialect == "sqlite" else 2)
    rows = _arrive_late_and_delete(db, case)
    db.run("daily")
    applied = case["apply"] is not None and case["apply"][0] < len(case["runs"])
    topology = RefTopology.from_dir(_changed_topology(case["apply"][1])) if applied else None
    check_invariant(db, rows, topology)


def _arrive_late_and_delete(db: Harness, case: dict) -> list[tuple[str, dict]]:
    """Rows inserted behind the watermark and rows deleted from raw, then audited and repaired;
    returns the raw rows as they are now."""
    rows = list(case["rows"])
    if not case["late"] and not case["deleted"]:
        return rows
    jobs = {"fed": "fed10", "eos": "eos10"}
    for source, row, behind in case["late"]:
        watermark = db.watermark(jobs[source])
        if watermark is None:
            continue  # nothing is behind a job that never ran
        late = {**row, "insert_date": watermark - timedelta(seconds=behind)}
        db.insert_raw(source, [late])
        rows.append((source, late))
    gone = [rows[i] for i in case["deleted"] if i < len(case["rows"])]
    for source, row in gone:
        table = RAW_TABLES[source]
        with db.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.unique_id == row["unique_id"]))
    rows = [r for r in rows if r not in gone]
    sources = source_jobs([db.jobs["fed10"], db.jobs["eos10"]])
    if case["repair_in_job"]:
        with db.engine.begin() as conn:
            result = audit(conn, sources, None, None, lock=True)
            repair_in_transaction(conn, sources, result)
    else:
        with db.engine.begin() as conn:
            result = audit(conn, sources, None, None)
        repair_with_recompute(db.engine, sources, result)
    with db.engine.begin() as conn:
        after = audit(conn, sources, None, None)
    assert after.consistent, after.summary()
    return rows


def test_a_second_run_with_the_same_until_changes_nothing(db: Harness) -> None:
    rows = generated_rows(3000, start=T0, days=1, seed=7)
    db.insert_raw("fed", rows)
    until = T0 + timedelta(hours=20)
    first = db.run("fed10", until)
    db.run("daily")
    before = {t: db.table(t) for t in KEYS}
    second = db.run("fed10", until)
    db.run("daily")
    assert first.rows_read > 0 and second.rows_read == 0
    for table, frame in before.items():
        pd.testing.assert_frame_equal(db.table(table), frame)
    check_invariant(db, [("fed", r) for r in rows])
