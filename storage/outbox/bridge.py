"""Where a store's outbox lives, and rows between the outbox database and DuckDB files: the
one-time import of an older store's outbox, and the copy of the outbox table that each read
snapshot carries for analysts.

A DuckDB store's outbox is a SQLite file beside it (``storage.outbox_path``). A server store
(PostgreSQL) holds the outbox itself: the ``outbox`` table of the store's schema, which every host
using the store shares, so an action queued on one host is drained by whichever replica runs the
drain, and survives the host that queued it. A host that moves to such a store and still has a
SQLite outbox at ``storage.outbox_path`` moves its rows in on first use (``import_local_outbox``):
queued actions are not left behind on one disk.

Import (first start after the upgrade): the store's ``outbox`` rows are inserted into the outbox
database with their ids, states, attempts and ``seq`` (the sequence is moved past them), in one
transaction that also records ``store_outbox_imported``; only after that commit is the table
dropped from the store. A crash in between leaves the rows in both places, and the next start
imports none twice (ids already present are skipped) and then drops the table. Nothing is lost,
and nothing is sent again: ``sent`` rows stay ``sent``, ``unknown`` ones are reconciled first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from gladly_sync.storage.database import Database, remove_files
from gladly_sync.storage.outbox.database import OutboxDatabase, advance_seq, meta_value, next_seq, set_meta
from gladly_sync.storage.outbox.schema import OUTBOX
from sqlalchemy import Connection, Engine, insert, inspect, select
from sqlalchemy.schema import CreateTable

from gladly_sync.errors import DatabaseLocked

__all__ = ["copy_into_snapshot", "import_local_outbox", "import_store_outbox", "outbox_for_store"]

IMPORTED = "store_outbox_imported"


def outbox_for_store(store: Any, path: Any = None, *, wait_for_store: bool = True) -> OutboxDatabase:
    """The outbox database of ``store``: the store's own when it has one (``store.outbox_engine``,
    PostgreSQL; ``path`` is then unused), else the SQLite file ``path`` (default:
    ``gladly_outbox.sqlite`` beside the store), into which an older store's outbox rows are imported
    the first time it is opened.

    ``wait_for_store=False`` (enqueue, Applied's path): when another process holds the store, the
    import is left to the next opener (the drain waits for it) instead of waiting for the lock.
    """
    shared = getattr(store, "outbox_engine", None)
    if shared is not None:
        return OutboxDatabase(
            engine_factory=shared,
            where=f"the outbox table of {store.where}",
            lock_wait_seconds=store.lock_wait_seconds,
            on_first_open=lambda database, engine: _open_server_outbox(store, engine, path),
        )
    if path is None:
        path = (store.path.parent if store.path else Path("data")) / "gladly_outbox.sqlite"
    return OutboxDatabase(
        path,
        lock_wait_seconds=store.lock_wait_seconds,
        on_first_open=lambda database, engine: import_store_outbox(engine, store, wait=wait_for_store),
    )


def _open_server_outbox(store: Any, engine: Engine, local: Path | str | None) -> None:
    _describe_outbox(store, engine)
    if local is not None:
        import_local_outbox(engine, Path(local))


def import_local_outbox(engine: Engine, path: Path) -> int:
    """Move the rows of a SQLite outbox at ``path`` (left by this host's embedded setup) into the
    server store's outbox, then delete the file; the number of rows moved.

    Every row moves with its id, state and attempts (a ``sent`` row stays sent, an ``unknown`` one
    is reconciled before any resend), taking new queue positions after the server's rows, in their
    old order; an id already there is not moved twice (a crash between the commit and the delete).
    The outbox table is locked for the move, so two processes of one host never both move a row.
    """
    if not path.exists():
        return 0
    local = OutboxDatabase(path)
    try:
        with local.connect() as con:
            rows = [dict(row._mapping) for row in con.execute(select(OUTBOX).order_by(OUTBOX.c.seq))]
    finally:
        local.dispose()
    with engine.begin() as con:
        con.exec_driver_sql("LOCK TABLE outbox IN EXCLUSIVE MODE")
        for row in rows:
            row["seq"] = None  # new positions, after the server's rows
        moved = _insert_missing(con, rows)
    remove_files(*(path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")))
    return moved


def _describe_outbox(store: Any, engine: Engine) -> None:
    """The analysts' COMMENTs (``storage/tables.py``) on a server store's outbox table, which is
    created after the store's own migrations: applied once, when the table has none yet."""
    from gladly_sync.storage.schema import describe

    if inspect(engine).get_table_comment("outbox").get("text"):
        return
    with store.transaction() as con:
        describe(con)


def import_store_outbox(engine: Engine, store: Database, *, wait: bool = True) -> int | None:
    """Move the store's ``outbox`` table (the first release's layout) into the outbox database;
    the number of rows moved, or None when ``wait`` is false and the store is held elsewhere."""
    with engine.connect() as con:
        if meta_value(con.execution_options(outbox_read_only=True), IMPORTED) is not None:
            return 0
    if store.path is None or not store.path.exists():  # no store yet, or PostgreSQL (never had one)
        with engine.begin() as con:
            if meta_value(con, IMPORTED) is None:
                set_meta(con, IMPORTED, f"{datetime.now(UTC).isoformat()}: no store yet")
        return 0
    if not wait:
        try:
            return import_store_outbox(engine, Database(store.path, lock_wait_seconds=0))
        except DatabaseLocked:
            return None
    with store.connect() as duck:
        rows = _store_rows(duck)
        with engine.begin() as con:
            if meta_value(con, IMPORTED) is not None:
                return 0
            imported = _insert_missing(con, rows)
            set_meta(con, IMPORTED, f"{datetime.now(UTC).isoformat()}: {imported} rows")
        duck.execute("DROP TABLE IF EXISTS outbox")
    return imported


def _store_rows(duck: Any) -> list[dict[str, Any]]:
    exists = duck.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'outbox'"
    ).fetchone()
    if not exists or not exists[0]:
        return []
    result = duck.execute("SELECT * FROM outbox ORDER BY seq NULLS LAST, created_at, id")
    names = [d[0] for d in result.description]
    known = set(OUTBOX.c.keys())
    return [{k: v for k, v in zip(names, values, strict=True) if k in known} for values in result.fetchall()]


def _insert_missing(con: Connection, rows: list[dict[str, Any]]) -> int:
    present = set(con.execute(select(OUTBOX.c.id)).scalars())
    keys = set(con.execute(select(OUTBOX.c.dedupe_key).where(OUTBOX.c.dedupe_key.is_not(None))).scalars())
    missing = [row for row in rows if row["id"] not in present]
    for row in missing:
        if row.get("dedupe_key") in keys:  # queued again before the import ran: keep both actions
            row["dedupe_key"] = None
    top = max((row.get("seq") or 0 for row in rows), default=0)
    for row in missing:
        if not row.get("seq"):  # a row without a position goes last, in order
            row["seq"] = next_seq(con) if con.dialect.supports_sequences else top + 1
            top = max(top, row["seq"])
    if missing:
        con.execute(insert(OUTBOX), missing)
    advance_seq(con, max((row["seq"] for row in missing), default=top))
    return len(missing)


# --------------------------------------------------------------------------- snapshot copy

_ARROW_TYPES = {
    "body_is_html": pa.bool_(),
    "attempts": pa.int32(),
    "seq": pa.int64(),
    **{
        name: pa.timestamp("us", tz="UTC")
        for name in ("last_attempt_at", "next_attempt_at", "created_at", "sent_at")
    },
}


def copy_into_snapshot(duck: Any, database: OutboxDatabase) -> int:
    """Replace the ``outbox`` table of a DuckDB file (a snapshot being published) with the outbox
    database's rows; returns how many."""
    from duckdb_engine import Dialect
    from gladly_sync.storage.schema import describe

    with database.connect() as con:
        rows = [dict(row._mapping) for row in con.execute(select(OUTBOX).order_by(OUTBOX.c.seq))]
    names = list(OUTBOX.c.keys())
    schema = pa.schema([(name, _ARROW_TYPES.get(name, pa.string())) for name in names])
    ddl = str(CreateTable(OUTBOX).compile(dialect=Dialect())).strip()
    duck.execute("DROP TABLE IF EXISTS outbox")
    duck.execute(ddl)
    duck.register("outbox_rows", pa.Table.from_pylist(rows, schema=schema))
    try:
        duck.execute(f"INSERT INTO outbox ({', '.join(names)}) SELECT {', '.join(names)} FROM outbox_rows")
    finally:
        duck.unregister("outbox_rows")
    describe(duck)  # the analysts' COMMENTs (storage/tables.py) on the copy too
    return len(rows)
