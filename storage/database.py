"""Open the DuckDB store for one batch at a time; publish read-only snapshots.

DuckDB's cross-process file lock lasts as long as a connection is open, so every caller opens the
file for a batch and closes it, never across network I/O. Processes of this product first take
their turn on the store (:mod:`storage.handover`: a kernel-queued lock, so a waiting process gets
the file within one write batch); a writer that still finds the file locked (a process outside the
product, such as the DuckDB CLI) retries the ATTACH with jittered sleeps. Either wait ends after
``lock_wait_seconds`` with :class:`~storage.errors.DatabaseLocked` naming the holder's PID.

The store is created with storage version ``v1.2.0`` so that older readers (the DuckDB 1.5 CLI)
can open it; files in DuckDB 2.0's own format are unreadable to them.

Erased values and dead blocks: DuckDB overwrites a row in place, and the blocks that held its old
version stay in the file as free space (neither ``CHECKPOINT`` nor ``VACUUM`` zeroes them), so a
blanked email is still in the file's bytes. :meth:`Database.rebuild` writes the live rows into a
fresh file and swaps it in; the sync calls it after an erasure, and the snapshot, a byte copy of
the store, is clean from then on.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from gladly_sync.storage.handover import Handover, TurnTimeout
from gladly_sync.storage.liveness import process_alive
from gladly_sync.storage.private import make_private, open_private, private_folder
from gladly_sync.storage.progress import ProgressFiles
from gladly_sync.storage.schema import check_version, migrate
from gladly_sync.storage.transaction import open_transaction

from gladly_sync.errors import DatabaseLocked, NotSynced

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

STORAGE_VERSION = "v1.2.0"
ROW_GROUP_SIZE = 10240
CATALOG = "store"

_LOCK_CONFLICT = re.compile(r"Could not set lock|Conflicting lock", re.IGNORECASE)
_LOCK_PID = re.compile(r"\(PID (\d+)\)")


# One process may have a store ATTACHed only once at a time: threads of one process (the daemon's
# jobs, the drain's workers) take turns on a per-file lock, and a thread that already holds the file
# reuses its open connection instead of attaching it twice.
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()
_OPEN = threading.local()


def _file_lock(path: Path) -> threading.RLock:
    key = str(path.resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def lock_holder_pid(message: str) -> int | None:
    """The PID in DuckDB's 'Conflicting lock is held in ... (PID 3586)' message."""
    match = _LOCK_PID.search(message)
    return int(match.group(1)) if match else None


