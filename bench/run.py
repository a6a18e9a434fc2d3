"""Benchmark: the FED job against the bare GROUP BY floor, per backend and per generator mix.

    make bench                                   # 1M rows over 4 days, SQLite, PostgreSQL and
                                                 # MariaDB, both mixes; writes docs/benchmarks.md
    make bench BENCH_ARGS="--rows 200000 --backends sqlite --mixes realistic"

For each backend and mix, in a fresh database: N FED rows (xrdagg.raw.generate; the *realistic*
mix is the one the goals are judged on, the *worst* one draws every key per row), then
- floor:     the bare `GROUP BY` 10-minute bin of the same rows (count, sum of bytes), fetched;
- catch-up:  `xrdagg run fed10` over all N rows, in its own process (peak memory: its VmHWM);
- batch:     ~20k new rows arriving after the watermark, then `xrdagg run fed10` again;
- recompute: fed10 over every day of data with 1 worker, and with 4 on the servers (SQLite has
             one writer: it refuses more than 1); chunks as `xrdagg recompute` plans them (days
             merged while their rows fit in one chunk; for 4 workers a chunk of several days
             holds at most a quarter of the rows, so the two runs may have different chunks);
             once more with 1 worker after every statistics row was made wrong;
- audit:     `xrdagg audit --source fed` over every day, after the recompute (consistent), as
             a share of the 1-worker recompute (issue 10: under 10%);
- remap:     `topology apply` remapping the shipped domain closest to 1.5% of the rows (1–2%),
             as a share of the 1-worker recompute;
- projection: hours to recompute 1e9 rows at the 1-worker rate and at the 4-worker rate.
Targets (issue 13): catch-up and recompute ≤ 10× floor, a 20k batch < 0.5 s, 4 workers ≥ 3× one,
peak memory flat in N, remap ≤ 5% of the recompute. Job timings are the job's own (run log),
without process start-up.

Every call into xrdagg's Python API is in one small function below ("the engine's API"), so that
a move of that API is one edit here; the jobs themselves run through the command line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench import report

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2024, 3, 1)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/test"
BACKENDS = ("sqlite", "postgres", "mariadb")
STATS_TABLES = ("t_stats_avg", "t_user_activity", "t_stats_access_pattern", "t_msg_rate")
PROJECTED_ROWS = 1_000_000_000
REMAP_SHARE = 0.015  # the remapped domain's share of the rows: the closest to this


# --- the engine's API: one small function a call ------------------------------------------------


def generate_rows(rows: int, start: datetime, days: float, seed: int, mix: str) -> pd.DataFrame:
    from xrdagg.raw.generate import generate

    return generate(rows, start=start, days=days, seed=seed, source="fed", mix=mix)


def raw_columns() -> list[str]:
    from xrdagg.db.tables import RAW_COLUMNS

    return list(RAW_COLUMNS)


def open_engine(env: dict[str, str], pool_size: int = 5) -> Engine:
    from xrdagg.config import Settings
    from xrdagg.db.engine import make_engine

    return make_engine(Settings.from_env(env), pool_size=pool_size)


def upgrade_schema(env: dict[str, str]) -> None:
    from xrdagg.config import Settings
    from xrdagg.db import migrate

    migrate.upgrade(Settings.from_env(env))


def load_shipped_topology(engine: Engine) -> None:
    from xrdagg.topology.files import read_topology_dir
    from xrdagg.topology.store import load_topology

    with engine.begin() as conn:
        load_topology(conn, read_topology_dir(ROOT / "topology"), ROOT / "topology")


def shipped_domain_map() -> dict[str, str]:
    from xrdagg.topology.files import read_topology_dir

    return dict(read_topology_dir(ROOT / "topology").domain_map)


def remapped_sites(domain: str, pairs: list[tuple[str | None, str | None]]) -> int:
    """How many of the (host, domain) `pairs` change site when the shipped topology maps
    `domain` to a new site (a pattern can win over the domain map: then none do)."""
    from xrdagg.topology.files import read_topology_dir

    shipped = read_topology_dir(ROOT / "topology")
    before = shipped.resolver()
    shipped.domain_map[domain] = "BENCH-REMAPPED-SITE"
    after = shipped.resolver()
    return sum(before.resolve(h, d).site != after.resolve(h, d).site for h, d in pairs)


def floor_statement() -> Any:
    """The bare GROUP BY: raw rows by the 10-minute bin of their end, count and bytes."""
    from sqlalchemy import func, select

    from xrdagg.db.dialect import epoch_seconds, floor_to
    from xrdagg.db.tables import t_raw_fed

    bin_s = floor_to(epoch_seconds(t_raw_fed.c.end_date), 600)
    return (
        select(bin_s.label("b"), func.count(), func.sum(t_raw_fed.c.read_bytes))
        .group_by(bin_s)
    )  # fmt: skip


def last_job_run(engine: Engine) -> Any:
    from sqlalchemy import desc, select

    from xrdagg.db.tables import t_job_run

    with engine.connect() as conn:
        return conn.execute(select(t_job_run).order_by(desc(t_job_run.c.run_id)).limit(1)).one()


def recompute_fed10(
    engine: Engine, first: datetime, last: datetime, workers: int
) -> tuple[float, int, int]:
    """(seconds, raw rows read, chunks) of a recompute of fed10 over the days [first, last]."""
    from xrdagg.jobs.chunks import DEFAULT_MAX_CHUNK_ROWS
    from xrdagg.jobs.recompute import Recompute
    from xrdagg.jobs.specs import load_job_specs

    specs = [s for s in load_job_specs(ROOT / "jobs") if s.name == "fed10"]
    started = time.perf_counter()
    job = Recompute(engine, specs)
    recompute_id, chunks = job.start(first, last, DEFAULT_MAX_CHUNK_ROWS, workers=workers)
    results = job.run(recompute_id, chunks, workers=workers)
    elapsed = time.perf_counter() - started
    return elapsed, sum(r.rows_read for r in results), len(chunks)


def spoil_statistics(engine: Engine, first: datetime, last: datetime) -> None:
    """Make every row of the 10-minute statistics tables in the days [first, last] wrong: a
    count raised by one."""
    from xrdagg.db.tables import t_msg_rate, t_stats_access_pattern, t_stats_avg, t_user_activity

    counts = {
        t_stats_avg: "transfers_active",
        t_user_activity: "accesses",
        t_stats_access_pattern: "accesses",
        t_msg_rate: "messages",
    }
    with engine.begin() as conn:
        for table, count in counts.items():
            in_days = (table.c.bin_start >= first) & (table.c.bin_start < last + timedelta(days=1))
            conn.execute(table.update().where(in_days).values({count: table.c[count] + 1}))


def audit_fed10(engine: Engine) -> tuple[float, bool]:
    """(seconds, consistent) of `xrdagg audit --source fed` over every day (issue 10)."""
    from xrdagg.jobs.audit import audit, source_jobs
    from xrdagg.jobs.specs import load_job_specs

    jobs = source_jobs(load_job_specs(ROOT / "jobs"), ["fed"])
    started = time.perf_counter()
    with engine.begin() as conn:
        result = audit(conn, jobs, None, None)
    return time.perf_counter() - started, result.consistent


def apply_remapped_topology(engine: Engine, domain: str) -> int:
    """`topology apply` of the shipped topology with `domain` mapped to a new site; changes."""
    from xrdagg.jobs.apply import apply_topology
    from xrdagg.jobs.specs import load_job_specs
    from xrdagg.topology.files import read_topology_dir

    topology = read_topology_dir(ROOT / "topology")
    topology.domain_map[domain] = "BENCH-REMAPPED-SITE"
    applied = apply_topology(engine, topology, ROOT / "topology", load_job_specs(ROOT / "jobs"))
    return len(applied.changes)


# --- set-up (not measured) ------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh database for one measurement: its environment and how to drop it."""

    backend: str
    env: dict[str, str]
    drop: Callable[[], None] = field(default=lambda: None)

    @property
    def url(self) -> str:
        return self.env["XRDAGG_DATABASE_URL"]


