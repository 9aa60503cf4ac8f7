"""The PostgreSQL store (``storage.url``): the same surface as ``storage/database.py``'s ``Database``.

    db = PostgresDatabase("postgresql://gladly@db/gladly", schema="gladly", organization="acme")
    with db.transaction() as con:          # a PgConnection: DuckDB-style execute(sql, [params])
        upserts.save_cursor(con, "events", "2026-01-01T00:00:00Z", now)
    with db.job_lock("sync"):              # an advisory lock keyed by organization and job
        ...

Storage functions speak DuckDB's SQL with ``?`` placeholders. :class:`PgConnection` runs them on
psycopg: it translates the few dialect differences they use (``storage/postgres_sql.py``),
``register()``s Arrow batches as temp tables filled by COPY, and answers a DML statement's
``fetchone()`` with its row count as DuckDB does. The functions whose SQL cannot be translated have
PostgreSQL versions in ``storage/postgres_items.py``, chosen through ``storage/dialect.py``.

Connections are opened per batch like DuckDB's (a nested ``connect()`` in the same thread reuses the
open one); ``lock_timeout`` is ``storage.lock_wait_seconds``, and a lock not granted in that time is
:class:`~gladly_sync.errors.DatabaseLocked` (exit 4). There is no snapshot file: analysts and Applied
connect to PostgreSQL itself.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
import pyarrow as pa
from gladly_sync.storage import postgres_export, postgres_items, postgres_sql
from gladly_sync.storage.liveness import this_host
from gladly_sync.storage.transaction import open_transaction
from psycopg import errors as pg_errors
from psycopg.types.string import TextLoader

from gladly_sync.errors import DatabaseLocked, JobAlreadyRunning, StorageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

_OPEN = threading.local()
APPLICATION = "gladly-sync"
ERASABLE_TABLES = ("customers", "conversations", "conversation_items", "events")  # hold personal data
_APPLICATION_PID = re.compile(r"^gladly-sync:[^:]*:(\d+)")


def safe_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and reprs)."""
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@", 1) if parts.password else url


class PgConnection:
    """A psycopg connection that storage functions can use as they use a DuckDB connection."""

    implementations = {
        **postgres_sql.IMPLEMENTATIONS,
        **postgres_items.IMPLEMENTATIONS,
        **postgres_export.IMPLEMENTATIONS,
    }

    def __init__(self, raw: psycopg.Connection, where: str):
        self.raw = raw
        self.where = where
        self._cursor = raw.cursor()
        self._count: int | None = None

    # -- DuckDB's execute / fetch surface

    def execute(self, sql: str, parameters: Any = None) -> PgConnection:
        for text, params in postgres_sql.translate(sql, parameters):
            self._run(text, params)
        return self

    def _run(self, text: str, params: Any) -> None:
        started = time.monotonic()
        try:
            self._cursor.execute(text, params)
        except pg_errors.LockNotAvailable as exc:
            raise DatabaseLocked(self.where, None, time.monotonic() - started, "lock_timeout") from exc
        self._count = self._cursor.rowcount if self._cursor.description is None else None

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> tuple | None:
        if self._count is not None:
            count, self._count = self._count, None
            return (count,)
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        if self._count is not None:
            count, self._count = self._count, None
            return [(count,)]
        return self._cursor.fetchall()

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        if self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._cursor.execute("ROLLBACK")

    # -- DuckDB's register(): an Arrow batch visible to SQL by name

    def register(self, name: str, table: pa.Table) -> None:
        """``table`` as a temp table ``name`` (COPYed in), typed like the store's columns."""
        columns = [(field.name, postgres_sql.column_type(field)) for field in table.schema]
        self._cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        self._cursor.execute(f"CREATE TEMP TABLE {name} ({', '.join(f'{c} {t}' for c, t in columns)})")
        copy_rows(self._cursor, name, [c for c, _ in columns], table)

    def unregister(self, name: str) -> None:
        if self.raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            return  # the transaction's rollback drops it; any statement now would fail
        self._cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")

    def close(self) -> None:
        self.raw.close()


