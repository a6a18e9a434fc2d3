"""`xrdagg db`: the schema, through Alembic."""

from __future__ import annotations

import click

from xrdagg.commands.common import Context, console, operator_errors, pass_context
from xrdagg.db import migrate


@click.group()
def db() -> None:
    """Create and upgrade the schema (Alembic migrations).

    Example: xrdagg db upgrade
    """


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_context
@operator_errors
def upgrade(ctx: Context, revision: str) -> None:
    """Bring the schema to the newest (or the given) revision.

    With no XRDAGG_RAW_SCHEMA the migrations also create T_RAW_FED and T_RAW_EOS.

    Example: XRDAGG_DATABASE_URL=postgresql://xrdagg@dbhost/mon xrdagg db upgrade
    """
    migrate.upgrade(ctx.settings, revision)
    console.print(f"schema at {migrate.current(ctx.settings)} on {ctx.settings.safe_url()}")


@db.command()
@click.argument("revision")
@pass_context
@operator_errors
def downgrade(ctx: Context, revision: str) -> None:
    """Take the schema back to REVISION ('base' drops every xrdagg table).

    Example: xrdagg db downgrade base
    """
    migrate.downgrade(ctx.settings, revision)
    console.print(f"schema at {migrate.current(ctx.settings)}")


@db.command()
@pass_context
@operator_errors
def current(ctx: Context) -> None:
    """Print the schema revision of the database.

    Example: xrdagg db current
    """
    console.print(migrate.current(ctx.settings))


@db.command()
@click.option("--revision", default="head", show_default=True)
@pass_context
@operator_errors
def sql(ctx: Context, revision: str) -> None:
    """Print the DDL script of the migrations for the configured dialect, without connecting.

    This is what a DBA reviews and runs on Oracle (sql/oracle_schema.sql is its committed copy).

    Example: XRDAGG_DATABASE_URL=oracle+oracledb://@ XRDAGG_RAW_SCHEMA=ATLAS_XRD_MON xrdagg db sql
    """
    click.echo(migrate.offline_sql(ctx.settings, revision), nl=False)
