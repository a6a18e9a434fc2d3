"""The `xrdagg` command line. Every command's help ends with an example (a test checks it)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from xrdagg.commands import (
    agent_cmd,
    audit_cmd,
    db_cmd,
    jobs_cmd,
    plot_cmd,
    raw_cmd,
    recompute_cmd,
    report_cmd,
    topology_cmd,
)
from xrdagg.commands.common import Context


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what each step does.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="XRDAGG_CONFIG",
    help="TOML file with settings (the XRDAGG_* variables as keys); the environment wins.",
)
@click.version_option(package_name="xrdagg")
@click.pass_context
def main(ctx: click.Context, verbose: bool, config_file: Path | None) -> None:
    """xrdagg: XRootD transfer monitoring records into WLCG dashboard statistics.

    The database comes from XRDAGG_DATABASE_URL (a SQLAlchemy URL); unset, an embedded SQLite
    file xrdagg.db in the current directory is used. Settings may also come from a TOML file
    (--config or XRDAGG_CONFIG) whose keys are the variables' names.

    Example: xrdagg --config /etc/xrdagg/xrdagg.toml status
    """
    ctx.ensure_object(Context).config_file = config_file
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


main.add_command(db_cmd.db)
main.add_command(topology_cmd.topology)
main.add_command(raw_cmd.raw)
for command in jobs_cmd.COMMANDS:
    main.add_command(command)
main.add_command(recompute_cmd.recompute)
main.add_command(plot_cmd.plot)
main.add_command(report_cmd.report)
main.add_command(agent_cmd.resume)
main.add_command(agent_cmd.jobs)
main.add_command(audit_cmd.audit)


def iter_commands(
    group: click.Group = main, prefix: str = "xrdagg"
) -> list[tuple[str, click.Command]]:
    """Every command with its full name, for the help test."""
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        found.append((full, command))
        if isinstance(command, click.Group):
            found += iter_commands(command, full)
    return found


if __name__ == "__main__":
    main()
