"""What every command shares: the settings/engine context, error display, option parsing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from sqlalchemy import Engine, exc

from xrdagg.config import Settings
from xrdagg.db.engine import make_engine
from xrdagg.errors import XrdaggError

F = TypeVar("F", bound=Callable[..., Any])
# soft_wrap: long lines stay whole in logs and pipes
console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Context:
    """Settings and engine, made once per invocation and passed down."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings)
        return self._engine


def operator_errors(func: F) -> F:
    """Show XrdaggError and database errors as one clear line, without a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except XrdaggError as error:
            err_console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
            sys.exit(2)
        except exc.OperationalError as error:
            err_console.print(f"[red]database error:[/red] {error.orig}", markup=True)
            sys.exit(3)

    return wrapper  # type: ignore[return-value]


pass_context = click.make_pass_decorator(Context, ensure=True)


def parse_utc(value: str | None, option: str) -> datetime | None:
    """A command-line date or timestamp as a naive UTC datetime (None stays None); a bad value is
    refused naming `option`."""
    if value is None:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise click.BadParameter(f"{value!r} is not 'YYYY-MM-DD[ HH:MM[:SS]]' (UTC)", param_hint=option)


def existing_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """Click callback: the option's directory as a Path, refused when it does not exist."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        raise click.BadParameter(f"{value!r} is not a directory", ctx=ctx, param=param)
    return path
