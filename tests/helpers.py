"""A test's view of one database: raw rows in, jobs run, tables out as DataFrames."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import insert, select

from tests.backends import Backend
from tests.reference import RefTopology, assert_same, compute
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.tables import RAW_COLUMNS, RAW_TABLES, metadata, t_agent
from xrdagg.jobs.runner import JobRunner, RunReport
from xrdagg.jobs.specs import JobSpec, load_job_specs
from xrdagg.topology.files import read_topology_dir
from xrdagg.topology.store import load_topology

TEST_TOPOLOGY = Path(__file__).parent / "data" / "topology"
REF_TOPOLOGY = RefTopology.from_dir(TEST_TOPOLOGY)
T0 = datetime(2024, 3, 1)  # the day the hand-computed cases (`at`, `fed`) happen on

_ids = itertools.count()

KEYS = {
    "t_stats_avg": [
        "bin_start",
        "source",
        "src_site",
        "src_domain",
        "dst_site",
        "dst_domain",
        "vo",
    ],
    "t_user_activity": ["bin_start", "user_dn", "vo", "src_site", "dst_site"],
    "t_stats_access_pattern": ["bin_start", "src_site", "dst_site", "vo"],
    "t_stats_access_pattern_a": ["day", "src_site", "dst_site", "vo"],
    "t_msg_rate": ["bin_start", "source", "domain"],
    "mv_site_stats": ["day", "site", "role", "source"],
    "t_site_pair_day": ["day", "source", "src_site", "dst_site", "vo"],
    "t_unresolved_day": ["day", "source", "side", "domain", "vo"],
    "t_site": ["site"],
}


def raw_row(**fields: Any) -> dict[str, Any]:
    """A raw record with every SPEC §1 column, NULL unless given; unique_id generated."""
    row: dict[str, Any] = dict.fromkeys(RAW_COLUMNS)
    row["unique_id"] = f"test-{next(_ids)}"
    unknown = set(fields) - set(RAW_COLUMNS)
    assert not unknown, unknown
    row.update(fields)
    return row


def at(minutes: float, day: int = 0) -> datetime:
    return T0 + timedelta(days=day, minutes=minutes)


def fed(**fields: Any) -> dict[str, Any]:  # a resolvable FED row: CERN server, BNL client, ATLAS
    defaults = dict(
        server_host="eos01", server_domain="cern.ch", client_host="wn1.bnl.gov", client_domain="bnl.gov",
        user_vo="atlas", user_dn="/CN=alice", read_bytes_at_close=0, end_date=at(30), insert_date=at(31),
    )  # fmt: skip
    return raw_row(**{**defaults, **fields})


def generated_rows(
    n: int, *, start: datetime, days: float = 1, seed: int = 0, source: str = "fed"
) -> list[dict[str, Any]]:
    """Realistic raw records (xrdagg.raw.generate) as dicts of plain Python values."""
    from xrdagg.raw.generate import generate

    records = []
    for row in generate(n, start=start, days=days, seed=seed, source=source).to_dict("records"):
        record = {
            k: None if v is None or (not isinstance(v, str) and pd.isna(v)) else v
            for k, v in row.items()
        }
        for column in ("start_date", "end_date", "insert_date"):
            if record[column] is not None:
                record[column] = pd.Timestamp(record[column]).to_pydatetime()
        records.append(record)
    return records


class Harness:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine = backend.engine
        # Tests run on data in the past: no safety lag needed to keep late commits out.
        self.settings = backend.settings.with_overrides(safety_lag_seconds=0)
        self.jobs = {j.name: j for j in load_job_specs(PROJECT_ROOT / "jobs")}
        self.runner = JobRunner(self.engine, self.settings, list(self.jobs.values()))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def load_topology(self, directory: Path) -> None:
        with self.engine.begin() as conn:
            load_topology(conn, read_topology_dir(directory), directory)

    def insert_raw(self, source: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(RAW_TABLES[source]), rows)

    def run(
        self, job: str | JobSpec, until: datetime | None = None, wait: bool = False
    ) -> RunReport:
        spec = self.jobs[job] if isinstance(job, str) else job
        report = self.runner.run(spec, until=until, wait=wait)
        assert report.outcome in ("OK", "SKIPPED"), report.message
        return report

    def run_all(self, until: datetime | None = None) -> None:
        for name in ("fed10", "eos10", "daily"):
            self.run(name, until)

    def watermark(self, job: str) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(t_agent.c.watermark).where(t_agent.c.job_name == job)
            ).scalar()

    def table(self, name: str) -> pd.DataFrame:
        """A statistics table, rows sorted by key, dates as Python datetimes."""
        table = metadata.tables[name]
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(table))]
        frame = pd.DataFrame(rows, columns=[c.name for c in table.columns])
        keys = KEYS.get(name, list(frame.columns))
        return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def check_invariant(
    db: Harness,
    rows: list[tuple[str, dict]],
    topology: RefTopology | None = None,
    *,
    trimmed: Iterable[str] = (),
) -> None:
    """SPEC §6: every statistics table equals the from-scratch computation (tests/reference.py)
    over `rows` (source, raw row) with INSERT_DATE <= the watermarks of fed10 and eos10, under
    `topology` (default: the test topology); but the `trimmed` tables (housekeeping's
    retention: SPEC §6 no longer holds there)."""
    for table, frame in expected_tables(db, rows, topology).items():
        if table not in trimmed:
            assert_same(db.table(table), frame, KEYS[table], table)


def expected_tables(
    db: Harness, rows: list[tuple[str, dict]], topology: RefTopology | None = None
) -> dict[str, pd.DataFrame]:
    """Every statistics table as tests/reference.py computes it from `rows` (source, raw row)
    under the watermarks of fed10 and eos10 and `topology` (default: the test topology)."""
    frames = {
        source: pd.DataFrame([r for s, r in rows if s == source], columns=list(RAW_COLUMNS))
        for source in ("fed", "eos")
    }
    return compute(
        frames["fed"],
        frames["eos"],
        topology or REF_TOPOLOGY,
        db.watermark("fed10"),
        db.watermark("eos10"),
    )


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float = 30,
    what: str,
    interval: float = 0.05,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll `predicate` until it is true; after `timeout` seconds fail, saying what was awaited.

    For a test that waits for something to happen (a run, a lock held, a line logged, a server
    up); a fixed sleep is either too short on a slow machine or a waste on a fast one.
    `details`, called on failure, adds what helps to see why (a process's log).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"waited {timeout:g} s for {what}; it did not happen{extra}")
        time.sleep(interval)
