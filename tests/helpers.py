"""A test's view of one database: raw rows in, jobs run, tables out as DataFrames."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import insert, select

from tests.backends import Backend
from xrdagg.config import PROJECT_ROOT
from xrdagg.db.tables import RAW_COLUMNS, RAW_TABLES, metadata, t_agent
from xrdagg.jobs.runner import JobRunner, RunReport
from xrdagg.jobs.specs import JobSpec, load_job_specs
from xrdagg.topology.files import read_topology_dir
from xrdagg.topology.store import load_topology

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
