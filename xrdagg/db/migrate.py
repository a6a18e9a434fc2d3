"""`xrdagg db …`: Alembic driven from Python, with xrdagg's Settings."""

from __future__ import annotations

import io

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from xrdagg.config import Settings
from xrdagg.db.dialect.ddl import offline_script
from xrdagg.db.engine import make_engine
from xrdagg.resources import shipped_path


def alembic_config(settings: Settings, connection: Connection | None = None) -> Config:
    """The Alembic configuration for `settings`: the shipped migrations, its database URL."""
    cfg = Config(str(shipped_path("alembic.ini")))
    cfg.set_main_option("script_location", str(shipped_path("migrations")))
    cfg.attributes["settings"] = settings
    cfg.attributes["quiet_logging"] = True
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(
    settings: Settings, revision: str = "head", connection: Connection | None = None
) -> None:
    """Bring the schema up to `revision` (default: the newest)."""
    command.upgrade(alembic_config(settings, connection), revision)


def downgrade(settings: Settings, revision: str, connection: Connection | None = None) -> None:
    """Take the schema down to `revision`."""
    command.downgrade(alembic_config(settings, connection), revision)


def current(settings: Settings) -> str:
    """The database's revision, e.g. '0001 (head)'."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    if revision is None:
        return "no schema yet: run `xrdagg db upgrade`"
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


def offline_sql(settings: Settings, revision: str = "head", *, downgrade: bool = False) -> str:
    """The DDL script `alembic upgrade|downgrade REVISION --sql` prints for the dialect of
    `settings`, without connecting (for a downgrade, REVISION is 'from:to')."""
    cfg = alembic_config(settings)
    out = io.StringIO()
    cfg.output_buffer = out
    (command.downgrade if downgrade else command.upgrade)(cfg, revision, sql=True)
    return offline_script(settings.backend, out.getvalue())
