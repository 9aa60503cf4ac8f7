"""One run of a job at a time: an ``flock`` on a lock file beside the DuckDB file.

    with job_lock(settings.storage.path, "sync"):     # <store>.sync.lock, holding our PID
        sync_once(ctx)
    # a second holder gets JobAlreadyRunning: "sync already running (pid 4242); skipped"

Cron invocations and the daemon take the same locks, so a cron ``sync`` never overlaps the daemon's
sync, and two cron ``drain`` runs never both recover "stale" ``sending`` rows. The kernel drops the
lock when its holder exits, even on a crash, so a stale lock file is harmless; the file is left in
place (deleting it would let a third process lock a different inode).

A store with its own job locks (PostgreSQL: advisory locks keyed by organization and job, shared by
every replica on that store) provides ``db.job_lock(job)``; :func:`store_job_lock` picks it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from gladly_sync.storage.private import open_private, private_folder

from gladly_sync.errors import JobAlreadyRunning

__all__ = ["JobAlreadyRunning", "job_lock", "lock_path", "store_job_lock"]


def lock_path(db_path: Path | str, job: str) -> Path:
    """``data/gladly.duckdb`` + ``sync`` → ``data/gladly.duckdb.sync.lock``."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.name}.{job}.lock")


def _read_pid(handle: int) -> int | None:
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextmanager
def job_lock(db_path: Path | str, job: str) -> Iterator[Path]:
    """Hold ``job``'s lock for the block, or raise ``JobAlreadyRunning`` at once (never waits)."""
    path = lock_path(db_path, job)
    private_folder(path.parent)
    handle = open_private(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobAlreadyRunning(job, _read_pid(handle)) from None
        os.ftruncate(handle, 0)
        os.lseek(handle, 0, os.SEEK_SET)
        os.write(handle, f"{os.getpid()}\n".encode("ascii"))
        try:
            yield path
        finally:
            os.ftruncate(handle, 0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def store_job_lock(db: Any, job: str) -> AbstractContextManager[Any]:
    """The store's lock for ``job``: its backend's own (``db.job_lock``), else the file lock beside
    the DuckDB file. Either raises ``JobAlreadyRunning`` at once when another run holds it."""
    own = getattr(db, "job_lock", None)
    return own(job) if own is not None else job_lock(db.path, job)
