"""What the privacy tests share: a umask for a block, and the id of a process that has exited."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """This process's umask (inherited by the processes it starts) for the block."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
