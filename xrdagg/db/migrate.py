"""`xrdagg db …`: Alembic driven from Python, with xrdagg's Settings."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from xrdagg.config import PROJECT_ROOT, Settings


def alembic_config(settings: Settings, connection: Connection | None = None) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.attributes["settings"] = settings
    cfg.attributes["quiet_logging"] = True
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(
    settings: Settings, revision: str = "head", connection: Connection | None = None
) -> None:
    command.upgrade(alembic_config(settings, connection), revision)


def downgrade(settings: Settings, revision: str, connection: Connection | None = None) -> None:
    command.downgrade(alembic_config(settings, connection), revision)


def current(settings: Settings) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        command.current(alembic_config(settings))
    return out.getvalue().strip() or "(no revision: run `xrdagg db upgrade`)"


def offline_sql(settings: Settings, revision: str = "head") -> str:
    """The DDL script `alembic upgrade head --sql` prints for `settings`' dialect."""
    cfg = alembic_config(settings)
    out = io.StringIO()
    cfg.output_buffer = out
    command.upgrade(cfg, revision, sql=True)
    return out.getvalue()
