"""Fault injection: make the next matching request(s) fail in a chosen way.

    sim.faults.add(method="POST", path=r"/notes$", kind="error_after_apply", status=500)

Kinds:
- `status`             answer `status` without applying anything (500, 503, 429 bursts...)
- `error_after_apply`  apply the request, then answer `status` (5xx) instead of its result
- `drop_after_apply`   apply the request, then close the connection without any response
- `reset_before_apply` reset the connection (TCP RST) without applying anything
- `delay`              sleep `seconds` first, then handle normally (for client read timeouts)
- `apply_late`         hold the request `seconds` (past the client's read timeout), then apply it
                       and close the connection without an answer: Gladly applying a POST long
                       after our timeout fired
A fault matches on method (None = any) and a regex searched in the path (no query string).
`times` is how many requests it hits (None = until cleared). Faults win over rate limiting.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

KINDS = ("status", "error_after_apply", "drop_after_apply", "reset_before_apply", "delay", "apply_late")


@dataclass
class Fault:
    kind: str
    method: str | None
    path: str
    status: int = 500
    times: int | None = 1
    seconds: float = 0.0
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {KINDS}")
        self._pattern = re.compile(self.path)
        self.method = self.method.upper() if self.method else None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method.upper())) and bool(self._pattern.search(path))

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class Faults:
    """An ordered set of pending faults; the first match takes the request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, method: str | None = None, path: str = ".*", kind: str = "status",
            status: int = 500, times: int | None = 1, seconds: float = 0.0) -> Fault:
        fault = Fault(kind=kind, method=method, path=path, status=status, times=times,
                      seconds=seconds)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first pending fault matching the request, counting the hit."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.exhausted:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
