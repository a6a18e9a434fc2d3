"""`insert_ignoring_duplicates`: every new row lands with its values as given (texts, NULLs, a
date), a row whose key is there already leaves that row as it was, on every backend and whichever
way the rows travel (COPY on PostgreSQL: straight into the table when every key is new, through a
temporary table when one is not; values handed to the driver on SQLite and MySQL/MariaDB;
SQLAlchemy's executemany on Oracle), and a row the table refuses fails as any statement would."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import exc, func, insert, select

from tests.helpers import Harness
from xrdagg.db.dialect import insert_ignoring_duplicates
from xrdagg.db.tables import t_host_site

# The column's type keeps whole seconds (UtcDate): the fraction tells whether it saw the value.
RESOLVED = datetime(2024, 3, 1, 12, 34, 56, 789000)


def _pair(host: str, site: str, rule_ref: str | None) -> dict[str, object]:
    return {
        "host_key": host, "domain_key": "example.org", "fqdn": f"{host}.example.org",
        "domain_name": "example.org", "site": site, "rule_kind": "domain", "rule_ref": rule_ref,
        "resolved_at": RESOLVED,
    }  # fmt: skip


def test_new_rows_land_as_given_and_existing_keys_are_left_alone(db: Harness) -> None:
    existing = _pair("h0", "FIRST-SITE", "first")
    new = [
        _pair("h0", "SECOND-SITE", "second"),  # its key is there: skipped
        _pair("h1", "SITE-A", None),
        _pair("100%_o'k\\", "SITE-Ü", "rule %s"),  # texts a driver's escaping could mangle
    ]
    with db.engine.begin() as conn:
        conn.execute(t_host_site.delete())
        conn.execute(insert(t_host_site), [existing])
        insert_ignoring_duplicates(conn, t_host_site, new)
        rows = {r.host_key: dict(r._mapping) for r in conn.execute(select(t_host_site))}
        conn.execute(t_host_site.delete())
    stored = [{**p, "resolved_at": RESOLVED.replace(microsecond=0)} for p in (existing, *new[1:])]
    assert rows == {p["host_key"]: p for p in stored}


def test_rows_with_new_keys_only_land_as_given(db: Harness) -> None:
    """PostgreSQL's COPY straight into the table; a column a row lacks is NULL."""
    new = [_pair(f"h{i}", "SITE-A", f"r{i}") for i in range(3)]
    del new[1]["rule_ref"]
    with db.engine.begin() as conn:
        conn.execute(t_host_site.delete())
        insert_ignoring_duplicates(conn, t_host_site, new)
        rows = {r.host_key: dict(r._mapping) for r in conn.execute(select(t_host_site))}
        conn.execute(t_host_site.delete())
    stored = [{**p, "resolved_at": RESOLVED.replace(microsecond=0)} for p in new]
    stored[1]["rule_ref"] = None
    assert rows == {p["host_key"]: p for p in stored}


def test_a_row_the_table_refuses_fails_the_statement_and_lands_nothing(db: Harness) -> None:
    """A NOT NULL column without a value: the database's error, as SQLAlchemy raises it for any
    statement (on PostgreSQL the COPY's, which is not a duplicate key to retry without), and
    none of the rows lands."""
    rows = [_pair("h1", "SITE-A", None), {**_pair("h2", "SITE-A", None), "site": None}]
    with db.engine.connect() as conn:
        conn.execute(t_host_site.delete())
        conn.commit()
        with pytest.raises(exc.IntegrityError), conn.begin():
            insert_ignoring_duplicates(conn, t_host_site, rows)
        assert conn.execute(select(func.count()).select_from(t_host_site)).scalar_one() == 0
