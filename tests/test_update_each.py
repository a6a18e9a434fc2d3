"""`update_each`: each row's new values land on the row its key names, and no other row changes,
whether the rows go as one executemany or (MySQL/MariaDB) grouped by their new values into
UPDATEs naming their keys."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import insert, select

from tests.helpers import Harness
from xrdagg.db.dialect import statements, update_each
from xrdagg.db.tables import t_host_site

BEFORE = datetime(2024, 3, 1)
AFTER = datetime(2024, 3, 2)


def _pair(host: str, site: str) -> dict[str, object]:
    return {
        "host_key": host, "domain_key": "example.org", "fqdn": f"{host}.example.org",
        "domain_name": "example.org", "site": site, "rule_kind": "domain", "rule_ref": "old",
        "resolved_at": BEFORE,
    }  # fmt: skip


def test_each_row_gets_its_own_values_and_no_other_row_changes(
    db: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statements, "UPDATE_GROUP_KEYS", 2)  # groups of 3 take two statements
    hosts = [f"h{i}" for i in range(7)]
    changes = {"h0": "SITE-A", "h1": "SITE-A", "h2": "SITE-A", "h3": "SITE-B", "h5": "SITE-A"}
    with db.engine.begin() as conn:
        delete_all = t_host_site.delete()
        conn.execute(delete_all)
        conn.execute(insert(t_host_site), [_pair(h, "OLD-SITE") for h in hosts])
        update_each(
            conn,
            t_host_site,
            ("host_key", "domain_key"),
            [
                {
                    "host_key": h,
                    "domain_key": "example.org",
                    "site": site,
                    "rule_kind": "pattern",
                    "rule_ref": f"rule-{site}",
                    "resolved_at": AFTER,
                }
                for h, site in changes.items()
            ],
        )
        rows = {
            r.host_key: (r.site, r.rule_kind, r.rule_ref, r.resolved_at, r.fqdn)
            for r in conn.execute(select(t_host_site))
        }
        conn.execute(delete_all)
    expected = {
        h: (
            (changes[h], "pattern", f"rule-{changes[h]}", AFTER, f"{h}.example.org")
            if h in changes
            else ("OLD-SITE", "domain", "old", BEFORE, f"{h}.example.org")
        )
        for h in hosts
    }
    assert rows == expected


def test_no_rows_is_no_statement(db: Harness) -> None:
    with db.engine.begin() as conn:
        update_each(conn, t_host_site, ("host_key", "domain_key"), [])
