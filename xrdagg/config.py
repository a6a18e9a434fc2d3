"""Settings, read once from the environment into a typed object that is passed down.

Nothing reads the environment at import time: `Settings.from_env()` is called by the command line
(or by a test with its own mapping), and every other module receives the resulting object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from xrdagg.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "sqlite:///xrdagg.db"
DEFAULT_SAFETY_LAG_SECONDS = 300

# An unquoted Oracle/PostgreSQL identifier: what a DBA would type for an account/schema name.
_SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_$#]{0,127}$")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know about its deployment."""

    database_url: URL
    # Schema (Oracle account) that owns T_RAW_FED/T_RAW_EOS; None = the statistics schema itself,
    # in which case the migrations also create the raw tables.
    raw_schema: str | None = None
    topology_dir: Path = PROJECT_ROOT / "topology"
    jobs_dir: Path = PROJECT_ROOT / "jobs"
    # Rows whose INSERT_DATE is newer than database now - lag are left for the next run, so that a
    # collector's transaction that commits a little late is still counted exactly once.
    safety_lag_seconds: int = DEFAULT_SAFETY_LAG_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from `environ` (default: the process environment); a bad value raises
        ConfigError naming the variable."""
        env = os.environ if environ is None else environ
        url = _parse_url(
            "XRDAGG_DATABASE_URL", env.get("XRDAGG_DATABASE_URL") or DEFAULT_DATABASE_URL
        )
        raw_schema = env.get("XRDAGG_RAW_SCHEMA") or None
        if raw_schema is not None and not _SCHEMA_NAME.match(raw_schema):
            raise ConfigError(
                f"XRDAGG_RAW_SCHEMA={raw_schema!r}: not a plain schema name "
                "(letters, digits, _ $ #, starting with a letter)"
            )
        if raw_schema is not None and url.get_backend_name() == "sqlite":
            raise ConfigError(
                "XRDAGG_RAW_SCHEMA is set but the database is SQLite, which has no schemas: "
                "unset it, or point XRDAGG_DATABASE_URL at Oracle or PostgreSQL"
            )
        return cls(
            database_url=url,
            # Lower case: the unquoted identifier a DBA means (Oracle folds it to upper case,
            # PostgreSQL to lower); SQLAlchemy would quote an upper-case name, making it exact.
            raw_schema=raw_schema.lower() if raw_schema else None,
            topology_dir=_parse_dir(
                "XRDAGG_TOPOLOGY_DIR", env.get("XRDAGG_TOPOLOGY_DIR"), PROJECT_ROOT / "topology"
            ),
            jobs_dir=_parse_dir(
                "XRDAGG_JOBS_DIR", env.get("XRDAGG_JOBS_DIR"), PROJECT_ROOT / "jobs"
            ),
            safety_lag_seconds=_parse_seconds(
                "XRDAGG_SAFETY_LAG_SECONDS",
                env.get("XRDAGG_SAFETY_LAG_SECONDS"),
                DEFAULT_SAFETY_LAG_SECONDS,
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy of these settings with the given fields replaced."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def backend(self) -> str:
        """The database kind: 'sqlite', 'postgresql' or 'oracle'."""
        return self.database_url.get_backend_name()

    def safe_url(self) -> str:
        """The database URL with its password masked, for logs and messages."""
        return self.database_url.render_as_string(hide_password=True)


def _parse_url(name: str, value: str) -> URL:
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ConfigError(f"{name}: not a SQLAlchemy database URL ({exc})") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql", "oracle"):
        raise ConfigError(
            f"{name}: backend {backend!r} is not supported (sqlite, postgresql, oracle)"
        )
    if backend == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    if backend == "oracle" and url.drivername == "oracle":
        url = url.set(drivername="oracle+oracledb")  # thin mode, no Instant Client
    return url


def _parse_dir(name: str, value: str | None, default: Path) -> Path:
    if not value:
        return default
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{name}={value!r}: no such directory")
    return path


def _parse_seconds(name: str, value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        seconds = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: not a whole number of seconds") from None
    if seconds < 0:
        raise ConfigError(f"{name}={value!r}: must not be negative")
    return seconds
