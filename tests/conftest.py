from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backends import Backend, open_backend
from tests.helpers import TEST_TOPOLOGY, Harness

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
    pytest.param("oracle", marks=pytest.mark.oracle),
]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    yield from open_backend(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture
def db(backend: Backend) -> Iterator[Harness]:
    """An empty, migrated database with the test topology loaded."""
    backend.clear()
    harness = Harness(backend)
    harness.load_topology(TEST_TOPOLOGY)
    yield harness
    harness.engine.dispose()  # no connection survives a test (pool pre-ping aside)


@pytest.fixture(
    scope="session",
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def server_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """SQLite, PostgreSQL and MySQL/MariaDB only: for tests of migrations that drop and recreate
    everything."""
    yield from open_backend(request.param, tmp_path_factory.mktemp(request.param + "-mig"))


# --- tiers: decided once, reported in one line each ------------------------------------------------

_UNAVAILABLE: dict[str, str] = {}


def _tier_reasons() -> dict[str, str]:
    import os

    from tests.backends import docker_available

    reasons = {}
    from tests.browser import find_chromium

    if find_chromium() is None:
        reasons["chromium"] = "no chromium on PATH (Debian package `chromium`; .ci/run installs it)"
    docker = None
    if not os.environ.get("XRDAGG_TEST_POSTGRES_URL"):
        docker = docker_available()
        if not docker:
            reasons["postgres"] = (
                "no XRDAGG_TEST_POSTGRES_URL and no Docker engine for testcontainers"
            )
    if not os.environ.get("XRDAGG_TEST_MYSQL_URL"):
        if docker is None:
            docker = docker_available()
        if not docker:
            reasons["mysql"] = "no XRDAGG_TEST_MYSQL_URL and no Docker engine for testcontainers"
    if not os.environ.get("XRDAGG_ORACLE_URL"):
        if docker is None:
            docker = docker_available()
        if not docker:
            reasons["oracle"] = (
                "no XRDAGG_ORACLE_URL and no Docker engine for Oracle Free; "
                "the Oracle path is offline-checked only (tests/test_oracle_offline.py)"
            )
    return reasons


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import os

    _UNAVAILABLE.update(_tier_reasons())
    # CI names the tiers that must run: a skipped tier must not pass as a green run there.
    required = {t for t in os.environ.get("XRDAGG_REQUIRE_TIERS", "").split(",") if t}
    missing = {t: r for t, r in _UNAVAILABLE.items() if t in required}
    if missing:
        raise pytest.UsageError(
            "; ".join(
                f"the {t} tier is required (XRDAGG_REQUIRE_TIERS) but {r}"
                for t, r in missing.items()
            )
        )
    for item in items:
        for tier, reason in _UNAVAILABLE.items():
            if item.get_closest_marker(tier):
                item.add_marker(pytest.mark.skip(reason=f"{tier} tier: {reason}"))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    skipped = terminalreporter.stats.get("skipped", [])
    for tier, reason in _UNAVAILABLE.items():
        count = sum(1 for report in skipped if f"{tier} tier:" in str(report.longrepr))
        if count:
            terminalreporter.write_line(f"{tier} tier: {count} tests skipped: {reason}")


@pytest.fixture
def cli(db):  # type: ignore[no-untyped-def]
    """Run `xrdagg ARGS…` in-process against the test database."""
    from click.testing import CliRunner

    from xrdagg.cli import main

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, list(args), env=db.backend.env, catch_exceptions=False)

    return invoke
