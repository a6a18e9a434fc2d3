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

settings: Settings = config.attributes.get("settings") or Settings.load()
# Revisions read this to decide whether to create T_RAW_FED/T_RAW_EOS themselves.
config.attributes["create_raw_tables"] = settings.raw_schema is None
# Revision 0006: interval partitioning on Oracle (XRDAGG_ORACLE_PARTITIONING, or for Alembic's
# own command line `alembic -x oracle_partitioning=off upgrade head`).
_x = context.get_x_argument(as_dictionary=True).get("oracle_partitioning")
config.attributes["oracle_partitioning"] = (
    settings.oracle_partitioning if _x is None else _x.lower() not in ("off", "false", "no", "0")
)


def run_offline() -> None:
    context.configure(
        url=settings.database_url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    # The script binds nothing: without this, Oracle's version row is inserted with
    # `RETURNING … INTO :ret_0`, an undeclared bind that stops SQL*Plus.
    context.get_context().dialect.insert_returning = False
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
    # Oracle's staging table (revisions 0005, 0010) is per-session scratch space, not in the
    # metadata.
    return not (type_ == "table" and name in ("t_stage_norm", "t_stage_group"))


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
