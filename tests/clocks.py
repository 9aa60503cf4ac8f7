"""Clocks the tests control: nothing moves unless the code under test sleeps or a test advances it."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta


class MonotonicClock:
    """A monotonic clock (``time.monotonic`` and ``time.sleep`` stand-ins) that moves only when
    someone sleeps, or, with ``advance_on_sleep=False``, only when a test sets ``now``."""

    def __init__(self, start: float = 0.0, *, advance_on_sleep: bool = True):
        self.now = start
        self.sleeps: list[float] = []
        self.advance_on_sleep = advance_on_sleep
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self.advance_on_sleep:
                self.now += seconds


class WallClock:
    """A settable UTC clock (the product's ``now`` or the simulator's world time)."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
