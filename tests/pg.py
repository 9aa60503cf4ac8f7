"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temp folder, ``pg_ctl start``, stop.

PostgreSQL refuses to run as root, and CI runs as root: then every server command runs as the
``postgres`` OS user (``runuser -u postgres --``), in a folder that user owns. The server listens on
a Unix socket in that folder and on 127.0.0.1 at a free port, with ``trust`` authentication: it is
reachable only from this machine and lives as long as the test session.

``PostgresCluster.start()`` raises :class:`ClusterUnavailable` (binaries missing, start failed);
the fixtures in ``tests/conftest.py`` turn that into a skip on a developer's machine and a failure
in CI (``CI=true``), so the Postgres leg never skips silently there.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

SUPERUSER = "postgres"
_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


class ClusterUnavailable(Exception):
    """No PostgreSQL server could be started here; the message says why."""


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in _BIN_DIRS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    raise ClusterUnavailable(f"{name} not found on PATH or in {', '.join(_BIN_DIRS)}: install postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_on_sigterm(cluster: PostgresCluster) -> None:
    """A test run ended by SIGTERM (a timeout, CI's cleanup) runs no fixture finalizer or atexit
    hook: stop the cluster first, then let the signal do what it did before."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        cluster.stop()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)


class PostgresCluster:
    """One ``initdb``'d data folder and the server running on it."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="gladly-pg-"))
        self.data = self.folder / "data"
        self.socket_dir = self.folder
        self.port = _free_port()
        self.running = False
        self._as_postgres = os.geteuid() == 0

    def _command(self, *argv: str) -> list[str]:
        return ["runuser", "-u", SUPERUSER, "--", *argv] if self._as_postgres else list(argv)

    def _run(self, *argv: str, timeout: float = 60) -> None:
        done = subprocess.run(self._command(*argv), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            command = " ".join(argv[:2])
            raise ClusterUnavailable(f"{command} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> PostgresCluster:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if self._as_postgres:
            shutil.chown(self.folder, SUPERUSER, SUPERUSER)
        os.chmod(self.folder, 0o755)
        self._run(initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        log = self.folder / "server.log"
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        self.running = True
        atexit.register(self.stop)
        _stop_on_sigterm(self)
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder; safe to call twice."""
        if self.running:
            self.running = False
            # already gone: the folder is removed below either way
            with contextlib.suppress(ClusterUnavailable, subprocess.TimeoutExpired):
                self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A libpq URL over the Unix socket (``?host=/socket/dir``), as a user would configure it."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def tcp_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new database; returns its name."""
        import psycopg

        name = name or f"gladly_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return name
