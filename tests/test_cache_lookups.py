"""An incremental window of a few rows against a large resolution cache looks its pairs up in the
cache's index (`dialect.joining_by_index_lookups`: hash joins and scans off) instead of hashing the
whole cache, which grows with every host ever seen; a window of many rows leaves the join to
PostgreSQL's planner. The statistics are the same either way."""

from __future__ import annotations

import re
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


def _run_watching_plans(
    db: Harness, rows: list[dict[str, Any]], until: datetime, *, analysed: bool = True
) -> dict[str, str]:
    """A run of fed10 until `until` after `rows` arrived (`analysed`: and the raw table was
    analysed, as autovacuum keeps it, so that the planner knows them); returns the plans of the
    run's pair search and staging as it ran them, each after whether hash joins and scans were
    allowed ("enable_hashjoin = on, enable_seqscan = on")."""
    db.insert_raw("fed", rows)
    if analysed:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE t_raw_fed"))
    plans: dict[str, str] = {}

    def explain(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        for name, start in _WATCHED:
            if statement.startswith(start):
                allowed = []
                for setting in ("enable_hashjoin", "enable_seqscan"):
                    cursor.execute(f"SHOW {setting}")
                    allowed.append(f"{setting} = {cursor.fetchone()[0]}")
                if name == "stats_avg":
                    plans[name] = ", ".join(allowed)
                    continue
                query = statement.split(" AS ", 1)[1] if name == "stage" else statement
                cursor.execute(f"EXPLAIN {query}", params)
                plans[name] = "\n".join([", ".join(allowed), *(r[0] for r in cursor.fetchall())])

    event.listen(db.engine, "before_cursor_execute", explain)
    try:
        db.run("fed10", until)
    finally:
        event.remove(db.engine, "before_cursor_execute", explain)
    assert set(plans) == {"pairs", "stage", "stats_avg"}
    # The statistics statements after the staging run as they would have anyway.
    assert plans.pop("stats_avg") == "enable_hashjoin = on, enable_seqscan = on"
    return plans


def _check_statistics(db: Harness, rows: list[dict[str, Any]]) -> None:
    db.run("daily")
    check_invariant(db, [("fed", r) for r in rows])


def _hashes(plan: str) -> bool:
    return re.search(r"Hash (Left |Right |Full |Anti |Semi |Right Anti )?Join", plan) is not None


def _looks_up(plan: str, index: str) -> bool:
    """Whether `plan` probes `index` with a value (a lookup), not reads it whole."""
    return re.search(rf"Index (Only )?Scan using {index} on .*\n\s+Index Cond: ", plan) is not None


def test_a_small_window_looks_its_pairs_up_in_a_large_cache(db: Harness) -> None:
    if db.dialect != "postgresql":
        with db.engine.connect() as conn:
            assert not few_rows_for_cache(conn, 1)  # no estimate: the plans are the database's
        pytest.skip("only PostgreSQL hashes a whole table to join a few rows to it")
    _fill_cache(db, CACHED)
    rows = generated_rows(2000, start=T0, days=0.5, seed=61)
    plans = _run_watching_plans(db, rows, T0 + timedelta(days=2))
    _check_statistics(db, rows)
    with db.engine.connect() as conn:
        assert few_rows_for_cache(conn, 2000)
        assert not few_rows_for_cache(conn, int(CACHED * LOOKUP_ROWS_PER_CACHED_PAIR) + 1000)
        # Gone at commit.
        assert conn.exec_driver_sql("SHOW enable_hashjoin").scalar() == "on"
        assert conn.exec_driver_sql("SHOW enable_seqscan").scalar() == "on"
    for name, plan in plans.items():
        # Looked up in its primary key, never read whole (into a hash) for 2,000 rows.
        assert plan.startswith("enable_hashjoin = off, enable_seqscan = off"), (name, plan)
        assert not _hashes(plan), (name, plan)
        assert _looks_up(plan, "pk_t_host_site"), (name, plan)


def test_a_batch_that_arrived_after_the_last_analyse_looks_every_row_up(db: Harness) -> None:
    """A batch arrives after the raw table was last analysed, beyond its histogram, so the
    planner expects far fewer rows than arrived. Without hash joins it then read the alias map
    whole again for every raw row (the benchmark's 20k-row batch: its staging 348-366 ms
    against 227-244 ms by lookups); each join is a lookup in a primary key instead."""
    if db.dialect != "postgresql":
        pytest.skip("only PostgreSQL hashes or scans a whole table to join a few rows to it")
    _fill_cache(db, CACHED)
    # The rows the last ANALYZE knows, then the batch it does not.
    earlier = generated_rows(2000, start=T0, days=0.5, seed=63)
    _run_watching_plans(db, earlier, T0 + timedelta(days=2))
    with db.engine.begin() as conn:  # as autovacuum keeps them
        conn.execute(text("ANALYZE t_raw_fed, t_host_site, t_site_alias"))
    batch = generated_rows(2000, start=T0 + timedelta(days=2), days=0.5, seed=64)
    plans = _run_watching_plans(db, batch, T0 + timedelta(days=4), analysed=False)
    _check_statistics(db, earlier + batch)
    stage = plans["stage"]
    # The situation this is about: the planner expects a fraction of the 2,000 rows.
    expected = re.search(r"Index Scan using ix_raw_fed_insert_date on .* rows=(\d+)", stage)
    assert expected is not None and int(expected.group(1)) < 500, stage
    for name, plan in plans.items():
        assert plan.startswith("enable_hashjoin = off, enable_seqscan = off"), (name, plan)
        assert "Seq Scan" not in plan and not _hashes(plan), (name, plan)
        assert _looks_up(plan, "pk_t_host_site"), (name, plan)
    assert _looks_up(stage, "pk_t_site_alias"), stage


def test_a_large_window_leaves_the_join_to_the_planner(db: Harness) -> None:
    if db.dialect != "postgresql":
        pytest.skip("only PostgreSQL chooses between the two")
    _fill_cache(db, 1000)
    rows = generated_rows(3000, start=T0, days=0.5, seed=62)
    plans = _run_watching_plans(db, rows, T0 + timedelta(days=2))
    _check_statistics(db, rows)
    # More rows than a quarter of the cache: hash joins stay allowed (a first catch-up of 1M
    # rows against 112k cached pairs takes them).
    assert all(
        plan.startswith("enable_hashjoin = on, enable_seqscan = on") for plan in plans.values()
    ), plans
