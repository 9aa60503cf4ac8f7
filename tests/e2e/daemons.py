"""Background ``gladly-sync`` processes for end-to-end tests (the daemon, or a cron ``sync`` caught
mid-run): started, waited for, stopped with a signal or killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple, TypeVar

from gladly_sync.simulator import Simulator

from tests.e2e.conftest import ROOT, Cli

T = TypeVar("T")


class Stopped(NamedTuple):
    """How long a process took to exit after the signal, and what it printed."""

    seconds: float
    out: str
    err: str


def start(cli: Cli, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m gladly_sync --config <cfg> *argv`` in the background, ``env`` over the test's
    environment, stdout and stderr captured."""
    environ = {**os.environ, "GLADLY_API_TOKEN": cli.token, **(env or {})}
    environ.pop("GLADLY_SYNC_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "gladly_sync", "--config", str(cli.config), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        cwd=ROOT,
    )


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 120) -> Stopped:
    """Sends ``signum`` and waits for the process to exit."""
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=timeout)
    return Stopped(time.monotonic() - sent, out, err)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL, and reap the process."""
    process.kill()
    process.communicate()


@contextmanager
def killed_if_failing(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Kills ``process`` when the block raises (a wait that failed), so no process outlives its test."""
    try:
        yield process
    except BaseException:
        kill(process)
        raise


def wait_until(
    condition: Callable[[], T | None],
    what: str,
    *,
    timeout: float,
    every: float = 0.1,
    process: subprocess.Popen | None = None,
) -> T:
    """Polls ``condition`` until it returns something truthy, and returns that; fails naming
    ``what`` after ``timeout`` seconds, or with its stderr as soon as ``process`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            assert process.poll() is None, process.communicate()[1][-3000:]
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"no {what} within {timeout}s")


def wait_for_request(sim: Simulator, path_part: str, timeout: float = 20) -> None:
    """Waits until the simulator has received a request whose path contains ``path_part``."""
    wait_until(
        lambda: any(path_part in r.path for r in sim.requests),
        f"request to {path_part}",
        timeout=timeout,
        every=0.05,
    )
