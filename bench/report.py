"""The benchmark's figures as tables: one a backend, a column a generator mix."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROJECTED_ROWS = 1_000_000_000
FULL_ROWS = 1_000_000
# Statistics rows per raw row of a real CMS AAA day (113,815 raw rows).
REAL_CMS_DAY = {
    "t_stats_avg": 0.21,
    "t_user_activity": 0.042,
    "t_stats_access_pattern": 0.021,
    "t_msg_rate": 0.009,
}


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def figures(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of every figure and ratio of one measurement, in report order."""
    floor = r["floor_s"]
    w1, w4 = r.get("recompute_w1"), r.get("recompute_w4")
    spoiled = r.get("recompute_spoiled_s")
    rollup = r.get("daily_after_recompute_s")
    rate1 = w1["rows"] / w1["s"] if w1 else None
    rate4 = w4["rows"] / w4["s"] if w4 else None
    rows = [
        ("floor: bare GROUP BY by bin (s)", _seconds(floor)),
        ("catch-up of fed10 (s)", _seconds(r["catch_up_s"])),
        ("catch-up rows/s", f"{r['catch_up_rows'] / r['catch_up_s']:,.0f}"),
        ("catch-up ÷ floor (target ≤ 10×)", _ratio(r["catch_up_s"] / floor)),
        (f"batch of {r['batch_rows']:,} rows (s; target < 0.5)", _seconds(r["batch_s"])),
        (
            "daily job after the catch-up and the batch (s)",
            _seconds(r.get("daily_after_catch_up_s")),
        ),
        ("recompute, 1 worker (s)", _seconds(w1 and w1["s"])),
        ("recompute, 1 worker ÷ floor (target ≤ 10×)", _ratio(w1 and w1["s"] / floor)),
        (
            "daily roll-up of the days the 1-worker recompute rebuilt (s)",
            _seconds(rollup),
        ),
        ("recompute, 4 workers (s)", _seconds(w4 and w4["s"])),
        ("recompute, 4 workers ÷ floor", _ratio(w4 and w4["s"] / floor)),
        (
            "recompute speed-up, 4 vs 1 worker (target ≥ 3×)",
            _ratio(w4 and w1 and w1["s"] / w4["s"]),
        ),
        (
            "recompute chunks, 1 / 4 workers",
            " / ".join(str(w["chunks"]) if w else "–" for w in (w1, w4)),
        ),
        ("recompute, 1 worker, every statistics row wrong (s)", _seconds(spoiled)),
        ("recompute, every row wrong ÷ floor", _ratio(spoiled and spoiled / floor)),
        ("audit of fed, every day, consistent (s)", _seconds(r.get("audit_s"))),
        (
            "audit ÷ 1-worker recompute (target < 10%)",
            _share(w1 and r.get("audit_s") and r["audit_s"] / w1["s"]),
        ),
        ("topology apply: remapped domain (its share of rows)", _remapped(r)),
        ("topology apply (s)", _seconds(r["remap_s"])),
        (
            "topology apply ÷ 1-worker recompute (target ≤ 5%)",
            _share(w1 and r["remap_s"] / w1["s"]),
        ),
        (
            "the same, each with its daily roll-up, as the commands run",
            _share(w1 and rollup and r["remap_s"] / (w1["s"] + rollup)),
        ),
        ("peak memory of the catch-up process, VmHWM (MB)", f"{r['peak_rss_mb']:.0f}"),
        ("1e9 rows recomputed at the 1-worker rate (h)", _hours(rate1)),
        ("1e9 rows recomputed at the 4-worker rate (h)", _hours(rate4)),
    ]
    for table, count in r["stats_rows"].items():
        per_row = count / r["rows"]
        real = REAL_CMS_DAY[table]
        rows.append((f"{table} rows per raw row (real CMS day {real})", f"{per_row:.3f}"))
    return rows


def _remapped(r: dict[str, Any]) -> str:
    return f"{r['remap_domain']} ({r['remap_share']:.1%})"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _hours(rate: float | None) -> str:
    return "–" if rate is None else f"{PROJECTED_ROWS / rate / 3600:.1f}"


def one_line(r: dict[str, Any]) -> str:
    return f"[{r['backend']}/{r['mix']}] " + "; ".join(f"{k}: {v}" for k, v in figures(r))


def tables(results: list[dict[str, Any]]) -> str:
    """A markdown table per backend: a row a figure, a column a mix."""
    out = []
    for backend in dict.fromkeys(r["backend"] for r in results):
        mine = [r for r in results if r["backend"] == backend]
        columns = [dict(figures(r)) for r in mine]
        labels = list(dict.fromkeys(label for r in mine for label, _ in figures(r)))
        out.append(f"### {backend}, {mine[0]['rows']:,} rows\n")
        out.append("| figure | " + " | ".join(r["mix"] for r in mine) + " |")
        out.append("|---|" + "---:|" * len(mine))
        for label in labels:
            out.append(f"| {label} | " + " | ".join(c.get(label, "–") for c in columns) + " |")
        out.append("")
    return "\n".join(out)


