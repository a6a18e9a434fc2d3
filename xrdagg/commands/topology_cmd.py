"""`xrdagg topology`: loading topology files and resolving hosts to sites."""

from __future__ import annotations

from pathlib import Path

import click

from xrdagg.commands.common import (
    Context,
    console,
    existing_dir,
    operator_errors,
    pass_context,
)
from xrdagg.reports import since, unresolved
from xrdagg.topology.files import read_topology_dir
from xrdagg.topology.store import load_topology, read_resolver


@click.group()
def topology() -> None:
    """Topology: which site a host or domain belongs to (SPEC §3).

    Example: xrdagg topology resolve x.pp.rl.ac.uk
    """


@topology.command()
@click.option(
    "--dir",
    "directory",
    callback=existing_dir,
    help="Topology directory (default: the shipped one, or XRDAGG_TOPOLOGY_DIR).",
)
@pass_context
@operator_errors
def load(ctx: Context, directory: Path | None) -> None:
    """Validate a topology directory and load it into the database, all or nothing.

    Example: xrdagg topology load --dir /etc/xrdagg/topology
    """
    directory = directory or ctx.settings.topology_dir
    data = read_topology_dir(directory)
    with ctx.engine.begin() as conn:
        summary = load_topology(conn, data, directory)
    console.print(
        f"topology {summary.load_id} loaded from {directory}: {summary.patterns} patterns, "
        f"{summary.domains} domains, {summary.countries} countries, "
        f"{summary.vo_names} VO site names"
    )
    if summary.cached_pairs:
        console.print(
            f"note: {summary.cached_pairs} cached host resolutions were made with an earlier "
            "topology; statistics already computed keep those sites until they are recomputed"
        )


@topology.command()
@click.argument("host")
@click.option("--domain", help="The record's domain column, when the host is a short name.")
@click.option("--server-site", help="The record's SERVER_SITE (rule 1, server side only).")
@click.option(
    "--dir",
    "directory",
    callback=existing_dir,
    help="Resolve with this topology directory instead of the loaded one.",
)
@pass_context
@operator_errors
def resolve(
    ctx: Context, host: str, domain: str | None, server_site: str | None, directory: Path | None
) -> None:
    """Print the site of HOST and the rule that answered.

    Example: xrdagg topology resolve cmsstor359 --domain fnal.gov
    """
    if directory is not None:
        resolver = read_topology_dir(directory).resolver()
    else:
        with ctx.engine.connect() as conn:
            resolver = read_resolver(conn)
    result = resolver.resolve(host, domain, server_site)
    console.print(
        f"{result.site}\t(fqdn {result.fqdn or '-'}, domain {result.domain}; {result.explain()})"
    )


@topology.command("unresolved")
@click.option(
    "--days",
    type=float,
    default=7.0,
    show_default=True,
    help="Raw rows inserted in the last DAYS days.",
)
@click.option("--limit", type=int, default=30, show_default=True)
@pass_context
@operator_errors
def unresolved_cmd(ctx: Context, days: float, limit: int) -> None:
    """List the domains that resolve to no site, by raw row count.

    Example: xrdagg topology unresolved --days 1
    """
    with ctx.engine.begin() as conn:
        frame = unresolved(conn, since(conn, days), limit)
    if frame.empty:
        console.print("every host of the period resolves to a site")
        return
    console.print(frame.to_string(index=False))


@topology.command()
@click.option(
    "--dir",
    "directory",
    callback=existing_dir,
    help="Topology directory (default: the configured one).",
)
@click.option(
    "--dry-run", is_flag=True, help="Show the changes and their cost, then roll everything back."
)
@pass_context
@operator_errors
def apply(ctx: Context, directory: Path | None, dry_run: bool) -> None:
    """Load a new topology and recompute only the statistics it changes.

    The cached hosts the change can affect are resolved again; the statistics of the
    (domain, site) keys that hosts leave or join are rebuilt, on the days that hold them, from
    the raw rows that feed them, in one transaction (the 10-minute jobs are paused meanwhile).
    The daily tables of those days are rolled up afterwards.

    Example: xrdagg topology apply --dir /etc/xrdagg/topology --dry-run
    """
    from xrdagg.jobs.apply import apply_topology
    from xrdagg.jobs.specs import load_job_specs
    from xrdagg.operations import roll_up_after_rebuild

    directory = directory or ctx.settings.topology_dir
    data = read_topology_dir(directory)
    specs = load_job_specs(ctx.settings.jobs_dir)
    report = apply_topology(ctx.engine, data, directory, specs, dry_run=dry_run)
    verb = "would change" if dry_run else "changed"
    console.print(f"{len(report.changes)} cached host(s) {verb} site:")
    for c in sorted(report.changes, key=lambda c: (-(c.raw_rows or 0), c.host_key))[:100]:
        rows = "" if c.raw_rows is None else f", {c.raw_rows} raw rows"
        console.print(f"  {c.host_shown} ({c.domain}): {c.old_site} -> {c.new_site}{rows}")
    for alias, (old, new) in sorted(report.alias_changes.items()):
        kept = "(kept as written)"
        console.print(f"  SERVER_SITE alias {alias}: {old or kept} -> {new or kept}")
    console.print(
        f"statistics rows rebuilt: {report.stats_rows_deleted} deleted, "
        f"{report.stats_rows_written} written over {len(report.days)} day(s); "
        f"{report.pairs_checked} cached host(s) resolved again, "
        f"{report.raw_rows_read} raw rows re-aggregated"
    )
    if dry_run:
        console.print("dry run: nothing changed")
        return
    for daily in roll_up_after_rebuild(ctx.engine, ctx.settings):
        console.print(daily.summary(), markup=False)
