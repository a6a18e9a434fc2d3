"""`InsertInKeyOrder` (a contribution's plain INSERT … SELECT into a statistics table): the rows
are the source's, on every backend, and they are written bin by bin. PostgreSQL hashes the
grouping, so it sorts them; SQLite groups by sorting, so they come in order already (MySQL and
MariaDB cluster a table by its key: no insertion order to see there)."""

from __future__ import annotations

import random

from sqlalchemy import BigInteger, Column, Float, MetaData, String, Table, select, text

from tests.helpers import Harness
from xrdagg.db.dialect import tune_for_aggregation
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
            rows = conn.execute(
                select(t_msg_rate).order_by(t_msg_rate.c.bin_start, t_msg_rate.c.domain)
            ).all()
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
        for d in sorted(range(DOMAINS), key=lambda d: f"d{d}.example.org")
    ]
    assert [tuple(r) for r in rows] == expected
    if order:
        bins = [r.bin_start for r in landed]
        assert bins == sorted(bins), f"{db.dialect}: rows written out of bin order"
