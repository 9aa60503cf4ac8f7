"""The fair hand-over of the store file between processes.

DuckDB's own file lock has no queue: a process that finds the file locked can only retry, and a
writer that closes one transaction and opens the next microseconds later (an export ingesting part
after part) starves every waiter. So every process takes its turn here first, on two lock files
beside the store, with the kernel queueing the waiters (blocking ``flock``):

    <store>.writer.gate   held only while waiting for the turn (at most one waiter at a time)
    <store>.writer        the turn itself: exclusive for a writer, shared for readers; holds the
                          PID of the last process that took it (named when a waiter gives up)

The gate is what makes it fair: the process holding the turn must pass the gate before it can take
the turn again, and the gate is held by the waiter until the turn is released, so the waiter gets
the file before the next batch (within one write batch).

Threads of one process never meet here: :mod:`storage.database` serialises them first.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Handover", "TurnTimeout"]


class TurnTimeout(Exception):
    """The turn was not given within the wait; ``holder_pid`` is the last process that took it."""

    def __init__(self, holder_pid: int | None, waited_seconds: float):
        super().__init__(f"turn not given within {waited_seconds:.1f}s (holder {holder_pid})")
        self.holder_pid = holder_pid
        self.waited_seconds = waited_seconds


def _lock_within(fd: int, operation: int, timeout: float) -> bool:
    """``flock(fd, operation)`` waiting at most ``timeout`` seconds; False when it timed out.

    The blocking call runs in a helper thread (a blocking ``flock`` cannot be given a timeout); when
    the wait is abandoned, the helper releases the lock as soon as the kernel grants it.
    """
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if timeout <= 0:
            return False
    mine = os.dup(fd)  # same open file description: a lock taken on it is a lock on ``fd``
    granted = threading.Event()
    guard = threading.Lock()
    abandoned = False

    def wait() -> None:
        try:
            fcntl.flock(mine, operation)
            with guard:
                if abandoned:
                    fcntl.flock(mine, fcntl.LOCK_UN)
                else:
                    granted.set()
        finally:
            os.close(mine)

    threading.Thread(target=wait, name="store-handover", daemon=True).start()
    if granted.wait(timeout):
        return True
    with guard:
        if granted.is_set():
            return True
        abandoned = True
    return False


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


class Handover:
    """The turn on one store file; ``turn()`` holds it for a block."""

    def __init__(self, store: Path, *, clock: Callable[[], float] = time.monotonic):
        self.turn_path = Path(f"{store}.writer")
        self.gate_path = Path(f"{store}.writer.gate")
        self._clock = clock

    @contextmanager
    def turn(self, *, shared: bool = False, wait_seconds: float = 30.0) -> Iterator[float]:
        """Hold the turn (shared for a reader) for the block; yields the seconds waited for it.

        Raises :class:`TurnTimeout` when it is not given within ``wait_seconds``.
        """
        started = self._clock()
        gate, turn = _open(self.gate_path), _open(self.turn_path)
        try:
            self._take(gate, turn, shared, wait_seconds, started)
            # fixed width, written in place: no truncation (block freeing) on every turn
            os.pwrite(turn, f"{os.getpid():>10}\n".encode(), 0)
            yield self._clock() - started
        finally:
            os.close(turn)  # closing releases the flock
            os.close(gate)

    def _take(self, gate: int, turn: int, shared: bool, wait_seconds: float, started: float) -> None:
        def left() -> float:
            return wait_seconds - (self._clock() - started)

        if not _lock_within(gate, fcntl.LOCK_EX, left()):
            raise TurnTimeout(self.holder_pid(), self._clock() - started)
        try:
            if not _lock_within(turn, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, left()):
                raise TurnTimeout(self.holder_pid(), self._clock() - started)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

    def holder_pid(self) -> int | None:
        """The PID written by the last process that took the turn (None if unreadable)."""
        try:
            text = self.turn_path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None
