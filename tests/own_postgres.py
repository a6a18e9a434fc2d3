"""A throwaway PostgreSQL server of a test's own, for tests that stop and start their server.

The machine's shared server (XRDAGG_TEST_POSTGRES_URL) is never stopped, restarted or
reconfigured by a test: others use it meanwhile. A test that needs an outage starts its own with
`own_postgres()`: initdb into a fresh directory, as the `postgres` OS user when run as root, on a
free port of 127.0.0.1 with its socket in that directory, trust auth; stopped and removed after.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.backends import Backend
from xrdagg.config import Settings
from xrdagg.db import migrate
from xrdagg.db.engine import make_engine

SERVER_BINARIES = Path("/usr/lib/postgresql")  # Debian's layout: one bin/ per major version
DATABASE = "xrdagg"


def _bin_dir() -> Path | None:
    """The bin/ of the newest PostgreSQL with initdb, else the directory of `initdb` on PATH."""
    versions = []
    if SERVER_BINARIES.is_dir():
        for version in SERVER_BINARIES.iterdir():
            if (version / "bin" / "initdb").is_file():
                key = tuple(int(n) for n in re.findall(r"\d+", version.name))
                versions.append((key, version / "bin"))
    if versions:
        return max(versions)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user() -> tuple[list[str], int | None, int | None] | str:
    """(command prefix, uid, gid) to run the server's programs with, or why they cannot run.

    initdb refuses root: as root they run as `postgres`; otherwise as the current user."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        return "running as root and there is no `postgres` OS user to run initdb as"
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--"], user.pw_uid, user.pw_gid
    return "running as root and there is no runuser to run initdb as `postgres`"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnPostgres:
    def __init__(self, bin_dir: Path, prefix: list[str], base: Path) -> None:
        self.bin_dir, self.prefix, self.base = bin_dir, prefix, base
        self.data, self.sockets, self.log = base / "data", base / "sockets", base / "server.log"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, program: str, *args: str) -> None:
        command = [*self.prefix, str(self.bin_dir / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
            raise RuntimeError(
                f"{program} exited {result.returncode}: {said[0]}\n{' '.join(command)}\n"
                f"{result.stdout}{result.stderr}\n{log}"
            )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop this server, and only this one (pg_ctl on its own data directory)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self) -> None:
        admin = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        try:
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {DATABASE}"))
        finally:
            admin.dispose()


@contextlib.contextmanager
def own_postgres() -> Iterator[tuple[OwnPostgres, Backend]]:
    """A running server of our own with a migrated database `xrdagg`, and a Backend on it.

    Skips, saying why, when no initdb is installed or it cannot run as the `postgres` user.
    Its directory is a fresh one in the system's temporary directory rather than pytest's: the
    `postgres` user could not enter root's pytest directory (mode 0700), and a socket path must
    stay short (about 100 characters).
    """
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip(
            "no initdb on this machine (PostgreSQL server binaries) for a server of its own"
        )
    user = _as_server_user()
    if isinstance(user, str):
        pytest.skip(f"cannot run a PostgreSQL server of its own: {user}")
    prefix, uid, gid = user
    base = Path(tempfile.mkdtemp(prefix="xrdagg-pg-"))
    server = OwnPostgres(bin_dir, prefix, base)
    engine = None
    try:
        server.sockets.mkdir()
        if uid is not None and gid is not None:
            for path in (base, server.sockets):
                os.chown(path, uid, gid)
        try:
            server.init()
        except RuntimeError as error:
            pytest.skip(f"initdb could not run as the server's user: {str(error).splitlines()[0]}")
        server.start()
        server.create_database()
        env = {"XRDAGG_DATABASE_URL": server.url}
        settings = Settings.from_env(env)
        migrate.upgrade(settings)
        engine = make_engine(settings)
        yield server, Backend("postgres-own", settings, engine, env)
    finally:
        if engine is not None:
            engine.dispose()
        if server.running():
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
