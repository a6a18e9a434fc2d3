"""`xrdagg topology`: loading topology files and resolving hosts to sites."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from xrdagg.commands.common import (
    Context,
    console,
    existing_dir,
    interrupt_on_signals,
    operator_errors,
    pass_context,
)
from xrdagg.errors import TopologyError
from xrdagg.reports import since, unresolved
from xrdagg.rules import UNKNOWN
from xrdagg.topology.files import Topology, read_topology_dir
from xrdagg.topology.review import site_profile, topology_warnings, vo_names_of
from xrdagg.topology.store import (
    ResolutionChange,
    has_topology,
    load_topology,
    read_topology,
    resolution_changes,
    statistics_exist,
    stored_sites,
    update_changed_resolutions,
)

if TYPE_CHECKING:
    from xrdagg.jobs.apply import PairChange

SHOWN_CHANGES = 5  # changes quoted in a refusal
SHOWN_DOMAINS = 100  # domains listed by `apply`
SHOWN_HOSTS = 10  # hosts listed under each domain


def _rows_of(changes: list[PairChange]) -> int:
    return sum(c.raw_rows or 0 for c in changes)


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

    Once statistics exist, a topology that would move any host or SERVER_SITE name to another
    site is refused: `xrdagg topology apply` loads it and rebuilds what it changes.

    Example: xrdagg topology load --dir /etc/xrdagg/topology
    """
    directory = directory or ctx.settings.topology_dir
    data = read_topology_dir(directory)
    with ctx.engine.begin() as conn:
        known = stored_sites(conn)
        if has_topology(conn) and statistics_exist(conn):
            changes = resolution_changes(conn, data)
            if changes:
                raise TopologyError(_refusal(directory, changes))
        summary = load_topology(conn, data, directory)
        updated = (
            update_changed_resolutions(conn, data.resolver()) if summary.has_cached_pairs else 0
        )
    console.print(
        f"topology {summary.load_id} loaded from {directory}: {summary.patterns} patterns, "
        f"{summary.domains} domains, {summary.countries} countries, "
        f"{summary.vo_names} VO site names"
    )
    if updated:
        console.print(f"{updated} cached host resolution(s) updated (no statistics held them yet)")
    _print_warnings(data, known)


def _refusal(directory: Path, changes: list[ResolutionChange]) -> str:
    shown = "; ".join(
        f"{c.what} ({c.domain or 'SERVER_SITE'}): {c.old_site} -> {c.new_site}"
        for c in changes[:SHOWN_CHANGES]
    )
    more = f" … and {len(changes) - SHOWN_CHANGES} more" if len(changes) > SHOWN_CHANGES else ""
    return (
        f"topology load refused, nothing loaded: statistics exist and {len(changes)} "
        f"resolution(s) would change ({shown}{more}), which would leave those statistics under "
        f"the old sites. Use `xrdagg topology apply --dir {directory} --dry-run` to review the "
        f"change, then `xrdagg topology apply --dir {directory}` to load it and rebuild what it "
        "changes."
    )


def _print_warnings(data: Topology, known_sites: set[str] | None) -> None:
    for warning in topology_warnings(data, known_sites):
        console.print(f"warning: {warning}")


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
    data = _topology(ctx, directory)
    result = data.resolver().resolve(host, domain, server_site)
    console.print(
        f"{result.site}\t(fqdn {result.fqdn or '-'}, domain {result.domain}; {result.explain()})"
    )
    names = vo_names_of(data, result.site)
    if names:
        console.print("VO names: " + ", ".join(f"{e.vo} {e.vo_site}" for e in names))


@topology.command()
@click.argument("site")
@click.option(
    "--dir",
    "directory",
    callback=existing_dir,
    help="Read this topology directory instead of the loaded topology.",
)
@pass_context
@operator_errors
def show(ctx: Context, site: str, directory: Path | None) -> None:
    """Show what maps to SITE (patterns, domains and hosts, SERVER_SITE aliases), its country
    and its VO names. SITE is a GOCDB name or a VO's name for one, in any case.

    Example: xrdagg topology show USCMS-FNAL-WC1
    """
    for line in site_profile(_topology(ctx, directory), site).lines():
        console.print(line)


