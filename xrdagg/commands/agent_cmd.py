"""`xrdagg resume` (clear the pauses a dead rebuild left) and `xrdagg jobs rename` (a job's
watermark under a new name): where each job stands in T_AGENT, by hand."""

from __future__ import annotations

import sys

import click

from xrdagg.commands.common import Context, console, err_console, operator_errors, pass_context
from xrdagg.jobs import agent, pause


@click.command()
@click.argument("jobs", nargs=-1)
@click.option(
    "--force", is_flag=True, help="Also clear pauses whose holder still renews its lease."
)
@pass_context
@operator_errors
def resume(ctx: Context, jobs: tuple[str, ...], force: bool) -> None:
    """Clear the pauses of JOBS (default: every job) whose holder is gone.

    A pause is gone when its lease expired, or when its process, on this host, no longer exists;
    such pauses are also cleared by the next run. A live holder's pause is kept and named
    (exit 2) unless --force: then the rebuild stops at its next chunk, before writing anything.

    Example: xrdagg resume fed10 eos10
    """
    with ctx.engine.begin() as conn:
        cleared, kept = pause.resume(conn, list(jobs) or None, force=force)
    for p, text in cleared:
        console.print(f"{p.job_name}: cleared the pause of {text}")
    for p, text in kept:
        err_console.print(f"{p.job_name}: kept the pause of live {text}; --force clears it")
    if not cleared and not kept:
        console.print("no pause to clear")
    if kept:
        sys.exit(2)


@click.group()
def jobs() -> None:
    """The jobs' identity in the database (T_AGENT).

    Example: xrdagg jobs rename fed10 fed_10min
    """


@jobs.command()
@click.argument("old")
@click.argument("new")
@pass_context
@operator_errors
def rename(ctx: Context, old: str, new: str) -> None:
    """Carry job OLD's watermark and run log over to NEW (after renaming it in jobs/*.toml).

    Without it, the renamed job would start from nothing and count every raw row again; its
    first run refuses to, and names this command.

    Example: xrdagg jobs rename fed10 fed_10min
    """
    with ctx.engine.begin() as conn:
        watermark = agent.rename_job(conn, old, new)
    shown = "-" if watermark is None else f"{watermark:%Y-%m-%d %H:%M:%S} UTC"
    console.print(f"job {old} is now {new} (watermark {shown})")
