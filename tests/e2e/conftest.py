"""End-to-end fixtures: the real ``gladly-sync`` CLI, as a subprocess, against the simulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from gladly_sync.simulator import DEFAULT_API_EMAIL, DEFAULT_API_TOKEN, Simulator

from tests.conftest import PostgresSchema

ROOT = Path(__file__).resolve().parents[2]


BACKENDS = ["duckdb", "postgres"]
# Apply to a test or class to run it on both stores; without it the ``cli`` fixture is DuckDB's.
both_backends = pytest.mark.parametrize("backend", BACKENDS)


@dataclass
class Cli:
    """Runs ``python -m gladly_sync --config <cfg> ...`` and reads the store it writes."""

    config: Path
    db_path: Path
    token: str
    postgres: PostgresSchema | None = None  # set: the store is this PostgreSQL schema

    @property
    def backend(self) -> str:
        return "postgres" if self.postgres else "duckdb"

    def __call__(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        environ = {**os.environ, "GLADLY_API_TOKEN": self.token, **(env or {})}
        environ.pop("GLADLY_SYNC_CONFIG", None)
        return subprocess.run(
            [sys.executable, "-m", "gladly_sync", "--config", str(self.config), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            cwd=ROOT,
        )

    def ok(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        done = self(*argv, **kw)
        assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert self.token not in done.stdout + done.stderr
        return done

    def json(self, *argv: str) -> object:
        return json.loads(self.ok(*argv, "--json").stdout)

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Read the store (DuckDB SQL with ``?``; on PostgreSQL through the backend's adapter)."""
        if self.postgres:
            from gladly_sync.storage.postgres import PostgresDatabase

            db = PostgresDatabase(self.postgres.url, schema=self.postgres.schema)
            with db.connect(read_only=True) as pg:
                return pg.execute(sql, list(params)).fetchall()
        con = duckdb.connect(str(self.db_path), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    def table(self, name: str, *, without: tuple[str, ...] = ()) -> list[tuple]:
        """Every row of ``name`` ordered by its first column, leaving out the ``without`` columns."""
        if self.postgres:
            from gladly_sync.storage.postgres import PostgresDatabase

            db = PostgresDatabase(self.postgres.url, schema=self.postgres.schema)
            with db.connect(read_only=True) as pg:
                result = pg.execute(f"SELECT * FROM {name} ORDER BY 1")
                names, rows = [d[0] for d in result.description], result.fetchall()
        else:
            con = duckdb.connect(str(self.db_path), read_only=True)
            try:
                result = con.execute(f"SELECT * FROM {name} ORDER BY 1")
                names, rows = [d[0] for d in result.description], result.fetchall()
            finally:
                con.close()
        keep = [n not in without for n in names]
        return [tuple(v for v, k in zip(row, keep, strict=True) if k) for row in rows]


def run_demo(folder: Path) -> subprocess.CompletedProcess:
    """``python -m gladly_sync demo`` in ``folder``, with no token in the environment; asserts exit 0."""
    environ = {**os.environ, "GLADLY_API_TOKEN": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "gladly_sync", "demo"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=environ,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def write_config(
    folder: Path,
    base_url: str,
    *,
    ingest: list[str] | None = None,
    escalation: str | None = None,
    postgres: PostgresSchema | None = None,
) -> Path:
    ingest_yaml = "[" + ", ".join(ingest or []) + "]"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(
        f"""gladly:
  organization: e2e
  sandbox: true
  email: {DEFAULT_API_EMAIL}
  api_token: ${{GLADLY_API_TOKEN}}
  base_url: {base_url}
  requests_per_second: 200
  timeout_seconds: 5
inboxes:
  ingest: {ingest_yaml}
  escalation: {escalation or "null"}
storage:
  path: store/gladly.duckdb
  snapshot_path: store/gladly_read.duckdb
  lock_wait_seconds: 10
{_postgres_keys(postgres)}logging:
  level: info
  format: json
"""
    )
    return path


def _postgres_keys(postgres: PostgresSchema | None) -> str:
    if postgres is None:
        return ""
    return f"  url: {postgres.url}\n  schema: {postgres.schema}\n"


@pytest.fixture
def backend() -> str:
    """The store the ``cli`` fixture configures (``both_backends`` parametrizes it)."""
    return "duckdb"


@pytest.fixture
def make_cli(backend: str, request: pytest.FixtureRequest, sim: Simulator) -> Callable[..., Cli]:
    """``make_cli(folder, ingest=..., escalation=...)``: a configured CLI on the test's backend;
    on PostgreSQL each call gets a schema of its own."""

    made: list[Cli] = []

    def make(folder: Path, **keys: Any) -> Cli:
        postgres = None
        if backend == "postgres":
            postgres = request.getfixturevalue("postgres_schema")
            postgres = _another_schema(postgres) if made else postgres
        config = write_config(folder, sim.base_url, postgres=postgres, **keys)
        made.append(
            Cli(config, folder / "store" / "gladly.duckdb", DEFAULT_API_TOKEN, postgres=postgres)
        )
        return made[-1]

    return make


def _another_schema(postgres: PostgresSchema) -> PostgresSchema:
    """A second schema next to the test's (dropped with the session's database)."""
    import uuid

    import psycopg

    schema = f"{postgres.schema}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.url, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    return PostgresSchema(postgres.url, schema)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=11, customers=12, conversations=24, history_days=4) as simulator:
        yield simulator


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path, make_cli: Callable[..., Cli]) -> Cli:
    return make_cli(tmp_path, escalation=sim.world.inbox_id("Escalations"))
