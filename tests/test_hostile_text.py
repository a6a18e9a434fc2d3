"""Hostile text (issue 9): a pattern that would backtrack for ever, and console markup in raw
domains, site names and topology entries. Nothing hangs, nothing crashes, nothing vanishes."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

from tests.helpers import TEST_TOPOLOGY, Harness, check_invariant, fed
from tests.reference import RefTopology

T0 = datetime(2024, 3, 1)
EVIL_HOST = "a" * 40 + ".example.org"  # (a+)+$ on this is 2^40 steps for a backtracking engine


def _topology(tmp_path: Path, patterns: list[dict], domains: list[dict]) -> Path:
    target = tmp_path / "topology"
    shutil.copytree(TEST_TOPOLOGY, target)
    existing = json.loads((target / "topology_patterns.json").read_text())
    (target / "topology_patterns.json").write_text(json.dumps(existing + patterns))
    site_map = json.loads((target / "site_topology.json").read_text())
    (target / "site_topology.json").write_text(json.dumps(site_map + domains))
    return target


def test_a_catastrophic_pattern_cannot_hang_run_resolve_check_or_apply(
    db: Harness, tmp_path: Path, cli
) -> None:
    directory = _topology(tmp_path, [{"pattern": "(a+)+$", "site": "EVIL"}], [])
    rows = [
        fed(client_host=EVIL_HOST, client_domain="example.org"),
        fed(client_host="wn1.bnl.gov", end_date=T0 + timedelta(minutes=40)),
    ]
    db.insert_raw("fed", rows)
    started = time.monotonic()
    assert cli("topology", "load", "--dir", str(directory)).exit_code == 0
    resolved = cli("topology", "resolve", EVIL_HOST, "--dir", str(directory))
    assert resolved.exit_code == 0 and resolved.output.startswith("unknown"), resolved.output
    db.run("fed10", T0 + timedelta(days=1))
    assert cli("check").exit_code == 0
    applied = cli("topology", "apply", "--dir", str(directory))
    assert applied.exit_code == 0, applied.output
    assert time.monotonic() - started < 30  # a backtracking engine would take hours
    # The reference matches with Python's backtracking `re`: it is given the same topology
    # without the pattern, which matches no host here (every host ends in a domain).
    (tmp_path / "ref").mkdir()
    reference = _topology(tmp_path / "ref", [], [])
    check_invariant(db, [("fed", r) for r in rows], RefTopology.from_dir(reference))


def test_markup_in_domains_sites_and_entries_is_printed_as_written(
    db: Harness, tmp_path: Path, cli
) -> None:
    directory = _topology(
        tmp_path, [], [{"from_value": "odd[/x].org", "to_value": "SITE[/x][bold]"}]
    )
    loaded = cli("topology", "load", "--dir", str(directory))
    assert loaded.exit_code == 0, loaded.output
    rows = [
        fed(client_host="wn[/x]", client_domain="odd[/x].org"),
        fed(client_host="h[red]", client_domain="nowhere[/x].test"),
    ]
    db.insert_raw("fed", rows)
    resolved = cli("topology", "resolve", "wn", "--domain", "odd[/x].org")
    assert resolved.exit_code == 0 and "SITE[/x][bold]" in resolved.output, resolved.output
    checked = cli("check")
    assert checked.exit_code == 0, checked.output
    assert "nowhere[/x].test" in checked.output  # unresolved, shown as written
    db.run("fed10", T0 + timedelta(days=1))
    db.run("daily")
    check_invariant(db, [("fed", r) for r in rows], RefTopology.from_dir(directory))
    # An entry refused: the message keeps its brackets, and no traceback.
    (directory / "vo_sites.json").write_text('[{"vo": "[/x]", "site": "", "vo_site": "[b]T2"}]')
    refused = cli("topology", "load", "--dir", str(directory))
    assert refused.exit_code == 2 and '"vo": "[/x]"' in refused.output, refused.output
