"""The progress bar of a ``sync`` on a terminal, on a line of its own.

    line = StatusLine(sys.stderr)         # the terminal's bottom line, owned by the bar
    configure_logging(..., stream=line)   # log lines are written above the bar, never on it
    bar = ProgressBar(line)
    sync_once(ctx, progress=bar)          # export jobs done/total, items, conversations, estimate
    bar.close()

The estimate is the export pass's (``eta_seconds``): the whole run, not the job in progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from gladly_sync.sync.cli.render import age

__all__ = ["ProgressBar", "StatusLine"]

ERASE_LINE = "\r\x1b[K"  # back to column 0, clear to the end of the line


class StatusLine:
    """A stream (stderr on a terminal) whose last line belongs to ``show``; text ``write``-n to it
    goes above that line: the line is erased, the text written, and the line drawn again below."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._line = ""
        self._midline = False  # a write left a line unfinished: wait for its newline
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        with self._lock:
            if self._line and not self._midline:
                self.stream.write(ERASE_LINE)
            self.stream.write(text)
            if text:
                self._midline = not text.endswith("\n")
            if self._line and not self._midline:
                self.stream.write(self._line)
            self.stream.flush()
        return len(text)

    def show(self, line: str) -> None:
        with self._lock:
            self._line = line
            if not self._midline:
                self.stream.write(ERASE_LINE + line)
                self.stream.flush()

    def release(self) -> None:
        """Leave the last drawn line where it is and hand the terminal back."""
        with self._lock:
            if self._line:
                self.stream.write("\n")
                self.stream.flush()
            self._line = ""

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


class ProgressBar:
    """The progress line on a TTY: export jobs, items, conversations, and the whole run's estimate."""

    WIDTH = 24

    def __init__(
        self, line: StatusLine | TextIO, *, every: float = 0.1, clock: Callable[[], float] = time.monotonic
    ):
        self.line = line if isinstance(line, StatusLine) else StatusLine(line)
        self.every = every
        self.clock = clock
        self._drawn: float | None = None

    def __call__(self, state: dict[str, Any]) -> None:
        now = self.clock()
        done = state.get("stage") == "done" and state.get("jobs_done") == state.get("jobs_total")
        if not done and self._drawn is not None and now - self._drawn < self.every:
            return
        self._drawn = now
        self.line.show(self.text(state))

    def text(self, state: dict[str, Any]) -> str:
        total, resolved = state.get("conversations_total") or 0, state.get("conversations_resolved") or 0
        jobs_total, jobs_done = state.get("jobs_total") or 0, state.get("jobs_done") or 0
        fraction = (jobs_done + (resolved / total if total else 0)) / jobs_total if jobs_total else 1.0
        filled = int(min(1.0, fraction) * self.WIDTH)
        eta = state.get("eta_seconds")
        return (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] export jobs {jobs_done}/{jobs_total}"
            f" · items {state.get('items_done') or 0:,} · conversations {resolved:,}/{total:,}"
            + (f" · ~{age(eta)} left" if eta else "")
        )

    def close(self) -> None:
        self.line.release()
