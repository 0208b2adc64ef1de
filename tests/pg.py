"""A real Postgres server for tests: `initdb` and `pg_ctl` from the machine's binaries, a
cluster in a temporary folder, listening on a free port of 127.0.0.1, removed afterwards.

initdb refuses to run as root, so as root (CI) the cluster belongs to the `postgres` user
the Debian package creates and every server command runs through `runuser`. Durability is
switched off (fsync, synchronous_commit): the data dies with the test anyway.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

USER = "ud"


def postgres_bin() -> Path | None:
    """$UD_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else the folder of pg_ctl on PATH."""
    if os.environ.get("UD_PG_BIN"):
        return Path(os.environ["UD_PG_BIN"])
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ud-pg-"))
        self.data = self.root / "data"
        self.password = secrets.token_hex(12)
        self.port = 0
        self._owner = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._owner:
            cmd = ["runuser", "-u", self._owner, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if proc.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stdout}{proc.stderr}{log[-2000:]}")
        return proc

    def start(self) -> "PostgresServer":
        (self.root / "pwfile").write_text(self.password + "\n")
        (self.root / "sock").mkdir()
        if self._owner:
            entry = pwd.getpwnam(self._owner)
            for path in (self.root, self.root / "pwfile", self.root / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(self.root / "pwfile"),
                  "--auth", "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync")
        for attempt in range(3):  # another process may take the free port before the server binds it
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root / 'sock'} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w",
                          "-t", "60", "start")
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname="postgres")
        con.autocommit = True
        try:
            con.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return name

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_or_skip() -> PostgresServer:
    """A running server; without Postgres binaries the test is skipped, except in CI where it fails."""
    bindir = postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        message = "no Postgres binaries (initdb, pg_ctl): apt-get install postgresql, or set UD_PG_BIN"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return PostgresServer(bindir).start()