class Database:
    """The store's file: ``connect()`` for a batch, ``transaction()`` for an atomic write.

    ``memory_limit`` caps DuckDB's buffer pool. 200 MB is enough for a 100k-line export part and
    keeps a syncing process around 300 MB RSS; DuckDB spills to ``<path>.tmp`` beyond it.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        lock_wait_seconds: float = 30.0,
        memory_limit: str = "200MB",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_publish: Callable[[duckdb.DuckDBPyConnection], object] | None = None,
    ):
        self.path = Path(path)
        # fills the snapshot copy before it is published (the outbox table for analysts)
        self.on_publish = on_publish
        self.lock_wait_seconds = lock_wait_seconds
        self.memory_limit = memory_limit
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._ready = False
        self._handover = Handover(self.path, clock=clock)

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    @property
    def where(self) -> str:
        """The store, for messages: its file."""
        return str(self.path)

    # A running run's progress, for `status` (beside the file: the store's lock is not taken).

    def save_progress(self, job: str, run_id: str, state: dict[str, Any]) -> None:
        ProgressFiles(self.path).save(job, run_id, state)

    def load_progress(self, job: str, run_id: str) -> dict[str, Any] | None:
        return ProgressFiles(self.path).load(job, run_id)

    def clear_progress(self, job: str, run_id: str) -> None:
        ProgressFiles(self.path).clear(job, run_id)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A raw connection for one batch, closed on exit. The first one migrates the store.

        Within one process, threads take turns on the file; a nested ``connect()`` in the thread
        that already holds it gets the same connection.
        """
        key = str(self.path.resolve())
        held = getattr(_OPEN, "connections", None)
        if held is None:
            held = _OPEN.connections = {}
        if key in held:
            yield held[key]
            return
        with _file_lock(self.path), self._turn(read_only) as waited:
            con = self._open(read_only, waited)
            held[key] = con
            try:
                con.execute("SET TimeZone = 'UTC'")
                if not self._ready:
                    if read_only:
                        check_version(con)
                    else:
                        migrate(con)
                    self._ready = True
                yield con
            finally:
                del held[key]
                con.close()
                if not read_only:
                    make_private(*self._files())

    def transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """``connect()`` + BEGIN; COMMIT on success, ROLLBACK on any exception."""
        return open_transaction(self.connect)

    def publish_snapshot(self, snapshot_path: Path | str) -> Path:
        """CHECKPOINT, copy the file beside ``snapshot_path`` and rename it into place atomically.

        The connection is held during the copy (only) so no writer changes the file meanwhile. Readers that
        still have the old snapshot open keep reading the old file (``os.replace`` swaps the name only).
        The copy is ``0600``; a temp file left by a publish that crashed (its process is gone) is removed.
        """
        snapshot = Path(snapshot_path)
        private_folder(snapshot.parent)
        remove_dead_temp_files(snapshot.parent, f".{snapshot.name}.", ".tmp")
        temp = snapshot.with_name(f".{snapshot.name}.{os.getpid()}.tmp")
        try:
            os.close(open_private(temp, os.O_WRONLY | os.O_TRUNC))
            # only the copy needs the store held (no writer may change it meanwhile); the fsync and
            # the rename work on the private copy, so other writers get the file back first
            with self.connect() as con:
                con.execute("CHECKPOINT")
                shutil.copyfile(self.path, temp)  # into the existing 0600 file: its mode stays
            if self.on_publish is not None:
                copy_db = Database(temp, memory_limit=self.memory_limit)
                try:
                    with copy_db.connect() as copy:
                        self.on_publish(copy)
                        copy.execute("CHECKPOINT")
                finally:
                    remove_files(copy_db._handover.turn_path, copy_db._handover.gate_path)
            _fsync(temp)
            stale_wal = Path(f"{snapshot}.wal")
            if stale_wal.exists():
                stale_wal.unlink()
            os.replace(temp, snapshot)
        finally:
            if temp.exists():
                temp.unlink()
        return snapshot

    def rebuild(self, finish: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> Path:
        """Rewrite the store from its live rows into a fresh file and swap it in.

        After it, no byte of a deleted or overwritten value is left in the store's file (nor in a
        WAL): DuckDB keeps old versions in free blocks of the file, a fresh file has none. Tables,
        views, comments, sequences and constraints are copied (``COPY FROM DATABASE``); ``finish``
        then runs on the new file alone (it is in USE), before the swap, e.g. to clear the note
        that asked for the rebuild. The store is held throughout, so the cost (proportional to the
        store's size; see ``bench``) is a pause for other writers. A failure or a crash leaves the
        old file in place; a rebuild left by a crashed process is removed by the next one.

        Called inside a ``connect()`` block, the connection held is on the old file afterwards:
        end the block without writing.
        """
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.rebuild")
        remove_dead_temp_files(self.path.parent, f".{self.path.name}.", ".rebuild")
        with self.connect() as con:
            con.execute("CHECKPOINT")
            remove_files(temp, Path(f"{temp}.wal"))
            try:
                self._copy_live_rows(con, temp, finish)
                make_private(temp)
                _fsync(temp)
                # while the old file is still held: a process waiting for the store opens the new
                # one (``_attach_current`` notices one that opened the old file just before)
                os.replace(temp, self.path)
                _fsync(self.path.parent)
            finally:
                remove_files(temp, Path(f"{temp}.wal"))
        return self.path

    @staticmethod
    def _copy_live_rows(
        con: duckdb.DuckDBPyConnection,
        target: Path,
        finish: Callable[[duckdb.DuckDBPyConnection], None] | None,
    ) -> None:
        quoted = str(target).replace("'", "''")
        options = f"STORAGE_VERSION '{STORAGE_VERSION}', ROW_GROUP_SIZE {ROW_GROUP_SIZE}"
        con.execute(f"ATTACH '{quoted}' AS rebuilt ({options})")
        try:
            con.execute(f"COPY FROM DATABASE {CATALOG} TO rebuilt")
            if finish is not None:
                con.execute("USE rebuilt")
                try:
                    finish(con)
                finally:
                    con.execute(f"USE {CATALOG}")
        finally:
            con.execute("DETACH rebuilt")

    def engine(self) -> Engine:
        """A SQLAlchemy engine on the file that keeps no connection open (``NullPool``)."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        private_folder(self.path.parent)
        return create_engine(
            f"duckdb:///{self.path}",
            poolclass=NullPool,
            connect_args={"config": self._config()},
        )

    def _config(self) -> dict[str, str | bool]:
        return {
            "memory_limit": self.memory_limit,
            # The main database is in memory (the store is ATTACHed): spill beside the store,
            # not into the working directory.
            "temp_directory": f"{self.path}.tmp",
            "storage_compatibility_version": STORAGE_VERSION,
            "autoinstall_known_extensions": False,
        }

    @contextmanager
    def _turn(self, read_only: bool) -> Iterator[float]:
        """This process's turn on the store (shared for a reader); yields the seconds waited."""
        if read_only:
            if not self.path.exists():
                raise NotSynced(f"no store at {self.path}: run `gladly-sync sync` first")
        else:
            private_folder(self.path.parent)
        try:
            with self._handover.turn(shared=read_only, wait_seconds=self.lock_wait_seconds) as waited:
                yield waited
        except TurnTimeout as exc:
            raise DatabaseLocked(str(self.path), exc.holder_pid, exc.waited_seconds) from None

    def _instance(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB instance; the store is ATTACHed to it (see ``_attach``)."""
        return duckdb.connect(config=self._config())

    def _attach(self, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        """ATTACH the store to ``con`` and USE it.

        ATTACH (rather than ``duckdb.connect(path)``) is what lets us pick the row group size:
        DuckDB writes a bulk append to the file as each row group fills, and smaller groups than
        the default 122,880 rows keep an export part's append out of memory and out of the commit
        (measured on a 100k-line part: ~0.9 s commit + ~100 MB more RSS with the default size).
        """
        options = [f"STORAGE_VERSION '{STORAGE_VERSION}'", f"ROW_GROUP_SIZE {ROW_GROUP_SIZE}"]
        if read_only:
            options.append("READ_ONLY")
        path = str(self.path).replace("'", "''")
        con.execute(f"ATTACH '{path}' AS {CATALOG} ({', '.join(options)})")
        con.execute(f"USE {CATALOG}")

    def _attach_current(self, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        """``_attach``, again when :meth:`rebuild` swapped the file in while it was being opened
        (the connection would hold the old, unlinked file)."""
        while True:
            before = _inode(self.path)
            self._attach(con, read_only)
            if before is None or _inode(self.path) == before:
                return
            con.execute("USE memory")
            con.execute(f"DETACH {CATALOG}")

    def _files(self) -> tuple[Path, Path, Path]:
        """The store, its WAL and DuckDB's spill folder."""
        return self.path, Path(f"{self.path}.wal"), Path(f"{self.path}.tmp")

    def _open(self, read_only: bool, waited: float = 0.0) -> duckdb.DuckDBPyConnection:
        """The store ATTACHed, retrying while a process outside the product holds DuckDB's lock (one
        instance for every attempt); ``waited`` is what the turn already took of the wait."""
        start = self._clock() - waited
        attempt = 0
        con = self._instance()
        try:
            while True:
                try:
                    self._attach_current(con, read_only)
                    if not read_only:
                        make_private(*self._files())
                    return con
                except duckdb.IOException as exc:
                    message = str(exc)
                    if not _LOCK_CONFLICT.search(message):
                        raise
                    waited = self._clock() - start
                    if waited >= self.lock_wait_seconds:
                        raise DatabaseLocked(str(self.path), lock_holder_pid(message), waited) from exc
                    # 20 ms growing to 200 ms, jittered, never past the deadline
                    ceiling = min(0.2, 0.02 * 1.5**attempt)
                    delay = self._rng.uniform(ceiling / 2, ceiling)
                    self._sleep(min(delay, max(self.lock_wait_seconds - waited, 0.0)))
                    attempt += 1
        except BaseException:
            con.close()
            raise

def remove_dead_temp_files(folder: Path, prefix: str, suffix: str) -> list[Path]:
    """Remove ``<prefix><pid><suffix>*`` files in ``folder`` whose process is gone (a crashed publish
    or rebuild); a live process's file is its own business. Returns what was removed."""
    removed = []
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    for path in folder.glob(f"{prefix}*{suffix}*"):
        match = pattern.match(path.name)
        if match and not process_alive(int(match.group(1))):
            remove_files(path)
            removed.append(path)
    return removed


def remove_files(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
