"""A benchmark's workspace: a temporary folder with a config.yaml that points at a simulator, and the
product run there as a subprocess (the ``gladly-sync`` CLI, or ``bench.worker``), timed from outside.

Subprocesses get a clean environment: no inherited ``GLADLY_SYNC_*`` overrides, ``PYTHONPATH`` set to
the repository so the source tree is what runs, bytecode cached (in ``PYCACHE``, outside the tree) as
an installed package's would be, and only the overrides the benchmark asks for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gladly_sync.simulator import DEFAULT_API_EMAIL, DEFAULT_API_TOKEN

REPO = Path(__file__).resolve().parent.parent
PYCACHE = str(Path(tempfile.gettempdir()) / "gladly-bench-pycache")
# No single product run in these benchmarks should take longer (on a machine shared with other
# work, GLADLY_BENCH_TIMEOUT gives them more time: the figures are still measured, and noted as loaded).
CLI_TIMEOUT = float(os.environ.get("GLADLY_BENCH_TIMEOUT", "300"))


class BenchError(RuntimeError):
    """A setup step or a product run failed; the message carries the command and its stderr tail."""


def cli_command() -> list[str]:
    """``python -m gladly_sync`` from this interpreter: the same code as the ``gladly-sync`` entry point,
    without needing the package installed. (The installed script would add its own small startup.)"""
    return [sys.executable, "-m", "gladly_sync"]


@dataclass
class ProcessRun:
    """One finished subprocess: argv, exit code, output, and when it ran (``time.time()``)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    started: float
    finished: float

    @property
    def wall_seconds(self) -> float:
        return self.finished - self.started

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise BenchError(f"{self.describe()} printed no JSON: {self.stdout[-500:]!r}") from exc

    def describe(self) -> str:
        args = [a for a in self.argv if not a.startswith(sys.executable)]
        return f"`{' '.join(args[-6:])}` (exit {self.returncode})"

    def check(self) -> ProcessRun:
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise BenchError(f"{self.describe()} failed:\n{tail}")
        return self

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines the product wrote to stderr."""
        return parse_log_lines(self.stderr)


def parse_log_lines(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


class Workspace:
    """A folder holding ``config.yaml`` and the store, deleted on exit unless ``keep``."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        keep: bool = False,
        requests_per_second: float = 1000,
        escalation_inbox: str | None = None,
        log_level: str = "info",
    ):
        self.keep = keep
        self.folder = Path(tempfile.mkdtemp(prefix=f"gladly-bench-{name}-"))
        self.config = self.folder / "config.yaml"
        self.store = self.folder / "store.duckdb"
        escalation = escalation_inbox or "null"
        self.config.write_text(
            f"""gladly:
  organization: bench
  sandbox: true
  email: {DEFAULT_API_EMAIL}
  api_token: {DEFAULT_API_TOKEN}
  base_url: {base_url}
  requests_per_second: {requests_per_second}
  timeout_seconds: 60
inboxes:
  ingest: []
  escalation: {escalation}
storage:
  path: store.duckdb
  snapshot_path: store_read.duckdb
  lock_wait_seconds: 30
logging:
  level: {log_level}
  format: json
""",
            encoding="utf-8",
        )

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    def env(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLADLY_SYNC")}
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("GLADLY_API_TOKEN", None)
        # Like an installed package, whose modules pip byte-compiles: cache bytecode, outside the tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
        env.update(overrides or {})
        return env

    def cli(
        self, *args: str, overrides: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
    ) -> ProcessRun:
        """Run ``gladly-sync --config <ws> ARGS`` to completion and time it."""
        return self.run([*cli_command(), "--config", str(self.config), *args], overrides, timeout)

    def worker(
        self, *args: str, overrides: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
    ) -> ProcessRun:
        """Run ``python -m bench.worker ARGS --config <ws>``."""
        return self.run(
            [sys.executable, "-m", "bench.worker", *args, "--config", str(self.config)], overrides, timeout
        )

    def run(self, argv: Sequence[str], overrides: dict[str, str] | None, timeout: float) -> ProcessRun:
        started = time.time()
        try:
            done = subprocess.run(
                list(argv),
                cwd=self.folder,
                env=self.env(overrides),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"`{' '.join(argv[-4:])}` did not finish within {timeout:.0f} s") from exc
        return ProcessRun(list(argv), done.returncode, done.stdout, done.stderr, started, time.time())

    def start_cli(self, *args: str, overrides: dict[str, str] | None = None) -> BackgroundProcess:
        """Start ``gladly-sync ARGS`` (e.g. the daemon) in the background, stderr to a file."""
        argv = [*cli_command(), "--config", str(self.config), *args]
        return BackgroundProcess(argv, self.folder, self.env(overrides))


class BackgroundProcess:
    """A product process we started and stop ourselves (SIGTERM, then SIGKILL by its pid)."""

    def __init__(self, argv: list[str], folder: Path, env: dict[str, str]):
        self.argv = argv
        self.stderr_path = folder / f"background-{int(time.time() * 1000)}.log"
        self._stderr = self.stderr_path.open("w", encoding="utf-8")
        self.started = time.time()
        self.process = subprocess.Popen(
            argv, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr, text=True
        )

    def log_text(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, event: str, timeout: float) -> bool:
        """Poll the log (bounded by ``timeout``) until a line with ``"event": "<event>"`` appears."""
        deadline = time.monotonic() + timeout
        needle = f'"event": "{event}"'
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def stop(self, grace: float = 60.0) -> int:
        """SIGTERM (the daemon finishes its current step), SIGKILL after ``grace`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._stderr.close()
        return self.process.returncode