def context(command: str, pg_url: str | None, mysql_url: str | None = None) -> dict[str, str]:
    """Where and how the figures were measured."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    info = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{len(os.sched_getaffinity(0))} CPUs (nproc), {memory_kb / 2**20:.1f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "engine": _git_revision(),
    }
    if pg_url:
        info["postgresql"] = _pg_version(pg_url)
    if mysql_url:
        info["mariadb"] = _server_version(mysql_url, "mysql+pymysql")
    return info


def _git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "xrdagg", "migrations", "jobs")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")


def _pg_version(pg_url: str) -> str:
    return _server_version(pg_url, "postgresql+psycopg")


def _server_version(url: str, driver: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(drivername=driver))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version()")).scalar_one())
    finally:
        engine.dispose()


def markdown(info: dict[str, str], results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    smoke = ""
    if args.rows < FULL_ROWS:
        smoke = (
            f"> **Smoke figures.** {args.rows:,} rows over {args.days:g} day(s), only to show that"
            " the benchmark runs end to end; they say nothing about the goals and stand only"
            " until the full `make bench` (1,000,000 rows over 4 days, every backend, both mixes)"
            " is run and rewrites this file. At this size the floor is a fraction of a second,"
            " so every ratio to it is dominated by fixed costs, and a recompute has one chunk a"
            " day, so 4 workers have little to share.\n\n"
        )
    lines = [f"- {key}: `{value}`" for key, value in info.items()]
    return (
        "# Benchmarks\n\n"
        + smoke
        + "Written by `make bench` (`python -m bench.run --write docs/benchmarks.md`); see"
        " `bench/run.py` for what each step does.\n\n"
        + "\n".join(lines)
        + f"\n- rows: {args.rows:,} FED rows over {args.days:g} day(s), seed {args.seed};"
        f" batch {args.batch:,} rows\n\n" + _EXPLAINED + "\n## Figures\n\n" + tables(results)
    )


_EXPLAINED = """\
## What is measured

Each backend and mix starts from a fresh database (a temporary SQLite file; a throw-away schema
on PostgreSQL, a throw-away database on MariaDB) holding the generated rows (`xrdagg.raw.generate`):

- **realistic** mix, the one the goals are judged on: traffic comes in tasks (a user's jobs at
  one client site reading from one server for hours), a user has one VO, production accounts
  dominate, a few site pairs carry most reads. On a 113,815-row day it gives about as many
  statistics rows as a real CMS AAA day (the last rows of each table compare them).
- **worst** mix: every key drawn independently per row, almost one statistics row per raw row.

The calibration is per day of about 114k rows: more rows a day give fewer statistics rows per
raw row, as on a busier real day. The loaded rows are analysed (PostgreSQL, MariaDB), and on
PostgreSQL vacuumed as autovacuum would have done long before they are recomputed (this server
runs without autovacuum); the batch's rows are not. Then, per backend and mix:

- **floor**: the bare `GROUP BY` of the raw rows by 10-minute bin of END_DATE (count, sum of
  bytes), fetched; the best of two.
- **catch-up**: `xrdagg run fed10` over every row, in its own process; the job's own time, from
  its run log.
- **batch**: new rows inserted after the watermark, then `xrdagg run fed10` again.
- **daily job**: `xrdagg run daily` after the catch-up and the batch (every day they wrote,
  rolled up into the daily tables), and again right after the 1-worker recompute (the days it
  rebuilt, as `xrdagg recompute` rolls them up after its chunks). The recompute's figures do not
  include that roll-up; the topology apply's include its own (the daily rows of the keys it
  changed, in its transaction).
- **recompute**: fed10 over every day of data, through the recompute API, with 1 worker, and
  with 4 on PostgreSQL and MariaDB (SQLite has one writer and refuses more); chunks as
  `xrdagg recompute` plans them: consecutive days while their rows fit in one chunk (1M rows),
  and with 4 workers no chunk of several days holds more than a quarter of the rows, so the 1-
  and the 4-worker runs may rebuild different chunks (their counts are in the table), and the
  speed-up compares the two plans as well as the workers.
  The statistics are right before it (the catch-up and the batch made them), as they mostly are
  when a range is recomputed: PostgreSQL then writes only the rows that differ (a fraction of a
  percent, sums of fractional shares taken in another order), the others rewrite every row.
  So once more, with 1 worker, after every statistics row was made wrong (a count raised by
  one): every row is rewritten everywhere.
- **audit**: `xrdagg audit --source fed` over every day, right after the recompute (so the
  statistics are consistent: the audit reads everything and repairs nothing); also as a share
  of the 1-worker recompute.
- **topology apply**: the shipped topology with one domain (1–2 % of the rows) mapped to a new
  site, applied (with the roll-up of the daily rows it changes); also as a share of the
  1-worker recompute (without its roll-up), and of the recompute with its roll-up (what
  `xrdagg recompute` runs).
- **peak memory**: VmHWM of the catch-up's process.
- **projection**: hours to recompute 1e9 rows at the measured 1-worker and 4-worker rates (raw
  rows read ÷ seconds).

Targets (issue 13): catch-up and a 1-worker recompute ≤ 10× the floor, a 20k-row batch < 0.5 s,
4 workers ≥ 3× one worker, peak memory flat in the number of rows, a topology apply ≤ 5 % of the
full recompute. The database server and the
benchmark share the same machine; 4 workers on fewer cores measure contention as much as
parallelism.
"""
