"""The outbox's own transactional database: ``enqueue`` never waits for the DuckDB store's lock.

Embedded it is a SQLite file in WAL mode (``storage.outbox_path``), opened through SQLAlchemy with
the stdlib driver: readers never block the writer, and a write holds the file for a millisecond or
two. On a PostgreSQL store (``storage.url``) the outbox is a table of the store's own schema, shared
by every host: the store hands over an engine (``PostgresDatabase.outbox_engine``) and the same code
runs on it. What differs per backend lives in this module only:

- SQLite: ``journal_mode=WAL``, ``synchronous=FULL`` (a row committed ``sending`` is on disk before
  its request leaves), ``secure_delete``, ``busy_timeout`` = the lock wait, and every write transaction is
  ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing on an upgrade;
- PostgreSQL: the store's ``lock_timeout``; a lock not granted in that time is ``DatabaseLocked``;
- :func:`next_seq`: a sequence where the backend has them, else SQLite's AUTOINCREMENT.

The engine keeps a small connection pool (an idle SQLite or Postgres connection holds no lock).
The file and its WAL are private to the owner (0600).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gladly_sync.storage.outbox.schema import METADATA, OUTBOX_META, OUTBOX_SEQ, SEQUENCE
from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, select
from sqlalchemy.exc import DBAPIError, OperationalError

from gladly_sync.errors import DatabaseLocked

__all__ = ["OutboxDatabase", "advance_seq", "meta_value", "next_seq", "set_meta"]

DEFAULT_NAME = "gladly_outbox.sqlite"


class OutboxDatabase:
    """The outbox database in ``path`` (a SQLite file), or on the engine ``engine_factory`` makes (a
    server store's, such as PostgreSQL's).

    ``connect()`` gives a connection for reads, ``transaction()`` one whose block is a single
    write transaction (committed on success, rolled back on any exception). The schema is created
    on first use; a ``Store`` migration hook (``on_first_open``) may then import older rows.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        engine_factory: Callable[[], Engine] | None = None,
        where: str = "the outbox database",
        lock_wait_seconds: float = 30.0,
        on_first_open: Any = None,
    ):
        if (path is None) == (engine_factory is None):
            raise ValueError("OutboxDatabase takes a SQLite path or an engine factory (one of them)")
        self.path = Path(path) if path is not None else None
        self.where = str(self.path) if self.path is not None else where
        self._engine_factory = engine_factory
        self.lock_wait_seconds = lock_wait_seconds
        self._on_first_open = on_first_open
        self._engine: Engine | None = None
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"OutboxDatabase({self.where!r})"

    @property
    def engine(self) -> Engine:
        with self._guard:
            if self._engine is None:
                self._engine = self._create()
                # pooled server connections are closed, not left to the garbage collector
                weakref.finalize(self, self._engine.dispose)
            return self._engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (each statement sees committed data)."""
        with self._locked(), self.engine.connect() as con:
            yield con.execution_options(outbox_read_only=True)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any exception."""
        with self._locked(), self.engine.connect() as con, con.begin():
            yield con

    def release_erased_bytes(self) -> None:
        """After an erasure: ``secure_delete`` zeroed what the blanking freed in the file's pages, but
        the WAL still holds the frames written before. Copy them into the file and truncate the WAL
        to nothing. On a server database (PostgreSQL) the blanked rows' old versions are dead tuples
        in the table's pages: ``VACUUM FULL outbox`` writes the table anew without them."""
        if self.path is None:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as con:
                con.exec_driver_sql("VACUUM FULL outbox")
            return
        raw = self.engine.raw_connection()  # autocommit: a checkpoint cannot run inside a transaction
        try:
            for _ in range(100):
                cursor = raw.cursor()
                busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                cursor.close()
                if not busy:
                    return
                time.sleep(0.05)  # a reader's snapshot holds the WAL for the length of a statement
        finally:
            raw.close()
        raise DatabaseLocked(str(self.path), None, 5.0)

    def dispose(self) -> None:
        """Close the pooled connections (tests, and before a process forks)."""
        with self._guard:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Map the backend's lock wait running out (SQLite's "database is locked" past the busy
        timeout, PostgreSQL's ``lock_timeout``) to :class:`DatabaseLocked`."""
        try:
            yield
        except DBAPIError as exc:
            if not _lock_wait_ran_out(exc):
                raise
            raise DatabaseLocked(self.where, None, self.lock_wait_seconds) from exc

    def _create(self) -> Engine:
        engine = self._sqlite_engine() if self._engine_factory is None else self._engine_factory()
        try:
            with self._locked(), engine.begin() as con:
                METADATA.create_all(con)
            if self._on_first_open is not None:
                self._on_first_open(self, engine)
        except BaseException:
            engine.dispose()
            raise
        return engine

    def _sqlite_engine(self) -> Engine:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.path.touch(mode=0o600)
        os.chmod(self.path, 0o600)
        engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"timeout": self.lock_wait_seconds, "check_same_thread": False},
            pool_size=4,
            max_overflow=8,
        )
        busy_ms = int(self.lock_wait_seconds * 1000)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_con: Any, _record: Any) -> None:
            dbapi_con.isolation_level = None  # we issue BEGIN ourselves (below)
            cursor = dbapi_con.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA secure_delete=ON")  # an overwritten (erased) body leaves no bytes behind
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(con: Connection) -> None:
            # readers take a snapshot; writers take the write lock up front
            read_only = con.get_execution_options().get("outbox_read_only", False)
            con.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine


def _lock_wait_ran_out(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == "55P03":  # PostgreSQL: lock_not_available
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def next_seq(con: Connection) -> int:
    """The next queue position, from a sequence (never ``max(seq) + 1``)."""
    if con.dialect.supports_sequences:
        return int(con.execute(SEQUENCE.next_value()).scalar_one())
    drawn = con.execute(insert(OUTBOX_SEQ).values()).inserted_primary_key
    assert drawn is not None
    con.execute(delete(OUTBOX_SEQ).where(OUTBOX_SEQ.c.seq < drawn[0]))
    return int(drawn[0])


def advance_seq(con: Connection, at_least: int) -> None:
    """Make the sequence draw numbers above ``at_least`` (after rows were imported with their seq)."""
    if con.dialect.supports_sequences:
        con.exec_driver_sql(
            "SELECT setval(%(name)s, greatest(%(value)s, (SELECT last_value FROM outbox_seq_seq)))",
            {"name": SEQUENCE.name, "value": at_least},
        )
        return
    if at_least > 0 and next_seq(con) <= at_least:
        con.execute(insert(OUTBOX_SEQ).values(seq=at_least))
        con.execute(delete(OUTBOX_SEQ).where(OUTBOX_SEQ.c.seq < at_least))


def meta_value(con: Connection, key: str) -> str | None:
    return con.execute(select(OUTBOX_META.c.value).where(OUTBOX_META.c.key == key)).scalar_one_or_none()


def set_meta(con: Connection, key: str, value: str) -> None:
    con.execute(delete(OUTBOX_META).where(OUTBOX_META.c.key == key))
    con.execute(insert(OUTBOX_META).values(key=key, value=value, updated_at=datetime.now(UTC)))