def copy_rows(cursor: psycopg.Cursor, table: str, columns: list[str], rows: pa.Table) -> None:
    """COPY an Arrow table's rows into ``table``."""
    names = ", ".join(columns)
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for batch in rows.to_batches(max_chunksize=10_000):
            for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                copy.write_row(row)


class PostgresDatabase:
    """The store in PostgreSQL: ``connect()`` for a batch, ``transaction()`` for an atomic write."""

    path = None  # no file: nothing to lock beside, nothing to snapshot
    on_publish = None  # no snapshot to fill

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        organization: str = "",
        lock_wait_seconds: float = 30.0,
    ):
        self.url = url
        self.schema = schema
        self.organization = organization
        self.lock_wait_seconds = lock_wait_seconds
        self._ready = False
        self._ready_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresDatabase({safe_url(self.url)!r}, schema={self.schema!r})"

    @property
    def where(self) -> str:
        return safe_url(self.url) + (f" (schema {self.schema})" if self.schema else "")

    def _session_options(self) -> str:
        """Every session's settings, sent with the connection (libpq ``options``; the schema is a
        plain name, checked by the configuration, so nothing needs escaping)."""
        settings = ["TimeZone=UTC", f"lock_timeout={int(self.lock_wait_seconds * 1000)}ms"]
        if self.schema:
            settings.append(f'search_path="{self.schema}"')  # quoted: the name keeps its case
        return " ".join(f"-c {setting}" for setting in settings)

    def _connect_raw(self, *, autocommit: bool) -> psycopg.Connection:
        """A psycopg connection with the store's session settings; a clear error when there is none."""
        try:
            return psycopg.connect(
                self.url,
                autocommit=autocommit,
                application_name=f"{APPLICATION}:{this_host()}:{os.getpid()}",
                options=self._session_options(),
            )
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise StorageError(
                f"cannot connect to PostgreSQL at {safe_url(self.url)}: {reason}; "
                "check storage.url and that the server is running"
            ) from None

    def _open(self, *, read_only: bool = False) -> PgConnection:
        raw = self._connect_raw(autocommit=True)
        raw.adapters.register_loader("json", TextLoader)  # raw stays the text Gladly sent
        if read_only:
            try:
                raw.execute("SET default_transaction_read_only = on")
            except BaseException:
                raw.close()
                raise
        return PgConnection(raw, self.where)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[PgConnection]:
        """A connection for one batch, closed on exit. The first one creates or migrates the store."""
        held = getattr(_OPEN, "connections", None)
        if held is None:
            held = _OPEN.connections = {}
        key = (self.url, self.schema)
        if key in held:
            yield held[key]
            return
        self._prepare(read_only)
        con = self._open(read_only=read_only)
        held[key] = con
        try:
            yield con
        finally:
            del held[key]
            con.close()

    def _prepare(self, read_only: bool) -> None:
        with self._ready_guard:
            if self._ready:
                return
            con = self._open()
            try:
                if read_only:
                    postgres_sql.require_store(con)
                else:
                    postgres_sql.migrate_store(con, self.schema)
            finally:
                con.close()
            self._ready = True

    def transaction(self) -> AbstractContextManager[PgConnection]:
        """``connect()`` + BEGIN; COMMIT on success, ROLLBACK on any exception."""
        return open_transaction(self.connect)

    def rebuild(self, finish: Callable[[PgConnection], None] | None = None) -> None:
        """PostgreSQL's counterpart of the DuckDB file rewrite after an erasure: ``finish`` (clearing
        the note that asked for it), then ``VACUUM FULL`` of the tables that held the erased values,
        which writes them anew without dead row versions. The server's own WAL and backups are the
        database administrator's to manage (README, PostgreSQL)."""
        with self.connect() as con:
            if finish is not None:
                finish(con)
            for table in ERASABLE_TABLES:
                con.raw.execute(f"VACUUM FULL {table}")

    # A running run's progress, for `status` on every host: the run_progress table, written on a
    # connection of its own (never inside the run's open transaction).

    def save_progress(self, job: str, run_id: str, state: dict[str, Any]) -> None:
        self._progress(
            "INSERT INTO run_progress (job, run_id, state, updated_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (job) DO UPDATE SET run_id = excluded.run_id, state = excluded.state, "
            "updated_at = excluded.updated_at",
            [job, run_id, json.dumps(state, default=str)],
        )

    def load_progress(self, job: str, run_id: str) -> dict[str, Any] | None:
        row = self._progress("SELECT state FROM run_progress WHERE job = %s AND run_id = %s", [job, run_id])
        return json.loads(row[0]) if row else None

    def clear_progress(self, job: str, run_id: str) -> None:
        self._progress("DELETE FROM run_progress WHERE job = %s AND run_id = %s", [job, run_id])

    def _progress(self, sql: str, params: list[Any]) -> tuple | None:
        self._prepare(read_only=False)
        con = self._open()
        try:
            cursor = con.raw.execute(sql, params)
            return cursor.fetchone() if cursor.description else None
        except psycopg.Error as exc:
            raise StorageError(f"the run's progress could not be kept in {self.where}: {exc}") from exc
        finally:
            con.close()

    def publish_snapshot(self, snapshot_path: Any = None) -> None:
        """Nothing to publish: readers connect to PostgreSQL, which isolates them from writers."""
        return None

    def engine(self, *, pooled: bool = False) -> Engine:
        """A SQLAlchemy engine on the store (psycopg, the store's session settings and schema).
        ``pooled`` keeps a few connections open for a long-lived user such as the outbox."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        pool: dict[str, Any] = (
            {"pool_size": 2, "max_overflow": 6, "pool_pre_ping": True} if pooled else {"poolclass": NullPool}
        )
        return create_engine(
            "postgresql+psycopg://", creator=lambda: self._connect_raw(autocommit=False), **pool
        )

    def outbox_engine(self) -> Engine:
        """The engine of the outbox, a table of this store shared by every host that uses it: the
        store is created or migrated first, so the outbox lands in its schema."""
        with self.connect():
            pass
        return self.engine(pooled=True)

    def _job_key(self, job: str) -> str:
        return f"gladly-sync:{self.organization}:{job}"

    def job_lock_held_by(self, job: str, host: str, pid: int | None) -> bool:
        """Whether process ``pid`` of ``host`` holds ``job``'s advisory lock now: how one host tells
        whether another host's ``running`` run is still alive (a dead holder's session, and its
        lock, end with it)."""
        session = f"{APPLICATION}:{host}:{pid}".encode()[:63].decode(errors="ignore")  # NAMEDATALEN
        con = self._open()
        try:
            row = con.raw.execute(
                _HOLDERS + " AND a.application_name = %s", [self._job_key(job), session]
            ).fetchone()
        finally:
            con.close()
        return row is not None

    @contextmanager
    def job_lock(self, job: str) -> Iterator[str]:
        """Hold ``job``'s advisory lock (keyed by organization and job) for the block, or raise
        :class:`JobAlreadyRunning` at once. The lock belongs to a session of its own: a holder that
        dies ends the session, and PostgreSQL releases the lock with it."""
        key = self._job_key(job)
        con = self._open()
        try:
            got = con.raw.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key]).fetchone()
            if not got or not got[0]:
                raise JobAlreadyRunning(job, _advisory_holder(con, key))
            try:
                yield key
            finally:
                con.raw.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
        finally:
            con.close()


_HOLDERS = """
    SELECT a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)
"""


def _advisory_holder(con: PgConnection, key: str) -> int | None:
    """The PID (on its host) of the gladly-sync process holding the advisory lock ``key``."""
    row = con.raw.execute(_HOLDERS + " LIMIT 1", [key]).fetchone()
    match = _APPLICATION_PID.match(row[0]) if row and row[0] else None
    return int(match.group(1)) if match else None
