"""Settings, read once from the environment (and an optional TOML file) into a typed object that
is passed down.

Nothing reads the environment at import time: `Settings.load()` is called by the command line
(`Settings.from_env()` by a test with its own mapping), and every other module receives the
resulting object. A configuration file (`--config FILE` or `XRDAGG_CONFIG`) holds the same keys
as the environment variables; a variable set in the environment wins over the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from xrdagg.errors import ConfigError
from xrdagg.resources import CHECKOUT_ROOT, shipped_path

# The repository checkout (tests and tools); installed code reads its files through `resources`.
PROJECT_ROOT = CHECKOUT_ROOT
DEFAULT_DATABASE_URL = "sqlite:///xrdagg.db"
DEFAULT_SAFETY_LAG_SECONDS = 300
DEFAULT_PAUSE_LEASE_SECONDS = 300

# An unquoted Oracle/PostgreSQL identifier: what a DBA would type for an account/schema name.
_SCHEMA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_$#]{0,127}$")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know about its deployment."""

    database_url: URL
    # Schema (Oracle account, MySQL database) that owns T_RAW_FED/T_RAW_EOS; None = the
    # statistics schema itself, in which case the migrations also create the raw tables.
    raw_schema: str | None = None
    topology_dir: Path = field(default_factory=lambda: shipped_path("topology"))
    jobs_dir: Path = field(default_factory=lambda: shipped_path("jobs"))
    # Rows whose INSERT_DATE is newer than database now - lag are left for the next run, so that a
    # collector's transaction that commits a little late is still counted exactly once.
    safety_lag_seconds: int = DEFAULT_SAFETY_LAG_SECONDS
    # Oracle: the migrations interval-partition the 10-minute and daily tables on their time
    # column (revision 0006). Off for an edition without the Partitioning option.
    oracle_partitioning: bool = True
    # A rebuild's pause (xrdagg.jobs.pause) outlives a dead holder by at most this long.
    pause_lease_seconds: int = DEFAULT_PAUSE_LEASE_SECONDS

    @classmethod
    def load(
        cls, config_file: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """The settings of a command: `config_file` (default: $XRDAGG_CONFIG, if set) overlaid by
        the environment's non-empty XRDAGG_* variables. A bad file, key or value raises
        ConfigError naming it."""
        env = os.environ if environ is None else environ
        if config_file is None and env.get("XRDAGG_CONFIG"):
            config_file = Path(env["XRDAGG_CONFIG"])
        values = read_config_file(config_file) if config_file is not None else {}
        # Every XRDAGG_* variable passes (CONFIG_KEYS only bounds what a file may hold).
        values.update({k: v for k, v in env.items() if k.startswith("XRDAGG_") and v != ""})
        return cls.from_env(values)

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
                "XRDAGG_TOPOLOGY_DIR", env.get("XRDAGG_TOPOLOGY_DIR"), shipped_path("topology")
            ),
            jobs_dir=_parse_dir(
                "XRDAGG_JOBS_DIR", env.get("XRDAGG_JOBS_DIR"), shipped_path("jobs")
            ),
            safety_lag_seconds=_parse_seconds(
                "XRDAGG_SAFETY_LAG_SECONDS",
                env.get("XRDAGG_SAFETY_LAG_SECONDS"),
                DEFAULT_SAFETY_LAG_SECONDS,
            ),
            oracle_partitioning=_parse_flag(
                "XRDAGG_ORACLE_PARTITIONING", env.get("XRDAGG_ORACLE_PARTITIONING"), True
            ),
            pause_lease_seconds=max(
                1,
                _parse_seconds(
                    "XRDAGG_PAUSE_LEASE_SECONDS",
                    env.get("XRDAGG_PAUSE_LEASE_SECONDS"),
                    DEFAULT_PAUSE_LEASE_SECONDS,
                ),
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy of these settings with the given fields replaced."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def backend(self) -> str:
        """The database kind: 'sqlite', 'postgresql', 'oracle' or 'mysql' (MariaDB too)."""
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
    if backend not in ("sqlite", "postgresql", "oracle", "mysql", "mariadb"):
        raise ConfigError(
            f"{name}: backend {backend!r} is not supported (sqlite, postgresql, oracle, mysql)"
        )
    if backend == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    if backend == "oracle" and url.drivername == "oracle":
        url = url.set(drivername="oracle+oracledb")  # thin mode, no Instant Client
    if backend == "mariadb" or url.drivername == "mysql":
        # PyMySQL: pure Python, no client library. One dialect name, 'mysql', for both servers
        # (SQLAlchemy's 'mariadb' scheme would give statements a second name to compile for).
        driver = url.drivername.partition("+")[2] or "pymysql"
        url = url.set(drivername=f"mysql+{driver}")
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


def _parse_flag(name: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    flag = _FLAGS.get(value.strip().lower())
    if flag is None:
        raise ConfigError(f"{name}={value!r}: not a yes/no value (on, off, true, false, 1, 0)")
    return flag


_FLAGS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}  # fmt: skip

# Every setting, by its environment variable: the keys a configuration file may hold.
CONFIG_KEYS = (
    "XRDAGG_DATABASE_URL",
    "XRDAGG_RAW_SCHEMA",
    "XRDAGG_TOPOLOGY_DIR",
    "XRDAGG_JOBS_DIR",
    "XRDAGG_SAFETY_LAG_SECONDS",
    "XRDAGG_ORACLE_PARTITIONING",
    "XRDAGG_PAUSE_LEASE_SECONDS",
)
_DIR_KEYS = ("XRDAGG_TOPOLOGY_DIR", "XRDAGG_JOBS_DIR")


def read_config_file(path: Path) -> dict[str, str]:
    """The settings of a TOML configuration file, as environment-style strings.

    Keys are the environment variables' names (CONFIG_KEYS); values are strings, whole numbers or
    booleans. A relative directory is taken relative to the file, so that a service's file can
    sit next to its jobs and topology.
    """
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"configuration file {path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path}: not valid TOML ({exc})") from None
    values: dict[str, str] = {}
    for key, value in document.items():
        if key not in CONFIG_KEYS:
            raise ConfigError(
                f"configuration file {path}: unknown key {key!r} (known: {', '.join(CONFIG_KEYS)})"
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int):
            text = str(value)
        else:
            raise ConfigError(
                f"configuration file {path}: {key} must be a string, a whole number or a "
                f"boolean, not {type(value).__name__}"
            )
        if key in _DIR_KEYS and text:
            text = str((path.parent / Path(text).expanduser()).resolve())
        values[key] = text
    return values
