"""How fast `xrdagg report` answers on a month of statistics (issue 11: well under a second for
daily ranges on PostgreSQL).

    .venv/bin/python -m bench.reports --rows 1500000 --days 30     # PostgreSQL at DEFAULT_PG

Generates FED and EOS rows over DAYS days (xrdagg.raw.generate, realistic mix) into a schema of
its own, aggregates them with the jobs (`xrdagg run`), then times every report kind three ways:
the whole month (daily tables), one day (daily tables) and twelve hours (10-minute tables), each
the best of three calls, in process. Prints a Markdown table; drops the schema at the end.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

START = datetime(2024, 3, 1)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="FED rows (EOS: a fifth)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--url", default=DEFAULT_PG)
    args = parser.parse_args()

    from xrdagg.config import PROJECT_ROOT, Settings
    from xrdagg.db import migrate
    from xrdagg.db.engine import make_engine
    from xrdagg.db.tables import t_site_pair_day, t_stats_avg, t_user_activity
    from xrdagg.jobs.runner import JobRunner
    from xrdagg.jobs.specs import load_job_specs
    from xrdagg.raw.generate import generate
    from xrdagg.raw.load import load_frame
    from xrdagg.report.query import QUERIES, Filters
    from xrdagg.topology.files import read_topology_dir
    from xrdagg.topology.store import load_topology

    url = make_url(args.url).set(drivername="postgresql+psycopg")
    schema = f"xrdagg_bench_reports_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    env = {
        "XRDAGG_DATABASE_URL": url.update_query_dict(
            {"options": f"-csearch_path={schema}"}
        ).render_as_string(hide_password=False),
        "XRDAGG_SAFETY_LAG_SECONDS": "0",
    }
    settings = Settings.from_env(env)
    try:
        migrate.upgrade(settings)
        engine = make_engine(settings)
        topology = PROJECT_ROOT / "topology"
        with engine.begin() as conn:
            load_topology(conn, read_topology_dir(topology), topology)
        began = time.monotonic()
        for source, rows, seed in (("fed", args.rows, 1), ("eos", args.rows // 5, 2)):
            chunk = 250_000
            for i, offset in enumerate(range(0, rows, chunk)):
                n = min(chunk, rows - offset)
                frame = generate(
                    n, start=START, days=args.days, seed=seed * 1000 + i, source=source
                )
                frame["unique_id"] = f"{source}{i}-" + frame["unique_id"]
                with engine.begin() as conn:
                    load_frame(conn, source, frame)
        loaded = time.monotonic() - began
        specs = [s for s in load_job_specs(PROJECT_ROOT / "jobs") if s.name != "housekeeping"]
        runner = JobRunner(engine, settings, specs)
        began = time.monotonic()
        for spec in specs:
            report = runner.run(spec, until=START + timedelta(days=args.days + 8))
            assert report.outcome == "OK", report.message
        aggregated = time.monotonic() - began
        with engine.connect() as conn:
            sizes = {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (t_stats_avg, t_site_pair_day, t_user_activity)
            }
            conn.execute(text("ANALYZE"))
        month = START + timedelta(days=args.days)
        day = START + timedelta(days=10)
        ranges = {
            f"{args.days} days": Filters(START, month),
            "1 day": Filters(day, day + timedelta(days=1)),
            "12 hours": Filters(day + timedelta(hours=6), day + timedelta(hours=18)),
        }
        print(f"{args.rows} FED + {args.rows // 5} EOS rows over {args.days} days: loaded in "
              f"{loaded:.0f} s, aggregated in {aggregated:.0f} s; table rows: {sizes}")  # fmt: skip
        print("\n| kind | " + " | ".join(ranges) + " |")
        print("|---|" + "---|" * len(ranges))
        for kind, query in QUERIES.items():
            cells = []
            for filters in ranges.values():
                best = float("inf")
                for _ in range(3):
                    with engine.connect() as conn:
                        began = time.monotonic()
                        query(conn, filters)
                        best = min(best, time.monotonic() - began)
                cells.append(f"{best * 1000:.0f} ms")
            print(f"| {kind} | " + " | ".join(cells) + " |")
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
