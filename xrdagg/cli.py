"""The `xrdagg` command line. Every command's help ends with an example (a test checks it)."""

from __future__ import annotations

import logging
import sys

import click

from xrdagg.commands import db_cmd, jobs_cmd, raw_cmd, recompute_cmd, topology_cmd


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what each step does.")
@click.version_option(package_name="xrdagg")
def main(verbose: bool) -> None:
    """xrdagg: XRootD transfer monitoring records into WLCG dashboard statistics.

    The database comes from XRDAGG_DATABASE_URL (a SQLAlchemy URL); unset, an embedded SQLite
    file xrdagg.db in the current directory is used.

    Example: xrdagg demo
    """
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
