"""A stop request shared by every job of one process: SIGTERM/SIGINT set it, the work checks it.

    ctx.shutdown.check()          # between steps: raise Interrupted once a stop was requested
    ctx.shutdown.sleep(seconds)   # a wait that ends (raising Interrupted) as soon as one is
    with ctx.shutdown.on_signals(log):   # SIGTERM/SIGINT request the stop (the CLI and the daemon)
        ...

Checks sit between steps that leave the store consistent (before each request to Gladly, between
write batches, between export parts and jobs), so a stopped run keeps what it wrote and the next
run carries on from there. A step that cannot be interrupted (one request waiting on a slow Gladly)
is bounded by ``force_after``: that many seconds after the request the process exits on its own
(``os._exit``), its run left ``running`` in ``sync_runs``, which ``status`` shows as
``interrupted`` once the process is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gladly_sync.errors import Interrupted

__all__ = ["STOP_SIGNALS", "Shutdown"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """One process's stop request. ``force_after`` (seconds) bounds how long the stop may take."""

    def __init__(self, *, force_after: float | None = None, forced_exit_code: int | None = None):
        self.force_after = force_after
        self.forced_exit_code = forced_exit_code  # None: ``exit_code`` (the daemon exits 0)
        self.signal: signal.Signals | None = None
        self._event = threading.Event()
        self._timer: threading.Timer | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (143 for SIGTERM), as a shell reports a process it stopped."""
        return 128 + int(self.signal or signal.SIGTERM)

    def request(self, signum: int | None = None) -> None:
        """Ask every job to stop at its next check; the first request arms ``force_after``."""
        if signum is not None and self.signal is None:
            self.signal = signal.Signals(signum)
        if self._event.is_set():
            return
        self._event.set()
        if self.force_after is not None:
            self._timer = threading.Timer(self.force_after, self._force)
            self._timer.daemon = True
            self._timer.start()

    def check(self) -> None:
        if self._event.is_set():
            raise Interrupted(self._reason(), exit_code=self.exit_code)

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; ``True`` when a stop was requested meanwhile."""
        return self._event.wait(seconds)

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` that raises ``Interrupted`` as soon as a stop is requested."""
        if seconds > 0 and self._event.wait(seconds):
            self.check()
        self.check()

    def disarm(self) -> None:
        """The process finished its stop in time: cancel the forced exit."""
        if self._timer is not None:
            self._timer.cancel()

    @contextmanager
    def on_signals(self, log: Any) -> Iterator[Shutdown]:
        """SIGTERM and SIGINT request the stop while the block runs (main thread only)."""

        def handle(signum: int, frame: object) -> None:
            name = signal.Signals(signum).name
            if self._event.is_set():
                log.warning("stop_already_requested", signal=name)
            else:
                log.info("stop_requested", signal=name, force_after_seconds=self.force_after)
            self.request(signum)

        previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.disarm()

    def _reason(self) -> str:
        by = f"by {self.signal.name}" if self.signal is not None else "on request"
        return f"stopped {by}; the next run carries on from where this one stopped"

    def _force(self) -> None:
        print(
            f"gladly-sync: still stopping {self.force_after:g}s after {self._reason_signal()}; exiting now",
            file=sys.stderr,
            flush=True,
        )
        os._exit(self.exit_code if self.forced_exit_code is None else self.forced_exit_code)

    def _reason_signal(self) -> str:
        return self.signal.name if self.signal is not None else "the stop request"
