"""What every command shares: the settings/engine context, error display, option parsing."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text
from sqlalchemy import Engine, exc

from xrdagg.config import Settings
from xrdagg.db.engine import make_engine
from xrdagg.errors import XrdaggError

F = TypeVar("F", bound=Callable[..., Any])
# soft_wrap: long lines stay whole in logs and pipes. markup=False: what we print is data (domains,
# sites, patterns, error messages quoting them), and rich would read `[/x]` in a domain as a
# closing tag (MarkupError) or swallow `[…]`; styles are given as Text, never as markup.
console = Console(stderr=False, highlight=False, soft_wrap=True, markup=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


class Context:
    """Settings and engine, made once per invocation and passed down."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._engine: Engine | None = None
        self.config_file: Path | None = None  # `xrdagg --config FILE`

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load(self.config_file)
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
            err_console.print(Text("error: ", style="red") + Text(str(error)))
            sys.exit(2)
        except exc.OperationalError as error:
            err_console.print(Text("database error: ", style="red") + Text(str(error.orig)))
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


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that the same clean-up runs."""


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP (a stopped service, a dropped ssh) interrupt the
    main thread as Ctrl-C does: the `finally` clauses run and a rebuild releases its pause."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Terminated(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
