from __future__ import annotations

import re

import pytest

from xrdagg.config import DEFAULT_SAFETY_LAG_SECONDS, Settings
from xrdagg.errors import ConfigError
from xrdagg.resources import SHIPPED, shipped_path


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
    # MySQL and MariaDB URLs: one dialect, 'mysql', PyMySQL unless another driver is named.
    for url, driver in [
        ("mysql://h/db", "mysql+pymysql"),
        ("mariadb://h/db", "mysql+pymysql"),
        ("mariadb+pymysql://h/db", "mysql+pymysql"),
        ("mysql+mysqldb://h/db", "mysql+mysqldb"),
    ]:
        settings = Settings.from_env({"XRDAGG_DATABASE_URL": url})
        assert (settings.database_url.drivername, settings.backend) == (driver, "mysql")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"XRDAGG_DATABASE_URL": "not a url"}, "XRDAGG_DATABASE_URL"),
        ({"XRDAGG_DATABASE_URL": "mssql://h/db"}, "'mssql' is not supported"),
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


def test_a_configuration_file_holds_the_variables_and_the_environment_wins(tmp_path) -> None:
    (tmp_path / "my-jobs").mkdir()
    config = tmp_path / "xrdagg.toml"
    config.write_text(
        'XRDAGG_DATABASE_URL = "postgresql://stats@dbhost/xrd"\n'
        'XRDAGG_RAW_SCHEMA = "atlas_xrd_mon"\n'
        'XRDAGG_JOBS_DIR = "my-jobs"\n'
        "XRDAGG_SAFETY_LAG_SECONDS = 120\n"
        "XRDAGG_ORACLE_PARTITIONING = false\n"
    )
    from_file = Settings.load(config, environ={})
    assert from_file.database_url.drivername == "postgresql+psycopg"
    assert from_file.raw_schema == "atlas_xrd_mon"
    assert from_file.jobs_dir == tmp_path / "my-jobs"  # relative to the file
    assert from_file.safety_lag_seconds == 120
    assert from_file.oracle_partitioning is False
    env = {"XRDAGG_CONFIG": str(config), "XRDAGG_SAFETY_LAG_SECONDS": "30", "XRDAGG_RAW_SCHEMA": ""}
    overridden = Settings.load(environ=env)
    assert overridden.safety_lag_seconds == 30  # the environment wins
    assert overridden.raw_schema == "atlas_xrd_mon"  # an empty variable does not unset the file's


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('XRDAGG_DATABASE_URL = "sqlite:///x.db"\nDATABASE = "x"\n', "unknown key 'DATABASE'"),
        ("XRDAGG_SAFETY_LAG_SECONDS = [1, 2]\n", "XRDAGG_SAFETY_LAG_SECONDS must be a string"),
        ("XRDAGG_SAFETY_LAG_SECONDS = 'soon'\n", "XRDAGG_SAFETY_LAG_SECONDS='soon'"),
        ("XRDAGG_DATABASE_URL = \n", "not valid TOML"),
    ],
)
def test_a_bad_configuration_file_is_refused_naming_file_and_key(
    tmp_path, content: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        Settings.load(config, environ={})
    if "XRDAGG_SAFETY_LAG_SECONDS='soon'" not in message:
        assert str(config) in str(error.value)


def test_a_missing_configuration_file_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        Settings.load(environ={"XRDAGG_CONFIG": str(tmp_path / "none.toml")})


def test_the_shipped_files_are_found(tmp_path) -> None:
    for name in SHIPPED:
        assert shipped_path(name).exists(), name
    settings = Settings.from_env({})
    assert (settings.jobs_dir / "jobs.toml").is_file()
    assert (settings.topology_dir / "site_topology.json").is_file()
    with pytest.raises(KeyError):
        shipped_path("sql")
