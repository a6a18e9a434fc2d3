"""Pauses with owners and leases (T_JOB_PAUSE): the exclusion of every rebuild outside the
incremental runs (`xrdagg recompute`, `xrdagg topology apply`).

While a job is paused its runs skip, so the watermark a rebuild read stays put and no run merges
into rows being rebuilt. Each pause row names its owner (the rebuild: 'recompute 12'), the host
and pid holding it, a reason and the days rebuilt (NULL: all), and carries a heartbeat that the
holder renews; so that:
- two rebuilds whose days overlap exclude each other: the second is refused, naming the first
  (two chunks rebuilding one bin at once would double count it);
- several owners may pause one job (rebuilds of other days); each removes only its own rows;
- a holder that dies (kill -9, a dropped ssh) stops renewing: once its lease has expired, the
  next run, rebuild or `xrdagg resume` clears the row with a warning.
Everything is decided in the database, so it holds across processes and hosts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, delete, insert, select, update

from xrdagg.db.dialect import db_now
from xrdagg.db.tables import t_job_pause
from xrdagg.errors import XrdaggError
from xrdagg.jobs.agent import ensure_agents, hold_agent

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 300
OWNER_LEN, HOST_LEN, REASON_LEN = 128, 256, 256


class RebuildBusyError(XrdaggError):
    """Another live rebuild holds a job over overlapping days."""


class PauseLostError(XrdaggError):
    """This process's pause is gone (cleared by `xrdagg resume --force`, or expired)."""


@dataclass(frozen=True)
class Pause:
    """One pause row: who holds which job, since when, and whether the holder still lives."""

    job_name: str
    owner: str
    host_name: str
    process_id: int
    reason: str | None
    day_from: datetime | None
    day_to: datetime | None
    paused_since: datetime
    heartbeat_at: datetime
    lease_seconds: int

    def expired(self, now: datetime) -> bool:
        """True when the holder has not renewed the pause within its lease."""
        return now - self.heartbeat_at > timedelta(seconds=self.lease_seconds)

    def overlaps(self, day_from: datetime | None, day_to: datetime | None) -> bool:
        """True when the days rebuilt meet [day_from, day_to] (None: unbounded)."""
        if self.day_from is None or day_from is None:
            return True
        assert self.day_to is not None and day_to is not None
        return self.day_from <= day_to and day_from <= self.day_to

    def describe(self, now: datetime) -> str:
        """The holder, as an operator reads it: owner, host, pid, age and reason."""
        age = int((now - self.paused_since).total_seconds())
        beat = int((now - self.heartbeat_at).total_seconds())
        days = ""
        if self.day_from is not None and self.day_to is not None:
            days = f", days {self.day_from:%Y-%m-%d}..{self.day_to:%Y-%m-%d}"
        reason = f": {self.reason}" if self.reason else ""
        return (
            f"{self.owner} (host {self.host_name}, pid {self.process_id}, "
            f"since {self.paused_since:%Y-%m-%d %H:%M:%S} UTC, {age} s ago, "
            f"heartbeat {beat} s ago{days}){reason}"
        )


def pauses(conn: Connection, names: Iterable[str] | None = None) -> list[Pause]:
    """The pause rows of the named jobs (default: all), oldest first."""
    statement = select(t_job_pause).order_by(t_job_pause.c.paused_since, t_job_pause.c.job_name)
    if names is not None:
        statement = statement.where(t_job_pause.c.job_name.in_(list(names)))
    return [Pause(**row._mapping) for row in conn.execute(statement)]


def _key(pause: Pause) -> object:
    return and_(
        t_job_pause.c.job_name == pause.job_name,
        t_job_pause.c.owner == pause.owner,
        t_job_pause.c.host_name == pause.host_name,
        t_job_pause.c.process_id == pause.process_id,
    )


def delete_pauses(conn: Connection, gone: Sequence[Pause]) -> None:
    """Remove exactly these pause rows."""
    for pause in gone:
        conn.execute(delete(t_job_pause).where(_key(pause)))  # type: ignore[arg-type]


def live_pauses(conn: Connection, names: Iterable[str], now: datetime) -> list[Pause]:
    """The live pauses of the named jobs; rows whose lease expired are deleted (in the caller's
    transaction) with a warning naming the dead holder."""
    found = pauses(conn, names)
    dead = [p for p in found if p.expired(now)]
    for pause in dead:
        log.warning(
            "job %s: clearing the pause of %s: its lease of %d s expired (the holder died?)",
            pause.job_name,
            pause.describe(now),
            pause.lease_seconds,
        )
    delete_pauses(conn, dead)
    return [p for p in found if not p.expired(now)]


