"""Optional dependencies: the extras of `pip install 'xrdagg[...]'` and the message when one is
missing.

The base install runs every job on the embedded SQLite database. Database drivers, the
libraries behind sample data and file inputs (pandas, pyarrow) and pictures (matplotlib) are
extras: a command that needs
one fails with the `pip install` line that brings it, instead of an ImportError.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from sqlalchemy.engine import URL

from xrdagg.errors import ConfigError

# Importable module -> the extra that installs it (pyproject.toml, [project.optional-dependencies]).
EXTRA_OF_MODULE = {
    "oracledb": "oracle",
    "psycopg": "postgres",
    "pymysql": "mysql",
    "pandas": "data",
    "pyarrow": "parquet",
    "matplotlib": "plots",
}
# SQLAlchemy driver name -> the module it imports, for the drivers an extra installs.
MODULE_OF_DRIVER = {"oracledb": "oracledb", "psycopg": "psycopg", "pymysql": "pymysql"}


class MissingExtraError(ConfigError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def install_hint(module: str) -> str:
    """The command that installs `module`'s extra."""
    return f"pip install 'xrdagg[{EXTRA_OF_MODULE[module]}]'"


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` (one of EXTRA_OF_MODULE), or raise MissingExtraError saying that `purpose`
    needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs {module}, which is not installed: {install_hint(module)}"
        ) from None


def check_driver(url: URL) -> None:
    """Raise MissingExtraError when the driver of `url` is one an extra installs and it is missing
    (before SQLAlchemy fails on the import)."""
    module = MODULE_OF_DRIVER.get(url.get_driver_name())
    if module is not None and importlib.util.find_spec(module) is None:
        backend = url.get_backend_name()
        raise MissingExtraError(
            f"XRDAGG_DATABASE_URL: the {backend} driver {module} is not installed: "
            f"{install_hint(module)}"
        )
