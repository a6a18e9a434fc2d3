"""Output rows per raw row of the FED job, for one generator mix, on a throw-away SQLite file.

    .venv/bin/python -m bench.ratios                      # 113,815 rows over 1 day, both mixes
    .venv/bin/python -m bench.ratios --rows 1000000 --days 4 --mixes realistic

Goes through the command line only (`xrdagg db upgrade`, `topology load`, `run fed10`), so it
keeps working while the engine's Python API moves. The reference is a real CMS AAA day
(113,815 raw rows): T_STATS_AVG ≈ 0.21, T_USER_ACTIVITY ≈ 0.042, T_STATS_ACCESS_PATTERN ≈ 0.021,
T_MSG_RATE ≈ 0.009 rows per raw row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime

STATS_TABLES = ("t_stats_avg", "t_user_activity", "t_stats_access_pattern", "t_msg_rate")
# Rows per raw row of a real CMS AAA day (113,815 raw rows).
REAL_CMS_DAY = {
    "t_stats_avg": 24_000 / 113_815,
    "t_user_activity": 4_800 / 113_815,
    "t_stats_access_pattern": 2_400 / 113_815,
    "t_msg_rate": 1_000 / 113_815,
}
START = datetime(2024, 3, 1)


def xrdagg(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "xrdagg.cli", *args],
        env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def count_output_rows(rows: int, days: float, mix: str, seed: int = 42) -> dict[str, int]:
    """Generate `rows` FED rows of `mix`, run fed10 over all of them; rows per stats table."""
    from bench.run import bulk_insert, generate_rows

    directory = tempfile.mkdtemp(prefix="xrdagg-ratios-")
    try:
        path = f"{directory}/ratios.db"
        env = {"XRDAGG_DATABASE_URL": f"sqlite:///{path}", "XRDAGG_SAFETY_LAG_SECONDS": "0"}
        xrdagg(env, "db", "upgrade")
        xrdagg(env, "topology", "load")
        bulk_insert(env["XRDAGG_DATABASE_URL"], generate_rows(rows, START, days, seed, mix))
        xrdagg(env, "run", "fed10", "--until", "2030-01-01 00:00:00")
        conn = sqlite3.connect(path)
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in STATS_TABLES}
        conn.close()
        return counts
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=113_815)
    parser.add_argument("--days", type=float, default=1)
    parser.add_argument("--mixes", default="realistic,worst")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    print(f"{args.rows} raw rows over {args.days:g} day(s); rows per raw row (real CMS day)")
    print(f"{'table':<24}" + "".join(f"{m:>22}" for m in args.mixes.split(",")) + f"{'real':>10}")
    results = {
        m: count_output_rows(args.rows, args.days, m, args.seed) for m in args.mixes.split(",")
    }
    for table in STATS_TABLES:
        cells = "".join(f"{r[table]:>12} {r[table] / args.rows:>9.4f}" for r in results.values())
        print(f"{table:<24}{cells}{REAL_CMS_DAY[table]:>10.4f}")


if __name__ == "__main__":
    main()
