"""`xrdagg recompute`: rebuild the statistics of a range of days, in chunks, resumable."""

from __future__ import annotations

import sys
import time

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from xrdagg.commands.common import (
    Context,
    console,
    err_console,
    interrupt_on_signals,
    operator_errors,
    parse_utc,
    pass_context,
)
from xrdagg.errors import ConfigError, XrdaggError
from xrdagg.jobs.chunks import (
    DEFAULT_MAX_CHUNK_DAYS,
    DEFAULT_MAX_CHUNK_ROWS,
    Chunk,
    ChunkResult,
    plan_chunks,
)
from xrdagg.jobs.recompute import Recompute
from xrdagg.jobs.specs import JobSpec
from xrdagg.operations import roll_up_after_rebuild, select_jobs


@click.command()
@click.option("--from", "day_from", help="First day to rebuild (UTC, YYYY-MM-DD).")
@click.option("--to", "day_to", help="Last day to rebuild, included.")
@click.option(
    "--job", "jobs", multiple=True, help="Only this 10-minute job (repeatable; default: all)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Chunks rebuilt at once, each on its own connection.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the chunks and the raw rows each would read; change nothing.",
)
@click.option("--resume", is_flag=True, help="Finish the last recompute that did not complete.")
@click.option(
    "--max-chunk-rows",
    type=click.IntRange(min=1000),
    default=DEFAULT_MAX_CHUNK_ROWS,
    show_default=True,
    help="Raw rows a chunk holds at most: consecutive days are one chunk while their rows "
    "fit, and a day with more is split.",
)
@click.option(
    "--max-chunk-days",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CHUNK_DAYS,
    show_default=True,
    help="Consecutive days one chunk spans at most (1: a chunk per day).",
)
@pass_context
@operator_errors
def recompute(
    ctx: Context,
    day_from: str | None,
    day_to: str | None,
    jobs: tuple[str, ...],
    workers: int,
    dry_run: bool,
    resume: bool,
    max_chunk_rows: int,
    max_chunk_days: int,
) -> None:
    """Rebuild the statistics of the days --from..--to from the raw tables.

    Counts only rows already under each job's watermark, so the incremental runs and a
    recompute never count a row twice; the jobs being rebuilt skip their runs meanwhile. Each
    chunk is one transaction; after a crash or Ctrl-C, --resume does the rest. The daily tables
    of the touched days are rolled up at the end.

    Example: xrdagg recompute --from 2024-03-01 --to 2024-03-31 --workers 2
    """
    specs = [s for s in select_jobs(ctx.settings, jobs) if s.source is not None]
    if workers > 1 and ctx.settings.backend == "sqlite":
        raise ConfigError(
            "--workers: SQLite has one writer at a time, "
            "so more workers would only wait on its lock"
        )
    job = Recompute(ctx.engine, specs, lease_seconds=ctx.settings.pause_lease_seconds)
    with interrupt_on_signals():
        try:
            _recompute(
                ctx, job, specs, day_from, day_to, workers, dry_run, resume,
                max_chunk_rows, max_chunk_days,
            )  # fmt: skip
        finally:
            job.release()


def _recompute(
    ctx: Context,
    job: Recompute,
    specs: list[JobSpec],
    day_from: str | None,
    day_to: str | None,
    workers: int,
    dry_run: bool,
    resume: bool,
    max_chunk_rows: int,
    max_chunk_days: int,
) -> None:
    if resume:
        recompute_id, chunks = job.resume()
        console.print(f"recompute {recompute_id}: resuming, {len(chunks)} chunks to do")
    else:
        if not day_from or not day_to:
            raise click.UsageError("--from and --to are required (or --resume)")
        first, last = parse_utc(day_from, "--from"), parse_utc(day_to, "--to")
        assert first is not None and last is not None
        if last < first:
            raise click.BadParameter("--to is before --from", param_hint="--to")
        if dry_run:
            with ctx.engine.connect() as conn:
                planned = plan_chunks(
                    conn, specs, first, last, max_chunk_rows,
                    max_days=max_chunk_days, workers=workers,
                )  # fmt: skip
            for c in planned:
                console.print(
                    f"{c.job}\t{c.start:%Y-%m-%d %H:%M} .. {c.end:%Y-%m-%d %H:%M}\t"
                    f"{c.raw_rows} raw rows ending"
                )
            console.print(
                f"{len(planned)} chunks, {sum(c.raw_rows for c in planned)} raw rows; "
                "nothing changed"
            )
            return
        recompute_id, chunks = job.start(
            first, last, max_chunk_rows, max_days=max_chunk_days, workers=workers
        )
        console.print(
            f"recompute {recompute_id}: {len(chunks)} chunks, "
            f"jobs paused: {', '.join(s.name for s in specs)}"
        )
    started = time.monotonic()
    try:
        results = _run_with_progress(job, recompute_id, chunks, workers)
    except (KeyboardInterrupt, Exception) as error:
        job.interrupted(recompute_id)
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else f"failed: {error}"
        raise XrdaggError(
            f"recompute {recompute_id} {reason}; finished chunks are kept. "
            "`xrdagg recompute --resume` does the rest; the jobs run again meanwhile "
            "(each finished chunk kept the statistics exact)"
        ) from None
    rows = sum(r.rows_read for r in results)
    elapsed = time.monotonic() - started
    left = job.pending(recompute_id)
    done = (
        "jobs resumed"
        if not left
        else f"{left} chunk(s) still being rebuilt by other processes, which resume the jobs"
    )
    console.print(
        f"recompute {recompute_id}: {len(results)} chunks, {rows} rows in {elapsed:.1f}s "
        f"({rows / max(elapsed, 1e-9):,.0f} rows/s); {done}"
    )
    if not left:
        for report in roll_up_after_rebuild(ctx.engine, ctx.settings):
            console.print(report.summary(), markup=False)


def _run_with_progress(
    job: Recompute, recompute_id: int, chunks: list[Chunk], workers: int
) -> list[ChunkResult]:
    total_rows = max(1, sum(c.raw_rows for c in chunks))
    started = time.monotonic()
    if not sys.stderr.isatty():
        done_rows = 0

        def log_line(result: ChunkResult, done: int, total: int) -> None:
            nonlocal done_rows
            done_rows += result.chunk.raw_rows
            elapsed = time.monotonic() - started
            rate = done_rows / max(elapsed, 1e-9)
            eta = (total_rows - done_rows) / rate if rate else 0
            c = result.chunk
            err_console.print(
                f"chunk {done}/{total} {c.job} {c.start:%Y-%m-%d %H:%M}..{c.end:%Y-%m-%d %H:%M}: "
                f"{result.rows_read} rows in "
                f"{result.duration_s:.1f}s; {rate:,.0f} rows/s, ETA {eta:.0f}s",
                markup=False,
            )

        return job.run(recompute_id, chunks, workers=workers, progress=log_line)
    columns = (
        TextColumn("recompute {task.fields[rid]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task("chunks", total=len(chunks), rid=recompute_id, rate="-")
        done_rows = 0

        def advance(result: ChunkResult, done: int, total: int) -> None:
            nonlocal done_rows
            done_rows += result.rows_read
            rate = done_rows / max(time.monotonic() - started, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:,.0f}")

        return job.run(recompute_id, chunks, workers=workers, progress=advance)
