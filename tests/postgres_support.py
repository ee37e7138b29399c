"""A real, throwaway PostgreSQL server for a test module: Debian's ``postgresql`` binaries.

``initdb`` a cluster in a temp dir, start it with ``pg_ctl`` on a free loopback port (and a unix
socket in the data dir, so nothing in ``/var/run/postgresql`` is needed), create the database,
and stop and delete it all afterwards. PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` user the Debian package creates (else ``nobody``), through
``runuser``, with the temp dir handed over to it. Host connections need the password (SCRAM),
as a deployed server's do: the instance under test gets it from ``DAGSTER_PG_PASSWORD``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg2.extensions import connection

USER = "churn"
DATABASE = "dagster"
SERVER_ACCOUNTS = ("postgres", "nobody")
"""Who runs the server when the tests run as root (the first that exists)."""


@dataclass(frozen=True)
class PostgresServer:
    """Where a running server listens and how to log in; ``env`` is what deploy/dagster.yaml reads."""

    host: str
    port: int
    user: str
    password: str
    database: str
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def connect(self, database: str | None = None) -> connection:
        """A psycopg2 connection over TCP with the password, as the instance connects."""
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
        )


def bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: on ``PATH``, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off ``PATH``); None if absent."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _server_account() -> str | None:
    """None when this process may run the server itself; else the account to run it as."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_ACCOUNTS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError(f"running as root and none of the accounts {SERVER_ACCOUNTS} exists")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], account: str | None, timeout: float = 120) -> None:
    """Run a server command (as ``account`` under root); fail with its output, not a bare code."""
    if account is not None:
        command = ["runuser", "-u", account, "--", *command]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {completed.returncode}:\n"
            f"{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
        )


@contextmanager
def postgres_server(binaries: Path) -> Iterator[PostgresServer]:
    """Start a fresh cluster with ``binaries`` and yield it, with database ``dagster`` created;
    stopped (fast shutdown) and deleted on exit."""
    account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="churn-postgres-"))
    data_dir, log = root / "data", root / "server.log"
    password = secrets.token_urlsafe(16)
    password_file = root / "password"
    password_file.write_text(password + "\n")
    if account is not None:
        entry = pwd.getpwnam(account)
        for path in (root, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    started = False
    try:
        _run(
            [
                str(binaries / "initdb"),
                "--pgdata",
                str(data_dir),
                "--username",
                USER,
                "--pwfile",
                str(password_file),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            account,
        )
        port = _free_port()
        options = f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            [
                str(binaries / "pg_ctl"),
                "--pgdata",
                str(data_dir),
                "--log",
                str(log),
                "--options",
                options,
                "--wait",
                "--timeout",
                "60",
                "start",
            ],
            account,
        )
        started = True
        server = PostgresServer("127.0.0.1", port, USER, password, DATABASE, data_dir)
        _create_database(server)
        yield server
    finally:
        if started:
            _run(
                [str(binaries / "pg_ctl"), "--pgdata", str(data_dir), "--mode", "fast", "stop"],
                account,
            )
        shutil.rmtree(root, ignore_errors=True)


def _create_database(server: PostgresServer) -> None:
    """``CREATE DATABASE dagster`` through the maintenance database, retrying the first
    connection briefly (``pg_ctl --wait`` returns once the server accepts connections, but a
    loaded machine may still refuse the very first one)."""
    import psycopg2
    from psycopg2 import sql

    deadline = time.monotonic() + 30
    while True:
        try:
            con = server.connect("postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(server.database)))
    finally:
        con.close()