def pid_alive(pid: int) -> bool:
    """True when a process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PauseLease:
    """This process's pause of some jobs for one rebuild, renewed by a heartbeat thread.

    `acquire()` pauses every job in one transaction or refuses (RebuildBusyError) when a live
    rebuild of another owner holds one of them over overlapping days; `renew(conn)` proves, in a
    rebuild's own transaction, that the pause still stands; `release()` removes this process's
    rows only. Use it as a context manager so that an error or a signal releases it.
    """

    def __init__(
        self,
        engine: Engine,
        names: Sequence[str],
        owner: str,
        *,
        reason: str | None = None,
        day_from: datetime | None = None,
        day_to: datetime | None = None,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.engine = engine
        self.names = sorted(set(names))  # one lock order everywhere: no deadlock between pausers
        self.owner = owner[:OWNER_LEN]
        self.reason = reason[:REASON_LEN] if reason else None
        self.day_from, self.day_to = day_from, day_to
        self.lease_seconds = max(1, lease_seconds)
        self.host = socket.gethostname()[:HOST_LEN]
        self.pid = os.getpid()
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _mine(self) -> object:
        return and_(
            t_job_pause.c.owner == self.owner,
            t_job_pause.c.host_name == self.host,
            t_job_pause.c.process_id == self.pid,
            t_job_pause.c.job_name.in_(self.names),
        )

    def acquire(self) -> PauseLease:
        """Pause the jobs (after a run in flight of each has finished), or refuse."""
        with self.engine.begin() as conn:
            ensure_agents(conn, self.names)
            for name in self.names:
                hold_agent(conn, name)  # a run that waited for it then sees the pause
            now = conn.execute(select(db_now())).scalar_one()
            others = [
                p
                for p in live_pauses(conn, self.names, now)
                if p.owner != self.owner and p.overlaps(self.day_from, self.day_to)
            ]
            if others:
                held = "; ".join(f"{p.job_name} held by {p.describe(now)}" for p in others)
                raise RebuildBusyError(
                    f"{self.owner}: refused, another rebuild holds these jobs over overlapping "
                    f"days: {held}. Wait for it to finish, or, if its process is gone, "
                    "`xrdagg resume --force JOB` (it is also cleared once its lease expires)"
                )
            conn.execute(delete(t_job_pause).where(self._mine()))  # type: ignore[arg-type]
            conn.execute(
                insert(t_job_pause),
                [
                    {
                        "job_name": name,
                        "owner": self.owner,
                        "host_name": self.host,
                        "process_id": self.pid,
                        "reason": self.reason,
                        "day_from": self.day_from,
                        "day_to": self.day_to,
                        "paused_since": now,
                        "heartbeat_at": now,
                        "lease_seconds": self.lease_seconds,
                    }
                    for name in self.names
                ],
            )
        self.held = True
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"pause-{self.owner}", daemon=True
        )
        self._beat.start()
        return self

    def renew(self, conn: Connection) -> None:
        """Renew the heartbeat in the caller's transaction; PauseLostError when any of this
        process's rows is gone."""
        renewed = conn.execute(
            update(t_job_pause).where(self._mine()).values(heartbeat_at=db_now())  # type: ignore[arg-type]
        ).rowcount
        if renewed < len(self.names):
            raise self._lost()

    def verify(self, conn: Connection) -> None:
        """In a rebuild's transaction, before it writes: PauseLostError when this process's
        pause is gone (cleared by hand, or expired), so that the rebuild stops instead of
        writing with a watermark that may have moved."""
        if conn.dialect.name == "sqlite":
            # The rebuild holds SQLite's one write lock already: renewing costs nothing, and
            # keeps the lease fresh when back-to-back chunks leave the heartbeat no gap.
            self.renew(conn)
            return
        # Elsewhere an UPDATE would lock the pause rows until the chunk commits and serialize
        # the recompute's workers on them: only look.
        held = conn.execute(select(t_job_pause.c.job_name).where(self._mine())).all()  # type: ignore[arg-type]
        if len(held) < len(self.names):
            raise self._lost()

    def _lost(self) -> PauseLostError:
        return PauseLostError(
            f"{self.owner}: the pause of {', '.join(self.names)} was cleared meanwhile "
            "(by `xrdagg resume --force`, or its lease expired): stopped before rebuilding "
            "with a watermark that may have moved"
        )

    def _heartbeat(self) -> None:
        interval = max(0.5, self.lease_seconds / 5)
        while not self._stop.wait(interval):
            try:
                with self.engine.begin() as conn:
                    self.renew(conn)
            except PauseLostError as lost:
                log.warning("%s", lost)
                return
            except Exception:  # a busy or unreachable database: try again next beat
                log.warning("%s: heartbeat failed; retrying", self.owner, exc_info=True)

    def release(self) -> None:
        """Remove this process's pause rows (other owners' and other processes' stay)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=30)
            self._beat = None
        if not self.held:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(t_job_pause).where(self._mine()))  # type: ignore[arg-type]
        self.held = False

    def __enter__(self) -> PauseLease:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def release_owner(conn: Connection, owner: str) -> None:
    """Remove every pause row of `owner`, whichever process holds it (a rebuild that is done:
    the processes that shared it have nothing left to hold)."""
    conn.execute(delete(t_job_pause).where(t_job_pause.c.owner == owner[:OWNER_LEN]))


def resume(
    conn: Connection, names: Sequence[str] | None, *, force: bool
) -> tuple[list[tuple[Pause, str]], list[tuple[Pause, str]]]:
    """`xrdagg resume`: clear the pauses of the named jobs (default: all) whose holder is gone
    (lease expired, or a process of this host that no longer exists); with `force`, every one.
    Returns (cleared, kept) as lists of (Pause, description)."""
    now = conn.execute(select(db_now())).scalar_one()
    host = socket.gethostname()[:HOST_LEN]
    cleared: list[tuple[Pause, str]] = []
    kept: list[tuple[Pause, str]] = []
    for pause in pauses(conn, names):
        gone = pause.expired(now) or (pause.host_name == host and not pid_alive(pause.process_id))
        (cleared if force or gone else kept).append((pause, pause.describe(now)))
    delete_pauses(conn, [p for p, _ in cleared])
    return cleared, kept