def _topology(ctx: Context, directory: Path | None) -> Topology:
    """The topology of `directory`, else the one loaded in the database."""
    if directory is not None:
        return read_topology_dir(directory)
    with ctx.engine.connect() as conn:
        return read_topology(conn)


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
    console.print(frame.to_text(), markup=False)


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
@click.option(
    "--from-day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Rebuild only the statistics of this day (UTC) and later; those before keep the sites "
    "of the old topology (for history whose raw rows the collectors have purged).",
)
@pass_context
@operator_errors
def apply(ctx: Context, directory: Path | None, dry_run: bool, from_day: datetime | None) -> None:
    """Load a new topology and recompute only the statistics it changes.

    The cached hosts the change can affect are resolved again; the statistics of the
    (domain, site) keys that hosts leave or join are rebuilt, on the days that hold them, from
    the raw rows that feed them, in one transaction (the 10-minute jobs are paused meanwhile),
    and so are the daily rows of those keys on those days. Then the daily job runs, for the
    days the 10-minute jobs left to roll up. Where the raw rows behind such statistics are gone
    (purged by the collectors) it stops and changes nothing, naming the days: `--from-day`
    then rebuilds the later days only.

    Example: xrdagg topology apply --dir /etc/xrdagg/topology --dry-run
    """
    from xrdagg.jobs.apply import apply_topology
    from xrdagg.jobs.specs import load_job_specs
    from xrdagg.operations import roll_up_after_rebuild

    directory = directory or ctx.settings.topology_dir
    data = read_topology_dir(directory)
    specs = load_job_specs(ctx.settings.jobs_dir)
    with ctx.engine.connect() as conn:
        known = stored_sites(conn)
    with interrupt_on_signals():
        report = apply_topology(
            ctx.engine,
            data,
            directory,
            specs,
            dry_run=dry_run,
            lease_seconds=ctx.settings.pause_lease_seconds,
            from_day=from_day,
        )
    verb = "would change" if dry_run else "changed"
    by_domain: dict[str, list[PairChange]] = defaultdict(list)
    for change in report.changes:
        by_domain[change.domain].append(change)
    console.print(
        f"{len(report.changes)} cached host(s) {verb} site, in {len(by_domain)} domain(s):"
    )
    groups = sorted(by_domain.items(), key=lambda g: (-_rows_of(g[1]), -len(g[1]), g[0]))
    for domain, changes in groups[:SHOWN_DOMAINS]:
        rows = "" if changes[0].raw_rows is None else f", {_rows_of(changes)} raw rows"
        moves = Counter(f"{c.old_site} -> {c.new_site}" for c in changes)
        console.print(
            f"  {domain}: {len(changes)} host(s){rows}; "
            + ", ".join(f"{move} ({n})" for move, n in moves.most_common())
        )
        ordered = sorted(changes, key=lambda c: (-(c.raw_rows or 0), c.host_key))
        for c in ordered[:SHOWN_HOSTS]:
            host_rows = "" if c.raw_rows is None else f", {c.raw_rows} raw rows"
            console.print(f"    {c.host_shown}: {c.old_site} -> {c.new_site}{host_rows}")
        if len(ordered) > SHOWN_HOSTS:
            console.print(f"    … and {len(ordered) - SHOWN_HOSTS} more host(s)")
    if len(groups) > SHOWN_DOMAINS:
        console.print(f"  … and {len(groups) - SHOWN_DOMAINS} more domain(s)")
    for alias, (old, new) in sorted(report.alias_changes.items()):
        kept = "(kept as written)"
        console.print(f"  SERVER_SITE alias {alias}: {old or kept} -> {new or kept}")
    console.print(
        f"statistics rows rebuilt: {report.stats_rows_deleted} deleted, "
        f"{report.stats_rows_written} written over {len(report.days)} day(s); "
        f"{report.pairs_checked} cached host(s) resolved again, "
        f"{report.raw_rows_read} raw rows re-aggregated, "
        f"{report.daily_rows_written} daily rows rolled up again"
    )
    if from_day is not None:
        console.print(f"statistics before {from_day:%Y-%m-%d} left as they were (old topology)")
    unresolved = sum(1 for c in report.changes if c.new_site == UNKNOWN)
    if unresolved:
        console.print(f"warning: {unresolved} cached host(s) {verb} to unresolved ({UNKNOWN})")
    _print_warnings(data, known)
    if dry_run:
        console.print("dry run: nothing changed")
        return
    for daily in roll_up_after_rebuild(ctx.engine, ctx.settings):
        console.print(daily.summary(), markup=False)