def fresh_database(backend: str, pg_url: str, mysql_url: str = DEFAULT_MYSQL) -> Database:
    if backend == "mariadb":
        return _fresh_mysql_database(mysql_url)
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="xrdagg-bench-")

        def remove() -> None:
            for name in os.listdir(directory):
                os.remove(os.path.join(directory, name))
            os.rmdir(directory)

        return Database(backend, {"XRDAGG_DATABASE_URL": f"sqlite:///{directory}/bench.db"}, remove)
    schema = f"xrdagg_bench_{uuid.uuid4().hex[:8]}"
    base = make_url(pg_url).set(drivername="postgresql+psycopg")
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    return Database(backend, {"XRDAGG_DATABASE_URL": url.render_as_string(False)}, drop)


def _fresh_mysql_database(mysql_url: str) -> Database:
    """A throw-away database on the MariaDB server (a MySQL schema is a database)."""
    name = f"xrdagg_bench_{uuid.uuid4().hex[:8]}"
    base = make_url(mysql_url).set(drivername="mysql+pymysql")
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()

    url = base.set(database=name)
    return Database("mariadb", {"XRDAGG_DATABASE_URL": url.render_as_string(False)}, drop)


def bulk_insert(url: str, frame: pd.DataFrame) -> None:
    """The fastest honest load per backend (benchmark set-up only, not measured)."""
    columns = raw_columns()
    frame = frame[columns].copy()
    for column in ("start_date", "end_date", "insert_date"):
        frame[column] = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    rows = [tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)]
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        import sqlite3

        lite = sqlite3.connect(str(parsed.database))
        marks = ", ".join("?" * len(columns))
        lite.executemany(f"INSERT INTO t_raw_fed ({', '.join(columns)}) VALUES ({marks})", rows)
        lite.commit()
        lite.close()
        return
    if parsed.get_backend_name() == "mysql":
        import pymysql

        my = pymysql.connect(
            host=parsed.host, port=parsed.port or 3306, user=parsed.username,
            password=parsed.password or "", database=parsed.database, charset="utf8mb4",
        )  # fmt: skip
        marks = ", ".join(["%s"] * len(columns))
        with my.cursor() as cursor:
            # PyMySQL sends each batch as one multi-row INSERT.
            for at in range(0, len(rows), 5000):
                cursor.executemany(
                    f"INSERT INTO t_raw_fed ({', '.join(columns)}) VALUES ({marks})",
                    rows[at : at + 5000],
                )
        my.commit()
        my.close()
        return
    import psycopg

    options = parsed.query.get("options")
    with (
        psycopg.connect(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            dbname=parsed.database,
            options=options if isinstance(options, str) else "",
        ) as conn,
        conn.cursor().copy(f"COPY t_raw_fed ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def remap_domain(frame: pd.DataFrame) -> tuple[str, float]:
    """The shipped topology's domain whose rows (either side) are closest to REMAP_SHARE, among
    those whose remapping moves a host: where a pattern resolves every host of a domain, a new
    domain-map entry changes nothing (and the apply would have nothing to do)."""
    shipped = shipped_domain_map()
    share = {}
    for domain in set(frame.client_domain.dropna()) | set(frame.server_domain.dropna()):
        if domain in shipped:
            rows = ((frame.client_domain == domain) | (frame.server_domain == domain)).sum()
            share[domain] = rows / len(frame)
    for domain in sorted(share, key=lambda d: abs(share[d] - REMAP_SHARE)):
        if remapped_sites(domain, domain_pairs(frame, domain)):
            return domain, share[domain]
    raise RuntimeError("no shipped domain-map entry resolves a generated host: nothing to remap")


def domain_pairs(frame: pd.DataFrame, domain: str) -> list[tuple[str | None, str | None]]:
    """The distinct (host, domain) pairs of either side of `frame`'s rows under `domain` (a
    missing host as None)."""
    pairs = {
        (None if pd.isna(host) else host, domain)
        for side in ("client", "server")
        for host in frame.loc[frame[f"{side}_domain"] == domain, f"{side}_host"].unique()
    }
    return sorted(pairs, key=str)


# --- measurements ---------------------------------------------------------------------------------


def floor_seconds(engine: Engine) -> float:
    best = float("inf")
    with engine.connect() as conn:
        for _ in range(2):  # warm cache, then measured
            started = time.perf_counter()
            conn.execute(floor_statement()).all()
            best = min(best, time.perf_counter() - started)
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


def run_job(
    db: Database, engine: Engine, until: datetime, job: str = "fed10"
) -> tuple[float, int, float]:
    """`xrdagg run JOB`: (job seconds from the run log, rows read, peak RSS MB of its process)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, "run", job, f"--until={until:%Y-%m-%d %H:%M:%S}"],
        env={**os.environ, **db.env, "XRDAGG_SAFETY_LAG_SECONDS": "0"}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"xrdagg run {job} failed ({done.returncode}):\n{done.stderr}")
    peak_kb = int(done.stderr.rsplit("peak_rss_kb", 1)[1].split()[0])
    last = last_job_run(engine)
    assert last.outcome == "OK", last.message
    return float(last.duration_s), int(last.rows_read), peak_kb / 1024


def stats_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in STATS_TABLES
        }


def bench_one(backend: str, mix: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one backend and mix, in a fresh database."""
    db = fresh_database(backend, args.pg_url, args.mysql_url)
    try:
        return _measure(db, mix, args)
    finally:
        db.drop()


def _measure(db: Database, mix: str, args: argparse.Namespace) -> dict[str, Any]:
    days, rows, batch = float(args.days), args.rows, args.batch
    upgrade_schema(db.env)
    engine = open_engine(db.env, pool_size=max(5, max(args.workers)))
    try:
        load_shipped_topology(engine)
        log(f"[{db.backend}/{mix}] generating and loading {rows} rows over {days:g} day(s)…")
        frame = generate_rows(rows, START, days, args.seed, mix)
        domain, share = remap_domain(frame)
        bulk_insert(db.url, frame)
        del frame
        if db.backend == "postgres":
            # What autovacuum does to a production raw table long before its rows are
            # recomputed: the visibility map lets a recompute's per-day counts be index-only
            # scans. This server runs without autovacuum, so the rows loaded just now would
            # stay unvacuumed (a day's count 0.16-0.20 s instead of 0.03 s: 10 % of a recompute).
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text("VACUUM t_raw_fed")
                )
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        if db.backend == "mariadb":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE TABLE t_raw_fed"))
        end_of_data = START + timedelta(days=days + 4)  # past the late arrivals

        log(f"[{db.backend}/{mix}] floor, catch-up, batch…")
        r: dict[str, Any] = {"backend": db.backend, "mix": mix, "rows": rows}
        r["floor_s"] = floor_seconds(engine)
        r["catch_up_s"], r["catch_up_rows"], r["peak_rss_mb"] = run_job(db, engine, end_of_data)
        r["stats_rows"] = stats_rows(engine)
        # A batch of new arrivals: rows inserted after the watermark (as a collector would).
        extra = generate_rows(batch, START + timedelta(days=days), 1 / 144, args.seed + 1, mix)
        extra["unique_id"] = "batch-" + extra["unique_id"]
        extra["insert_date"] = (
            end_of_data
            + pd.to_timedelta(range(1, batch + 1), unit="ms").floor("s")
            + timedelta(seconds=1)
        )
        bulk_insert(db.url, extra)
        r["batch_s"], r["batch_rows"], _ = run_job(db, engine, end_of_data + timedelta(hours=1))
        # The daily job, as the service runs it after them: every day they wrote, rolled up.
        r["daily_after_catch_up_s"], _, _ = run_job(db, engine, end_of_data, job="daily")

        workers = [w for w in sorted(set(args.workers)) if db.backend != "sqlite" or w == 1]
        last_day = START + timedelta(days=days)
        for w in workers:
            log(f"[{db.backend}/{mix}] recompute with {w} worker(s)…")
            seconds, read, chunks = recompute_fed10(engine, START, last_day, w)
            r[f"recompute_w{w}"] = {"s": seconds, "rows": read, "chunks": chunks}
            if w == 1:  # what `xrdagg recompute` runs after its chunks: the days they rebuilt
                r["daily_after_recompute_s"], _, _ = run_job(db, engine, end_of_data, job="daily")
        log(f"[{db.backend}/{mix}] recompute with 1 worker after every statistics row was spoiled…")
        spoil_statistics(engine, START, last_day)
        r["recompute_spoiled_s"], _, _ = recompute_fed10(engine, START, last_day, 1)
        log(f"[{db.backend}/{mix}] audit of fed (consistent after the recompute)…")
        r["audit_s"], consistent = audit_fed10(engine)
        assert consistent, "the audit found differences right after a recompute"
        log(f"[{db.backend}/{mix}] topology apply remapping {domain} ({share:.1%})…")
        started = time.perf_counter()
        changes = apply_remapped_topology(engine, domain)
        r["remap_s"] = time.perf_counter() - started
        assert changes, f"remapping {domain} changed nothing"
        r["remap_domain"], r["remap_share"] = domain, share
        return r
    finally:
        engine.dispose()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=4, help="days the rows' end times span")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"of {', '.join(BACKENDS)}")
    parser.add_argument("--mixes", default="realistic,worst", help="generator mixes (first: goals)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pg-url", default=os.environ.get("XRDAGG_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument(
        "--mysql-url", default=os.environ.get("XRDAGG_TEST_MYSQL_URL", DEFAULT_MYSQL)
    )
    parser.add_argument("--write", metavar="FILE", help="also write the markdown report to FILE")
    args = parser.parse_args(argv)
    args.workers = [1, 4]
    unknown = set(args.backends.split(",")) - set(BACKENDS)
    if unknown:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))} (of {', '.join(BACKENDS)})")
    command = shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    results = []
    for backend in args.backends.split(","):
        for mix in args.mixes.split(","):
            results.append(bench_one(backend, mix, args))
            log(report.one_line(results[-1]))  # each figure as it comes
    print(report.tables(results))
    if args.write:
        context = report.context(
            command,
            args.pg_url if "postgres" in args.backends else None,
            args.mysql_url if "mariadb" in args.backends else None,
        )
        Path(args.write).write_text(report.markdown(context, results, args))
        log(f"wrote {args.write}")


if __name__ == "__main__":
    main()
