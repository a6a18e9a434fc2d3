"""Renderings that depend on the SQLite library's version: a test compiles a statement with the
newer rendering and with its fallback, on this library, and compares what the two give."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from xrdagg.db.dialect import expressions

NEVER = (99, 0, 0)  # a version no library has: the fallback rendering


def requires_sqlite(version_constant: str, feature: str) -> pytest.MarkDecorator:
    """Skip unless this SQLite has what the rendering named by `version_constant` (a name in
    `xrdagg.db.dialect.expressions`) needs, so that the two renderings can be compared."""
    version = getattr(expressions, version_constant)
    return pytest.mark.skipif(
        sqlite3.sqlite_version_info < version,
        reason=f"SQLite {sqlite3.sqlite_version} has no {feature} to compare the fallback with",
    )


def both_renderings(
    monkeypatch: pytest.MonkeyPatch, version_constant: str, run: Callable[[], Any]
) -> tuple[Any, Any]:
    """What `run` (which compiles its statement afresh) gives with the newer rendering, then
    with the fallback."""
    newer = run()
    monkeypatch.setattr(expressions, version_constant, NEVER)
    return newer, run()
