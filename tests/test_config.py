from __future__ import annotations

import pytest

from xrdagg.config import DEFAULT_SAFETY_LAG_SECONDS, Settings
from xrdagg.errors import ConfigError


def test_defaults_to_the_embedded_sqlite_file() -> None:
    settings = Settings.from_env({})
    assert settings.backend == "sqlite"
    assert settings.database_url.database == "xrdagg.db"
    assert settings.raw_schema is None
    assert settings.safety_lag_seconds == DEFAULT_SAFETY_LAG_SECONDS


def test_drivers_and_schema_are_normalised() -> None:
    settings = Settings.from_env(
        {
            "XRDAGG_DATABASE_URL": "oracle://stats:secret@db/?service_name=X",
            "XRDAGG_RAW_SCHEMA": "ATLAS_XRD_MON",
        }
    )
    assert settings.database_url.drivername == "oracle+oracledb"
    assert settings.raw_schema == "atlas_xrd_mon"
    assert "secret" not in settings.safe_url()
    assert (
        Settings.from_env({"XRDAGG_DATABASE_URL": "postgresql://h/db"}).database_url.drivername
        == "postgresql+psycopg"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"XRDAGG_DATABASE_URL": "not a url"}, "XRDAGG_DATABASE_URL"),
        ({"XRDAGG_DATABASE_URL": "mysql://h/db"}, "'mysql' is not supported"),
        (
            {"XRDAGG_SAFETY_LAG_SECONDS": "ten"},
            "XRDAGG_SAFETY_LAG_SECONDS='ten': not a whole number",
        ),
        ({"XRDAGG_SAFETY_LAG_SECONDS": "-1"}, "must not be negative"),
        ({"XRDAGG_RAW_SCHEMA": "a; drop"}, "XRDAGG_RAW_SCHEMA"),
        ({"XRDAGG_RAW_SCHEMA": "raw"}, "SQLite, which has no schemas"),
        (
            {"XRDAGG_TOPOLOGY_DIR": "/no/such/dir"},
            "XRDAGG_TOPOLOGY_DIR='/no/such/dir': no such directory",
        ),
    ],
)
def test_bad_settings_are_refused_with_their_name_and_reason(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)
