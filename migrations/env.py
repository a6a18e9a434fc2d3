"""Alembic environment: the database and raw schema come from xrdagg's Settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from xrdagg.config import Settings
from xrdagg.db.engine import make_engine
from xrdagg.db.tables import metadata

config = context.config
if config.config_file_name is not None and not config.attributes.get("quiet_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

settings: Settings = config.attributes.get("settings") or Settings.from_env()
# Revisions read this to decide whether to create T_RAW_FED/T_RAW_EOS themselves.
config.attributes["create_raw_tables"] = settings.raw_schema is None


def run_offline() -> None:
    context.configure(
        url=settings.database_url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _declared_schema_only(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    # Oracle's staging table (revision 0005) is per-session scratch space, not in the metadata.
    return not (type_ == "table" and name == "t_stage_norm")


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need batch mode
        compare_type=True,
        include_schemas=False,
        include_object=_declared_schema_only,
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
