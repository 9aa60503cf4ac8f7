"""Is the process that left something behind still there? (A publish's temp file, a ``running`` run.)

``process_alive(pid)`` answers for a process of this host: it exists and is not a zombie. A pid
we cannot inspect (another user's process) counts as alive, and so does an unknown one: a wrong
"dead" would let a second run take over from a live one. ``this_host()`` is the name runs record
beside their pid, so a host never judges another host's pid by its own processes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["process_alive", "this_host"]


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (an unknown pid is alive)."""
    if not pid or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
