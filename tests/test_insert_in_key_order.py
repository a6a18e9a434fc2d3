"""`InsertInKeyOrder` (a contribution's plain INSERT … SELECT into a statistics table): the rows
are the source's, on every backend, and they are written bin by bin. PostgreSQL hashes the
grouping, so it sorts them; SQLite groups by sorting, so they come in order already (MySQL and
MariaDB cluster a table by its key: no insertion order to see there)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import BigInteger, Column, Float, MetaData, String, Table, select, text
from sqlalchemy.dialects import mysql, oracle, postgresql, sqlite

from tests.helpers import Harness
from xrdagg.db.dialect import InsertInKeyOrder, tune_for_aggregation
from xrdagg.db.tables import t_msg_rate
from xrdagg.jobs import contributions
from xrdagg.rules import at_epoch_seconds
from xrdagg.sources import SOURCES

# Groups as the staging holds them, with only the columns T_MSG_RATE's contribution reads.
scratch = MetaData()
t_groups = Table(
    "t_key_order_groups",
    scratch,
    Column("insert_bin", BigInteger, nullable=False),
    Column("src_domain", String(64)),
    Column("n_rows", BigInteger, nullable=False),
    Column("delay_seconds", Float, nullable=False),
    Column("max_delay_seconds", Float, nullable=False),
)
FIRST_BIN = 1_709_251_200  # 2024-03-01 00:00 UTC
BINS, DOMAINS = 60, 40  # 2,400 keys: enough for PostgreSQL to hash them


def _groups() -> list[dict[str, object]]:
    rows = [
        {
            "insert_bin": FIRST_BIN + 600 * b,
            "src_domain": f"d{d}.example.org",
            "n_rows": 1 + (b * d) % 7,
            "delay_seconds": float(b + d),
            "max_delay_seconds": float(d),
        }
        for b in range(BINS)
        for d in range(DOMAINS)
        for _ in range(2)  # two groups a key: the contribution adds them up
    ]
    random.Random(7).shuffle(rows)
    return rows


def test_the_rows_are_the_sources_and_land_bin_by_bin(db: Harness) -> None:
    fed = SOURCES["fed"]
    statement = contributions.msg_rate(t_groups, fed).as_insert()
    scratch.create_all(db.engine)
    try:
        with db.engine.begin() as conn:
            conn.execute(t_groups.insert(), _groups())
            tune_for_aggregation(conn)  # as a job's transaction is: PostgreSQL then hashes
            written = conn.execute(statement).rowcount
            rows = sorted(tuple(r) for r in conn.execute(select(t_msg_rate)))
            order = {"postgresql": "ctid", "sqlite": "rowid"}.get(db.dialect)
            landed = (
                conn.execute(text(f"SELECT bin_start FROM t_msg_rate ORDER BY {order}")).all()
                if order
                else []
            )
            conn.execute(t_msg_rate.delete())
    finally:
        scratch.drop_all(db.engine)
    assert written == BINS * DOMAINS
    expected = [
        (
            at_epoch_seconds(FIRST_BIN + 600 * b),
            fed.label,
            f"d{d}.example.org",
            2 * (1 + (b * d) % 7),
            2.0 * (b + d),
            float(d),
        )
        for b in range(BINS)
        for d in range(DOMAINS)
    ]
    assert rows == sorted(expected)
    if order:
        bins = [r.bin_start for r in landed]
        assert bins == sorted(bins), f"{db.dialect}: rows written out of bin order"


def test_only_postgresql_sorts_and_the_sort_key_must_be_inserted() -> None:
    """The rendering: PostgreSQL orders the rows by the first key; SQLite and MySQL/MariaDB,
    whose groupings come sorted, and Oracle (unmeasured) insert them as they come."""
    statement = contributions.msg_rate(t_groups, SOURCES["fed"]).as_insert()
    rendered = {
        d.name: str(statement.compile(dialect=d))
        for d in (postgresql.dialect(), sqlite.dialect(), mysql.dialect(), oracle.dialect())
    }
    assert rendered["postgresql"].rstrip().endswith("ORDER BY bin_start")
    assert all("ORDER BY" not in sql for name, sql in rendered.items() if name != "postgresql")
    assert all(sql.startswith("INSERT INTO t_msg_rate (bin_start, ") for sql in rendered.values())
    with pytest.raises(ValueError, match="not among the inserted columns"):
        InsertInKeyOrder(t_msg_rate, ["source", "domain"], select(t_groups), "bin_start")
