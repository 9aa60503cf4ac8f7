"""The rate budget and the backoff: the one place that decides when a request may go.

Gladly allows 10 requests per second per HTTP method for the whole organization, shared by every
client of the org, and answers 429 above it. ``Pacer`` spaces our requests evenly per method at
``requests_per_second`` (no bursts), steers by ``Ratelimit-Remaining-Second`` as soon as other clients
leave us less than that, and takes a penalty after a 429. ``Backoff`` gives the full-jitter delays
between retries. A process has ONE pacer, shared by every client it builds (``Context`` makes it), so
the daemon's sync, drain and reconcile together stay within the share.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Backoff", "Pacer"]

_WINDOW = 1.0  # Gladly's limits and its Remaining header count per second


class Pacer:
    """Per-method slot pacing, safe to share between threads.

    Each ``acquire(method)`` reserves the next free slot of that method, ``1 / requests_per_second``
    after the previous one, and sleeps until it. Sequential callers whose requests take less than
    a slot still reach exactly the rate; concurrent callers never exceed it.
    """

    def __init__(
        self,
        requests_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be greater than 0, got {requests_per_second!r}")
        self.requests_per_second = float(requests_per_second)
        self.interval = 1.0 / self.requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self._sent: dict[str, deque[float]] = {}  # our slots per method, ascending, pruned to ~1 s

    def acquire(self, method: str) -> float:
        """Reserve the next slot for ``method``, sleep until it, and return it (clock time)."""
        method = method.upper()
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot.get(method, now))
            self._next_slot[method] = slot + self.interval
            sent = self._sent.setdefault(method, deque())
            sent.append(slot)
            while sent and sent[0] <= now - _WINDOW:
                sent.popleft()
        if slot > now:
            self._sleep(slot - now)
        return slot

    def observe(self, method: str, remaining: int | None) -> None:
        """Steer by Gladly's ``Ratelimit-Remaining-Second`` for a response to ``method``.

        Gladly counts the org's requests per second; what is left of that second plus our own
        requests within it is what the other clients leave us (``headroom``). As soon as that falls
        below our share (``requests_per_second``), our next slot moves out to pace at the headroom
        instead. ``0`` means this second is spent: our next slot moves to one second after the
        earliest of our requests within the last second (at exactly the limit that is where it was
        anyway). Alone at our share, the headroom never falls below it and nothing changes.
        """
        if remaining is None:
            return
        method = method.upper()
        with self._lock:
            now = self._clock()
            recent = [slot for slot in self._sent.get(method, ()) if now - _WINDOW < slot <= now]
            headroom = max(0, remaining) + len(recent)
            if headroom >= self.requests_per_second:
                return
            if remaining > 0:
                not_before = now + _WINDOW / headroom
            else:
                not_before = recent[0] + _WINDOW if recent else now + self.interval
            self._next_slot[method] = max(self._next_slot.get(method, now), not_before)

    def penalize(self, method: str, delay: float) -> None:
        """Hold back every caller of ``method`` until ``delay`` seconds from now (after a 429)."""
        method = method.upper()
        with self._lock:
            not_before = self._clock() + max(0.0, delay)
            self._next_slot[method] = max(self._next_slot.get(method, not_before), not_before)


class Backoff:
    """Full-jitter exponential backoff: ``delay(n)`` is uniform in ``[0, min(cap, base * 2**n)]``."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        if base <= 0 or cap <= 0:
            raise ValueError("base and cap must be greater than 0")
        self.base = base
        self.cap = cap
        self._rng = rng if rng is not None else random.Random()

    def ceiling(self, attempt: int) -> float:
        """The largest delay ``attempt`` (0-based) can draw."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 64))

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0.0, self.ceiling(attempt))
