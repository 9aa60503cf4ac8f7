"""End-to-end fixtures: the real ``gladly-sync`` CLI, as a subprocess, against the simulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from gladly_sync.simulator import DEFAULT_API_EMAIL, DEFAULT_API_TOKEN, Simulator

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cli:
    """Runs ``python -m gladly_sync --config <cfg> ...`` and reads the store it writes."""

    config: Path
    db_path: Path
    token: str

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
        con = duckdb.connect(str(self.db_path), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()


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
    folder: Path, base_url: str, *, ingest: list[str] | None = None, escalation: str | None = None
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
logging:
  level: info
  format: json
"""
    )
    return path


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=11, customers=12, conversations=24, history_days=4) as simulator:
        yield simulator


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> Cli:
    escalation = sim.world.inbox_id("Escalations")
    config = write_config(tmp_path, sim.base_url, escalation=escalation)
    return Cli(config=config, db_path=tmp_path / "store" / "gladly.duckdb", token=DEFAULT_API_TOKEN)
