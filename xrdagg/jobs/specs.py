"""Declarative job definitions, read from the TOML files of the jobs directory."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xrdagg.errors import ConfigError

KINDS = ("fed", "eos", "daily", "housekeeping", "audit")
# 10-minute statistics tables housekeeping may trim; the daily tables are never trimmed.
RETAINABLE_TABLES = ("t_stats_avg", "t_user_activity", "t_stats_access_pattern", "t_msg_rate")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class JobSpec:
    """One declared job (jobs/*.toml): its kind, schedule and options."""

    name: str
    kind: str  # one of KINDS
    description: str = ""
    enabled: bool = True
    interval_minutes: float | None = None
    cron: str | None = None
    safety_lag_seconds: int | None = None
    # Scheduler options (xrdagg serve): a run later than this is still run, once (APScheduler's
    # default of 1 s would skip it silently).
    misfire_grace_seconds: int = 3600
    # Housekeeping: run-log rows older than this many days are deleted; 10-minute statistics
    # rows older than retention_days[table] days too (daily tables are always kept).
    run_log_days: int | None = None
    retention_days: dict[str, int] | None = None
    # Audit: the last `days` days (today included) are compared; `repair` rebuilds those that
    # differ (xrdagg.jobs.audit).
    days: int | None = None
    repair: bool = False

    @property
    def has_watermark(self) -> bool:
        """Whether lag behind database now means something for this job."""
        return self.kind not in ("housekeeping", "audit")

    @property
    def source(self) -> str | None:
        """The raw source a 10-minute job reads ('fed'/'eos'); None for the daily job."""
        return self.kind if self.kind in ("fed", "eos") else None


def load_job_specs(jobs_dir: Path) -> list[JobSpec]:
    """Every job of every *.toml file in `jobs_dir`, in file then declaration order."""
    files = sorted(jobs_dir.glob("*.toml"))
    if not files:
        raise ConfigError(f"{jobs_dir}: no job definitions (*.toml)")
    specs: list[JobSpec] = []
    for path in files:
        try:
            document = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        for number, entry in enumerate(document.get("job", []), start=1):
            specs.append(_spec(path, number, entry))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{jobs_dir}: job names declared twice: {', '.join(duplicates)}")
    # Two incremental jobs of one source would each count every raw row: double statistics.
    for source in ("fed", "eos"):
        same = [s.name for s in specs if s.kind == source]
        if len(same) > 1:
            raise ConfigError(
                f"{jobs_dir}: jobs {', '.join(same)} all read source {source!r}; one incremental "
                "job per source (each would count every raw row). To rename a job, keep one "
                "declaration and run `xrdagg jobs rename OLD NEW`"
            )
    return specs


def _check_cron(where: str, name: str, cron: str) -> None:
    """Refuse a cron expression the scheduler would reject (`99 99 * * *`), at load, instead of
    a traceback when `xrdagg serve` starts."""
    from datetime import UTC

    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(cron, timezone=UTC)
    except ValueError as error:
        raise ConfigError(f"{where} ({name}): 'cron' {cron!r} is not valid: {error}") from None


def _spec(path: Path, number: int, entry: dict[str, Any]) -> JobSpec:
    where = f"{path} job {number}"
    known = set(JobSpec.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must match {_NAME.pattern}, got {name!r}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where} ({name}): 'kind' must be one of {KINDS}, got {kind!r}")
    interval = entry.get("interval_minutes")
    cron = entry.get("cron")
    if interval is not None and (not isinstance(interval, int | float) or interval <= 0):
        raise ConfigError(f"{where} ({name}): 'interval_minutes' must be a positive number")
    if cron is not None and (not isinstance(cron, str) or len(cron.split()) != 5):
        raise ConfigError(f"{where} ({name}): 'cron' must have five fields, got {cron!r}")
    if cron is not None:
        _check_cron(where, name, cron)
    if interval is not None and cron is not None:
        raise ConfigError(f"{where} ({name}): give 'interval_minutes' or 'cron', not both")
    lag = entry.get("safety_lag_seconds")
    if lag is not None and (not isinstance(lag, int) or lag < 0):
        raise ConfigError(f"{where} ({name}): 'safety_lag_seconds' must be a whole number >= 0")
    grace = entry.get("misfire_grace_seconds", 3600)
    if not isinstance(grace, int) or grace < 1:
        raise ConfigError(f"{where} ({name}): 'misfire_grace_seconds' must be a whole number >= 1")
    run_log_days = entry.get("run_log_days")
    if run_log_days is not None and (not isinstance(run_log_days, int) or run_log_days < 1):
        raise ConfigError(f"{where} ({name}): 'run_log_days' must be a whole number >= 1")
    retention = entry.get("retention_days")
    valid_retention = isinstance(retention, dict) and all(
        t in RETAINABLE_TABLES and isinstance(d, int) and d >= 1 for t, d in retention.items()
    )
    if retention is not None and not valid_retention:
        raise ConfigError(
            f"{where} ({name}): 'retention_days' maps 10-minute tables "
            f"({', '.join(RETAINABLE_TABLES)}) to a number of days >= 1"
        )
    if kind != "housekeeping" and (run_log_days is not None or retention is not None):
        raise ConfigError(f"{where} ({name}): retention settings belong to a housekeeping job")
    days = entry.get("days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        raise ConfigError(f"{where} ({name}): 'days' must be a whole number >= 1")
    repair = entry.get("repair", False)
    if not isinstance(repair, bool):
        raise ConfigError(f"{where} ({name}): 'repair' must be true or false")
    if kind != "audit" and (days is not None or "repair" in entry):
        raise ConfigError(f"{where} ({name}): 'days' and 'repair' belong to an audit job")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where} ({name}): 'enabled' must be true or false")
    return JobSpec(
        name=name,
        kind=kind,
        description=str(entry.get("description", "")),
        enabled=enabled,
        interval_minutes=interval,
        cron=cron,
        safety_lag_seconds=lag,
        misfire_grace_seconds=grace,
        run_log_days=run_log_days,
        retention_days=retention,
        days=days,
        repair=repair,
    )
