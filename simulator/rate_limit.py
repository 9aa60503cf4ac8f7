"""Gladly's per-method request limit as a token bucket per HTTP method.

Capacity is the limit and it refills at the limit per second, so a client that paces itself
at exactly the limit never sees a 429, and a burst above it does. Every response carries
`Ratelimit-Limit-Second` and `Ratelimit-Remaining-Second` (Gladly's documented headers).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

UNLIMITED_HEADER_VALUE = 1000   # what the headers announce when no limit is enforced


class RateLimiter:
    """Token buckets keyed by HTTP method; `limit_per_second=None` enforces nothing."""

    def __init__(self, limit_per_second: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._limit = limit_per_second

    @property
    def limit_per_second(self) -> float | None:
        return self._limit

    @limit_per_second.setter
    def limit_per_second(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("limit_per_second must be positive or None")
        with self._lock:
            self._limit = value
            self._buckets.clear()

    def take(self, method: str, force: bool = False) -> tuple[bool, dict[str, str]]:
        """Spend one token for `method`: (allowed, headers). `force` never refuses."""
        with self._lock:
            if self._limit is None:
                return True, self._headers(UNLIMITED_HEADER_VALUE, UNLIMITED_HEADER_VALUE - 1)
            tokens = self._refill(method)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            elif force:
                tokens = 0.0
            self._buckets[method] = (tokens, self._clock())
            return allowed or force, self._headers(self._limit, tokens)

    def peek(self, method: str) -> dict[str, str]:
        """The headers for `method` without spending a token."""
        with self._lock:
            if self._limit is None:
                return self._headers(UNLIMITED_HEADER_VALUE, UNLIMITED_HEADER_VALUE)
            return self._headers(self._limit, self._refill(method))

    def _refill(self, method: str) -> float:
        assert self._limit is not None
        now = self._clock()
        tokens, last = self._buckets.get(method, (self._limit, now))
        return min(self._limit, tokens + (now - last) * self._limit)

    @staticmethod
    def _headers(limit: float, tokens: float) -> dict[str, str]:
        shown = int(limit) if float(limit).is_integer() else limit
        return {"Ratelimit-Limit-Second": str(shown),
                "Ratelimit-Remaining-Second": str(max(0, math.floor(tokens)))}
