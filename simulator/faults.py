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
- `html_body`          handle normally, then answer 200 with an HTML page instead (a proxy's or
                       a maintenance page served in place of an export file)
- `corrupt_line`       handle normally, then replace line number `line` (1-based) of the streamed
                       body with a line cut short (not JSON: a malformed export file line)
A fault matches on method (None = any) and a regex searched in the path (no query string).
`times` is how many requests it hits (None = until cleared). Faults win over rate limiting.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

KINDS = (
    "status",
    "error_after_apply",
    "drop_after_apply",
    "reset_before_apply",
    "delay",
    "apply_late",
    "html_body",
    "corrupt_line",
)
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
    b"<body><h1>Service Temporarily Unavailable</h1></body></html>\n"
)
CORRUPT_LINE = b'{"id": "corrupt", "conversationId": "'


@dataclass
class Fault:
    kind: str
    method: str | None
    path: str
    status: int = 500
    times: int | None = 1
    seconds: float = 0.0
    line: int = 1
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
            status: int = 500, times: int | None = 1, seconds: float = 0.0,
            line: int = 1) -> Fault:
        fault = Fault(kind=kind, method=method, path=path, status=status, times=times,
                      seconds=seconds, line=line)
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


def corrupt_line(chunks: Iterable[bytes], line: int) -> Iterator[bytes]:
    """The streamed body with its ``line``-th line (1-based) replaced by ``CORRUPT_LINE``."""
    body = b"".join(chunks)  # fault injection serves small files: joining them keeps this simple
    lines = body.split(b"\n")
    if 0 < line <= len(lines):
        lines[line - 1] = CORRUPT_LINE
    yield b"\n".join(lines)
