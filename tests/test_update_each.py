"""`update_each`: each row's new values land on the row its key names, and no other row changes,
whether a row goes in the executemany or in a group's UPDATE naming its leading keys and a list
of last keys (every group on MySQL/MariaDB)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Connection, event, insert, select

from tests.helpers import Harness
from xrdagg.db.dialect import statements, update_each
from xrdagg.db.tables import t_host_site

BEFORE = datetime(2024, 3, 1)
AFTER = datetime(2024, 3, 2)


DOMAINS = ("example.org", "other.org")


def _pair(host: str, domain: str, site: str) -> dict[str, object]:
    return {
        "host_key": host, "domain_key": domain, "fqdn": f"{host}.{domain}",
        "domain_name": domain, "site": site, "rule_kind": "domain", "rule_ref": "old",
        "resolved_at": BEFORE,
    }  # fmt: skip


def _move(conn: Connection, sites: dict[tuple[str, str], str]) -> None:
    """`update_each` of the cache: each (host, domain) of `sites` to its new site, by a pattern."""
    update_each(
        conn,
        t_host_site,
        ("domain_key", "host_key"),
        [
            {
                "host_key": h,
                "domain_key": d,
                "site": site,
                "rule_kind": "pattern",
                "rule_ref": f"rule-{site}",
                "resolved_at": AFTER,
            }
            for (h, d), site in sites.items()
        ],
    )


@pytest.mark.parametrize("group_min", [1, 2, 100], ids=["all-grouped", "mixed", "small-groups"])
def test_each_row_gets_its_own_values_and_no_other_row_changes(
    db: Harness, monkeypatch: pytest.MonkeyPatch, group_min: int
) -> None:
    monkeypatch.setattr(statements, "UPDATE_GROUP_KEYS", 2)  # a group of 4 takes two UPDATEs
    monkeypatch.setattr(statements, "UPDATE_GROUP_MIN", group_min)
    hosts = [f"h{i}" for i in range(7)]
    # The same host names under two domains: a group's UPDATE must name its domain too. Rows
    # with the same new values under another domain are another group.
    changes = {
        ("h0", "example.org"): "SITE-A", ("h1", "example.org"): "SITE-A",
        ("h2", "example.org"): "SITE-A", ("h3", "example.org"): "SITE-B",
        ("h5", "example.org"): "SITE-A", ("h1", "other.org"): "SITE-A",
    }  # fmt: skip
    with db.engine.begin() as conn:
        delete_all = t_host_site.delete()
        conn.execute(delete_all)
        conn.execute(insert(t_host_site), [_pair(h, d, "OLD-SITE") for h in hosts for d in DOMAINS])
        _move(conn, changes)
        rows = {
            (r.host_key, r.domain_key): (r.site, r.rule_kind, r.rule_ref, r.resolved_at, r.fqdn)
            for r in conn.execute(select(t_host_site))
        }
        conn.execute(delete_all)
    expected = {
        (h, d): (
            (changes[h, d], "pattern", f"rule-{changes[h, d]}", AFTER, f"{h}.{d}")
            if (h, d) in changes
            else ("OLD-SITE", "domain", "old", BEFORE, f"{h}.{d}")
        )
        for h in hosts
        for d in DOMAINS
    }
    assert rows == expected


def test_a_domain_is_one_update_and_scattered_pairs_are_one_statement(db: Harness) -> None:
    """A domain's 10 pairs with the same new values: one UPDATE. Ten pairs under ten domains
    with the same new values: one statement too (an executemany; on MySQL/MariaDB, where an
    executemany is a round trip per row, one UPDATE naming the pairs), not one per domain."""
    one_domain = [("example.org", f"h{i}") for i in range(10)]
    ten_domains = [(f"d{i}.org", "h0") for i in range(10)]
    with db.engine.begin() as conn:
        delete_all = t_host_site.delete()
        conn.execute(delete_all)
        conn.execute(
            insert(t_host_site), [_pair(h, d, "OLD-SITE") for d, h in one_domain + ten_domains]
        )
        updates: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if statement.lstrip().upper().startswith("UPDATE"):
                updates.append(statement)

        event.listen(conn, "before_cursor_execute", count)
        for pairs in (one_domain, ten_domains):
            updates.clear()
            _move(conn, {(h, d): "NEW-SITE" for d, h in pairs})
            assert len(updates) == 1, updates
        event.remove(conn, "before_cursor_execute", count)
        moved = conn.execute(
            select(t_host_site.c.domain_key, t_host_site.c.host_key).where(
                t_host_site.c.site == "NEW-SITE"
            )
        ).all()
        conn.execute(delete_all)
    assert sorted(moved) == sorted(one_domain + ten_domains)


def test_no_rows_is_no_statement(db: Harness) -> None:
    with db.engine.begin() as conn:
        update_each(conn, t_host_site, ("host_key", "domain_key"), [])
