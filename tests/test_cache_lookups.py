"""An incremental window of a few rows against a large resolution cache looks its pairs up in the
cache's index (`dialect.joining_by_index_lookups`) instead of hashing the whole cache, which grows
with every host ever seen; a window of many rows leaves the join to PostgreSQL's planner. The
statistics are the same either way."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.helpers import Harness, check_invariant, generated_rows
from xrdagg.topology.store import LOOKUP_ROWS_PER_CACHED_PAIR, few_rows_for_cache

T0 = datetime(2024, 3, 1)
CACHED = 20_000  # pairs of hosts seen before


def _fill_cache(db: Harness, pairs: int) -> None:
    """`pairs` resolved hosts of other domains in the cache, analysed, as runs leave it."""
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO t_host_site (host_key, domain_key, fqdn, domain_name, site, "
                "rule_kind, rule_ref, resolved_at) "
                "SELECT 'wn' || g || '.seen.org', 'seen.org', 'wn' || g || '.seen.org', "
                "'seen.org', 'unknown', 'NONE', NULL, TIMESTAMP '2024-01-01 00:00:00' "
                f"FROM generate_series(1, {pairs}) AS g"
            )
        )
        conn.execute(text("ANALYZE t_host_site"))


_WATCHED = (
    ("pairs", "SELECT pairs.host_key"),
    ("stage", "CREATE TEMPORARY TABLE t_stage_group"),
    ("stats_avg", "INSERT INTO t_stats_avg"),  # after the staging: the setting back
)


def _run_watching_plans(db: Harness, cached: int, raw_rows: int, seed: int) -> dict[str, str]:
    """`cached` pairs in the cache, then a run of `raw_rows` new raw rows, checked against the
    invariant; returns the plans of the run's pair search and staging as it ran them, each
    after whether hash joins were allowed ("enable_hashjoin = on")."""
    _fill_cache(db, cached)
    rows = generated_rows(raw_rows, start=T0, days=0.5, seed=seed)
    db.insert_raw("fed", rows)
    with db.engine.begin() as conn:  # as autovacuum keeps them: the planner knows the rows
        conn.execute(text("ANALYZE t_raw_fed"))
    plans: dict[str, str] = {}

    def explain(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        for name, start in _WATCHED:
            if statement.startswith(start):
                cursor.execute("SHOW enable_hashjoin")
                allowed = f"enable_hashjoin = {cursor.fetchone()[0]}"
                if name == "stats_avg":
                    plans[name] = allowed
                    continue
                query = statement.split(" AS ", 1)[1] if name == "stage" else statement
                cursor.execute(f"EXPLAIN {query}", params)
                plans[name] = "\n".join([allowed, *(row[0] for row in cursor.fetchall())])

    event.listen(db.engine, "before_cursor_execute", explain)
    try:
        db.run("fed10", T0 + timedelta(days=2))
    finally:
        event.remove(db.engine, "before_cursor_execute", explain)
    assert set(plans) == {"pairs", "stage", "stats_avg"}
    # The statistics statements after the staging run as they would have anyway.
    assert plans.pop("stats_avg") == "enable_hashjoin = on"
    db.run("daily")
    check_invariant(db, [("fed", r) for r in rows])
    return plans


def test_a_small_window_looks_its_pairs_up_in_a_large_cache(db: Harness) -> None:
    if db.dialect != "postgresql":
        with db.engine.connect() as conn:
            assert not few_rows_for_cache(conn, 1)  # no estimate: the plans are the database's
        pytest.skip("only PostgreSQL hashes a whole table to join a few rows to it")
    plans = _run_watching_plans(db, CACHED, 2000, seed=61)
    with db.engine.connect() as conn:
        assert few_rows_for_cache(conn, 2000)
        assert not few_rows_for_cache(conn, int(CACHED * LOOKUP_ROWS_PER_CACHED_PAIR) + 1000)
        assert conn.exec_driver_sql("SHOW enable_hashjoin").scalar() == "on"  # gone at commit
    for name, plan in plans.items():
        # Looked up in its primary key, never read whole (into a hash) for 2,000 rows.
        assert plan.startswith("enable_hashjoin = off"), (name, plan)
        assert "Seq Scan on t_host_site" not in plan, (name, plan)
        assert "pk_t_host_site" in plan, (name, plan)


def test_a_large_window_leaves_the_join_to_the_planner(db: Harness) -> None:
    if db.dialect != "postgresql":
        pytest.skip("only PostgreSQL chooses between the two")
    plans = _run_watching_plans(db, 1000, 3000, seed=62)
    # More rows than a quarter of the cache: hash joins stay allowed (a first catch-up of 1M
    # rows against 112k cached pairs takes them).
    assert all(plan.startswith("enable_hashjoin = on") for plan in plans.values()), plans
