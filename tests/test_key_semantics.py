"""Statistics keys compare as Oracle compares them, on every backend: exactly (case, accents,
trailing text), and cut to their byte length. On MySQL/MariaDB this is what the VARBINARY keys
and the binary raw collation are for (xrdagg.db.types); its default collations would fail here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from tests.helpers import Harness, fed
from tests.test_spec_cases import UNTIL, run_fed
from xrdagg.db.dialect import narrow_distinct_chars
from xrdagg.db.tables import RAW_TABLES
from xrdagg.rules import USER_LEN
from xrdagg.topology.store import uncached_pairs


def users(db: Harness) -> list[tuple[str, int]]:
    frame = db.table("t_user_activity")
    return sorted((r.user_dn, r.accesses) for r in frame.itertuples())


def test_keys_differing_only_in_case_or_accents_stay_apart(db: Harness) -> None:
    run_fed(
        db,
        fed(user_dn="/CN=alice"),
        fed(user_dn="/CN=Alice"),
        fed(user_dn="/CN=Jürgen"),
        fed(user_dn="/CN=Jurgen"),
        fed(user_dn="/CN=Jürgen"),
    )
    assert users(db) == [("/CN=Alice", 1), ("/CN=Jurgen", 1), ("/CN=Jürgen", 2), ("/CN=alice", 1)]


def test_raw_hosts_differing_only_in_case_are_two_cached_pairs_of_one_site(db: Harness) -> None:
    run_fed(db, fed(server_host="eos01"), fed(server_host="EOS01"), fed(server_host="Eos01"))
    cached = db.table("t_host_site")
    servers = sorted(r.host_key for r in cached.itertuples() if r.domain_key == "cern.ch")
    assert servers == ["EOS01", "Eos01", "eos01"]
    avg = db.table("t_stats_avg")
    assert list(avg.transfers_ended) == [3]  # all three resolve to the same site and domain


def test_an_over_long_key_is_cut_to_its_length(db: Harness) -> None:
    long_dn = "/CN=" + "x" * (USER_LEN + 100)
    run_fed(db, fed(user_dn=long_dn), fed(user_dn=long_dn[: USER_LEN + 10]))
    assert users(db) == [(long_dn[:USER_LEN], 2)]
    db.run("fed10", UNTIL)  # a second run merges into the cut key without error
    assert users(db) == [(long_dn[:USER_LEN], 2)]


def test_a_key_is_cut_by_characters_or_by_bytes_as_its_database_counts(db: Harness) -> None:
    # 300 two-byte characters: more bytes than USER_LEN, fewer characters.
    within, beyond = "ü" * 300, "ü" * (USER_LEN + 5)
    run_fed(db, fed(user_dn=within), fed(user_dn=beyond))
    if db.dialect in ("oracle", "mysql"):  # VARCHAR2(n BYTE), VARBINARY(n): n bytes
        assert users(db) == [("ü" * (USER_LEN // 2), 2)]
    else:  # n characters: the shorter DN is kept whole
        assert users(db) == sorted([(within, 1), ("ü" * USER_LEN, 1)])


def test_every_raw_pair_is_cached_once_with_its_exact_keys_whatever_their_length(
    db: Harness,
) -> None:
    """A run's new pairs, found narrow first on MySQL/MariaDB and the longer ones apart
    (`dialect.narrow_distinct_chars`, in bytes): keys at and past that width, in one- and
    two-byte characters, long keys alike up to their last character, and keys differing only
    by a trailing space land once each, exactly; a later run with the same pairs finds none
    missing, and on MySQL/MariaDB it no longer looks for long ones."""
    width = 64
    long_host = "h" * 300
    hosts = [
        "eos01", "eos01 ", "x" * width, "x" * (width + 1), long_host + "a", long_host + "b",
        "ü" * (width // 2), "ü" * (width // 2 + 1),  # 64 bytes (narrow); 66 bytes, 33 characters
    ]  # fmt: skip
    long_domain = "d" * (width + 16) + ".org"
    rows = [fed(server_host=h) for h in hosts] + [fed(client_domain=long_domain)]
    with _pair_searches(db) as first:
        run_fed(db, *rows)
    expected = {(h, "cern.ch") for h in hosts} | {
        ("wn1.bnl.gov", "bnl.gov"),
        ("wn1.bnl.gov", long_domain),
    }
    cached = db.table("t_host_site")
    assert sorted(zip(cached.host_key, cached.domain_key, strict=True)) == sorted(expected)
    again = [
        fed(
            **{k: r[k] for k in ("server_host", "client_domain")},
            insert_date=UNTIL + timedelta(hours=1),
        )
        for r in rows
    ]
    db.insert_raw("fed", again)
    with _pair_searches(db) as later:
        report = db.run("fed10", UNTIL + timedelta(days=1))
    assert report.rows_read == len(again) and report.new_pairs == 0
    assert len(db.table("t_host_site")) == len(expected)
    if narrow_distinct_chars(db.dialect) is not None:
        assert first == {"narrow": 1, "wide": 1}  # the long pairs, then at their full width
        assert later == {"narrow": 1, "wide": 0}  # cached: no second statement


@contextmanager
def _pair_searches(db: Harness) -> Iterator[dict[str, int]]:
    """Counts the narrow and the wide searches for new pairs (MySQL/MariaDB) while open."""
    counts = {"narrow": 0, "wide": 0}

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("SELECT pairs.host_key, pairs.domain_key"):
            counts["narrow" if "pairs.wide" in statement else "wide"] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield counts
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_the_narrow_pair_search_probes_the_cache_through_its_key(db: Harness) -> None:
    """MySQL/MariaDB: the narrow keys compare with the cache's VARBINARY keys in binary, so the
    probe can use the cache's primary key (narrow keys with an explicit collation made it a
    scan of the whole cache for every pair: a 20k-row batch took 30 s instead of 0.9 s)."""
    narrow = narrow_distinct_chars(db.dialect)
    if narrow is None:
        pytest.skip(f"{db.dialect} finds new pairs at their own width")
    raw = RAW_TABLES["fed"]
    statement = uncached_pairs({"fed": raw.c.unique_id.is_not(None)}, narrow)
    translate = db.engine.get_execution_options()["schema_translate_map"]
    compiled = statement.compile(
        dialect=db.engine.dialect,
        schema_translate_map=translate,
        compile_kwargs={"literal_binds": True},
    )
    sql = compiled.preparer._render_schema_translates(compiled.string, translate)
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN {sql}").mappings().all()
    probes = [row for row in plan if row["table"] == "t_host_site"]
    assert probes and all("PRIMARY" in (row["possible_keys"] or "") for row in probes), plan
