"""Benchmark: the FED job against the bare GROUP BY floor, on SQLite and PostgreSQL.

    make bench                                   # 1M rows, SQLite and PostgreSQL
    make bench BENCH_ARGS="--rows 200000 --backends sqlite"

For each backend, in a fresh database: N realistic FED rows (xrdagg.raw.generate), then
- floor:    the bare `GROUP BY` 10-minute bin of the same rows (count, sum of bytes), fetched;
- catch-up: `xrdagg run fed10` over all N rows (a separate process: its peak memory is measured);
- batch:    ~20k new rows arriving after the watermark, then `xrdagg run fed10` again;
- recompute: `xrdagg recompute` of fed10 over every day of data (1 worker; 1 and 2 on PostgreSQL);
- remap:    `xrdagg topology apply` remapping the domain closest to 1% of the rows, as a share of
            the full recompute (target ≤ 5%).
Rows/s and engine ÷ floor are printed. Targets (issue 3): catch-up ≤ 2.5× floor, a 20k batch < 2 s,
peak memory flat in N. Timings are the job's own (run log), without process start-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import create_engine, desc, func, select, text
from sqlalchemy.engine import make_url

from xrdagg.config import PROJECT_ROOT, Settings
from xrdagg.db import migrate
from xrdagg.db.dialect import epoch_seconds, floor_to
from xrdagg.db.engine import make_engine
from xrdagg.db.tables import RAW_COLUMNS, t_job_run, t_raw_fed
from xrdagg.jobs.recompute import DEFAULT_MAX_CHUNK_ROWS, Recompute
from xrdagg.jobs.specs import load_job_specs
from xrdagg.raw.generate import generate
from xrdagg.topology.apply import apply_topology
from xrdagg.topology.files import read_topology_dir
from xrdagg.topology.store import load_topology

START = datetime(2024, 3, 1)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def bulk_insert(settings: Settings, frame: pd.DataFrame) -> None:
    """The fastest honest load per backend (benchmark set-up only, not measured)."""
    frame = frame[list(RAW_COLUMNS)].copy()
    for column in ("start_date", "end_date", "insert_date"):
        frame[column] = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    rows = [tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)]
    if settings.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(str(settings.database_url.database))
        marks = ", ".join("?" * len(RAW_COLUMNS))
        conn.executemany(f"INSERT INTO t_raw_fed ({', '.join(RAW_COLUMNS)}) VALUES ({marks})", rows)
        conn.commit()
        conn.close()
        return
    import psycopg

    url = settings.database_url
    options = url.query.get("options")
    columns = ", ".join(RAW_COLUMNS)
    connect = {
        "host": url.host,
        "port": url.port or 5432,
        "user": url.username,
        "dbname": url.database,
    }
    with (
        psycopg.connect(**connect, options=options) as conn,
        conn.cursor().copy(f"COPY t_raw_fed ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def floor_seconds(settings: Settings) -> float:
    engine = make_engine(settings)
    bin_s = floor_to(epoch_seconds(t_raw_fed.c.end_date), 600)
    statement = select(bin_s.label("b"), func.count(), func.sum(t_raw_fed.c.read_bytes)).group_by(
        bin_s
    )
    best = float("inf")
    with engine.connect() as conn:
        for _ in range(2):  # warm cache, then measured
            started = time.perf_counter()
            conn.execute(statement).all()
            best = min(best, time.perf_counter() - started)
    engine.dispose()
    return best


# Runs the command line and reports the peak memory of its own address space (VmHWM): getrusage's
# ru_maxrss survives exec, so it would count the fork of this benchmark holding the generated rows.
_MEASURED = (
    "import re, sys\n"
    "from xrdagg.cli import main\n"
    "try:\n    main(sys.argv[1:])\n"
    "except SystemExit as done:\n    code = done.code\n"
    "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "print('peak_rss_kb', hwm, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_job(settings: Settings, env: dict[str, str], until: datetime) -> tuple[float, int, float]:
    """(job seconds from the run log, rows read, peak RSS MB of the job's process)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, "run", "fed10", f"--until={until:%Y-%m-%d %H:%M:%S}"],
        env={**os.environ, **env, "XRDAGG_SAFETY_LAG_SECONDS": "0"}, check=True, cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    peak_kb = int(done.stderr.rsplit("peak_rss_kb", 1)[1].split()[0])
    engine = make_engine(settings)
    with engine.connect() as conn:
        last = conn.execute(select(t_job_run).order_by(desc(t_job_run.c.run_id)).limit(1)).one()
    engine.dispose()
    assert last.outcome == "OK", last.message
    return float(last.duration_s), int(last.rows_read), peak_kb / 1024


def time_recompute(settings: Settings, first: datetime, last: datetime, workers: int) -> float:
    """Seconds for `xrdagg recompute` of fed10 over [first, last], with `workers` connections."""
    engine = make_engine(settings, pool_size=max(5, workers))
    specs = [s for s in load_job_specs(PROJECT_ROOT / "jobs") if s.name == "fed10"]
    started = time.perf_counter()
    job = Recompute(engine, specs)
    recompute_id, chunks = job.start(first, last, DEFAULT_MAX_CHUNK_ROWS)
    job.run(recompute_id, chunks, workers=workers)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def one_percent_domain(frame: pd.DataFrame) -> tuple[str, float]:
    """The shipped topology's domain whose rows (either side) are closest to 1% of all."""
    shipped = read_topology_dir(PROJECT_ROOT / "topology").domain_map
    share = {}
    for domain in set(frame.client_domain.dropna()) | set(frame.server_domain.dropna()):
        if domain in shipped:
            rows = ((frame.client_domain == domain) | (frame.server_domain == domain)).sum()
            share[domain] = rows / len(frame)
    domain = min(share, key=lambda d: abs(share[d] - 0.01))
    return domain, share[domain]


def time_topology_change(settings: Settings, domain: str) -> float:
    """Seconds for `xrdagg topology apply` of the shipped topology with `domain` remapped."""
    topology = read_topology_dir(PROJECT_ROOT / "topology")
    topology.domain_map[domain] = "BENCH-REMAPPED-SITE"
    engine = make_engine(settings)
    started = time.perf_counter()
    report = apply_topology(
        engine, topology, PROJECT_ROOT / "topology", load_job_specs(PROJECT_ROOT / "jobs")
    )
    elapsed = time.perf_counter() - started
    engine.dispose()
    assert report.changes, f"remapping {domain} changed nothing"
    return elapsed


def bench_backend(
    name: str, rows: int, batch: int, pg_url: str, days_of_data: float
) -> dict[str, object]:
    cleanup = []
    if name == "sqlite":
        directory = tempfile.mkdtemp(prefix="xrdagg-bench-")
        env = {"XRDAGG_DATABASE_URL": f"sqlite:///{directory}/bench.db"}
    else:
        schema = f"xrdagg_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))

        def drop(admin=admin, schema=schema) -> None:  # type: ignore[no-untyped-def]
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()

        cleanup.append(drop)
        url = (
            make_url(pg_url)
            .set(drivername="postgresql+psycopg")
            .update_query_dict({"options": f"-csearch_path={schema}"})
        )
        env = {"XRDAGG_DATABASE_URL": url.render_as_string(hide_password=False)}
    settings = Settings.from_env(env)
    workers = [1] if name == "sqlite" else [1, 2]
    migrate.upgrade(settings)
    engine = make_engine(settings)
    with engine.begin() as conn:
        load_topology(conn, read_topology_dir(PROJECT_ROOT / "topology"), PROJECT_ROOT / "topology")
    days = float(days_of_data)
    print(f"[{name}] generating and loading {rows} rows over {days:g} day(s)…", file=sys.stderr)
    frame = generate(rows, start=START, days=days, seed=42)
    bulk_insert(settings, frame)
    if name == "postgres":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    end_of_data = START + timedelta(days=days + 4)  # past the late arrivals

    floor = floor_seconds(settings)
    catch_up, read, peak = run_job(settings, env, end_of_data)
    # A batch of new arrivals: rows inserted after the watermark (as a collector would).
    extra = generate(batch, start=START + timedelta(days=days), days=1 / 144, seed=43)
    extra["unique_id"] = "batch-" + extra["unique_id"]
    extra["insert_date"] = (
        end_of_data
        + pd.to_timedelta(range(1, batch + 1), unit="ms").floor("s")
        + timedelta(seconds=1)
    )
    bulk_insert(settings, extra)
    batch_s, batch_rows, _ = run_job(settings, env, end_of_data + timedelta(hours=1))
    recompute = {
        w: time_recompute(settings, START, START + timedelta(days=days), w) for w in workers
    }
    domain, share = one_percent_domain(frame)
    apply_s = time_topology_change(settings, domain)
    for step in cleanup:
        step()
    return {
        "backend": name, "rows": rows, "floor_s": round(floor, 2), "catch_up_s": round(catch_up, 2),
        "rows_per_s": int(read / catch_up), "ratio": round(catch_up / floor, 2),
        "batch_rows": batch_rows, "batch_s": round(batch_s, 2), "peak_rss_mb": round(peak),
        **{f"recompute_w{w}_s": round(t, 2) for w, t in recompute.items()},
        **{f"recompute_w{w}_ratio": round(t / floor, 2) for w, t in recompute.items()},
        "remap_domain": f"{domain} ({share:.1%})", "remap_s": round(apply_s, 2),
        "remap_vs_recompute": f"{apply_s / recompute[1]:.1%}",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=4, help="days the rows' end times span")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=os.environ.get("XRDAGG_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()
    results = []
    for backend in args.backends.split(","):
        results.append(bench_backend(backend, args.rows, args.batch, args.pg_url, args.days))
        print(results[-1], file=sys.stderr, flush=True)  # each backend's figures as they come
    print(pd.DataFrame(results).T.to_string(header=False))


if __name__ == "__main__":
    main()
