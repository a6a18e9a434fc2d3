"""The files xrdagg ships besides its code: the migrations, the Alembic configuration, the
default jobs and the default topology.

The project keeps them at the top of the repository (`migrations/`, `alembic.ini`, `jobs/`,
`topology/`), where operators and reviewers look for them. A wheel carries copies as package data
under `xrdagg/_data/` (setup.py puts them there at build time), read here with importlib.resources;
in a checkout or an editable install (`make`), where `xrdagg/_data/` does not exist, they are the
top-level files themselves.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# Top-level names, as in the repository; the same names under xrdagg/_data/ in a wheel.
SHIPPED = ("migrations", "alembic.ini", "jobs", "topology")
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def shipped_path(name: str) -> Path:
    """The installed copy of a shipped file or directory (one of SHIPPED), as a filesystem path:
    Alembic and the topology loader read real files."""
    if name not in SHIPPED:
        raise KeyError(f"{name!r} is not shipped with xrdagg (one of {', '.join(SHIPPED)})")
    packaged = files("xrdagg") / "_data" / name
    # A wheel installs unzipped, so its package data are plain files (a pathlib.Path).
    if isinstance(packaged, Path) and packaged.exists():
        return packaged
    return CHECKOUT_ROOT / name
