"""Builders shared by the outbox tests: a fresh store, conversations and items in plain SQL, a clock.

The store is a DuckDB file with its SQLite outbox beside it, or, while ``POSTGRES`` names a schema
(``conftest.backend``), a PostgreSQL store holding the outbox table.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POSTGRES: Any = None  # the PostgresSchema this test's store lives in; None: DuckDB


def open_db(tmp_path: Path) -> Any:
    """A fresh store (schema created on first connect)."""
    from gladly_sync.storage.database import Database
    from gladly_sync.storage.postgres import PostgresDatabase

    if POSTGRES is not None:
        db: Any = PostgresDatabase(
            POSTGRES.url, schema=POSTGRES.schema, organization="acme", lock_wait_seconds=5
        )
    else:
        db = Database(tmp_path / "gladly.duckdb", lock_wait_seconds=5)
    with db.connect():
        pass
    return db


def open_outbox(tmp_path: Path, db: Any = None) -> Any:
    """The store's outbox database (``gladly_outbox.sqlite`` beside a DuckDB store), schema created."""
    from gladly_sync.storage.outbox.bridge import outbox_for_store

    store = db if db is not None else open_db(tmp_path)
    database = outbox_for_store(store, tmp_path / "gladly_outbox.sqlite")
    with database.connect():
        pass
    return database


def store_arguments(tmp_path: Path) -> str:
    """``Store(...)``'s arguments, as Python source, for this test's store (for child processes)."""
    if POSTGRES is not None:
        return f"url={POSTGRES.url!r}, schema={POSTGRES.schema!r}"
    return f"{str(tmp_path / 'gladly.duckdb')!r}, outbox_path={str(tmp_path / 'gladly_outbox.sqlite')!r}"


class Queue:
    """The outbox as the tests drive it: ``q.enqueue_note(conv, body, now=T)`` goes through the real
    enqueue path (``Outbox``: dedupe, validation against the store, insert); any other queue
    function ``q.X(...)`` runs ``outbox.X(con, ...)`` in its own outbox transaction; ``q.add_item``
    and ``q.add_conversation`` write the store."""

    def __init__(self, db: Any, database: Any):
        from gladly_sync.storage.outbox.intake import Outbox
        from gladly_sync.storage.outbox.validation import ConversationSource

        self.db = db
        self.database = database
        self.box = Outbox(database, ConversationSource(db))

    def enqueue_reply(self, conversation_id: str, body: str, *, now: datetime = T0, **kw: Any) -> Any:
        self.box.clock = lambda: now
        return self.box.enqueue_reply(conversation_id, body, **kw)

    def enqueue_note(self, conversation_id: str, body: str, *, now: datetime = T0, **kw: Any) -> Any:
        self.box.clock = lambda: now
        return self.box.enqueue_note(conversation_id, body, **kw)

    def enqueue_escalation(
        self, conversation_id: str, *, now: datetime = T0, default_inbox: str | None = None, **kw: Any
    ) -> Any:
        self.box.clock = lambda: now
        self.box.escalation_inbox = default_inbox
        return self.box.enqueue_escalation(conversation_id, **kw)

    def add_item(self, *args: Any, **kw: Any) -> None:
        with self.db.transaction() as con:
            add_item(con, *args, **kw)

    def add_conversation(self, *args: Any, **kw: Any) -> None:
        with self.db.transaction() as con:
            add_conversation(con, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        from gladly_sync.storage import outbox

        function = getattr(outbox, name)

        def run(*args: Any, **kw: Any) -> Any:
            with self.database.transaction() as con:
                return function(con, *args, **kw)

        return run


def add_conversation(
    con: Any,
    conversation_id: str,
    *,
    status: str = "OPEN",
    inbox_id: str = "inbox-support",
    customer_id: str = "cust-1",
    deleted_at: datetime | None = None,
) -> None:
    con.execute(
        "INSERT INTO conversations (id, customer_id, inbox_id, status, deleted_at) VALUES (?, ?, ?, ?, ?)",
        [conversation_id, customer_id, inbox_id, status, deleted_at],
    )


def add_item(
    con: Any,
    item_id: str,
    conversation_id: str,
    *,
    content_type: str = "EMAIL",
    initiator_type: str = "CUSTOMER",
    initiator_id: str | None = "cust-1",
    at: datetime = T0,
    text: str = "Where is my order?",
    deleted_at: datetime | None = None,
) -> None:
    content = {"type": content_type, "content": text}
    con.execute(
        """
        INSERT INTO conversation_items (id, conversation_id, customer_id, timestamp, content_type,
            initiator_type, initiator_id, text, raw, redacted, deleted_at)
        VALUES (?, ?, 'cust-1', ?, ?, ?, ?, ?, ?, false, ?)
        """,
        [
            item_id,
            conversation_id,
            at,
            content_type,
            initiator_type,
            initiator_id,
            text,
            json.dumps({"id": item_id, "content": content}),
            deleted_at,
        ],
    )


@dataclass
class FakeClock:
    """Wall clock and monotonic clock that only move when told to (or when something sleeps)."""

    now: datetime = T0
    monotonic_now: float = 1000.0
    slept: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.monotonic_now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)
            self.monotonic_now += seconds


def make_settings(
    tmp_path: Path,
    *,
    enabled: bool = True,
    max_attempts: int = 3,
    escalation: str | None = "inbox-escalation",
    base_url: str | None = None,
    requests_per_second: float = 8,
    email: str = "api-user@acme.com",
    api_token: str = "secret-token",
    unknown_settle: timedelta = timedelta(minutes=10),
    timeout_seconds: float = 5,
) -> Any:
    from gladly_sync.config import (
        GladlySettings,
        InboxSettings,
        LoggingSettings,
        OutboxSettings,
        ScheduleSettings,
        Settings,
        StorageSettings,
    )

    return Settings(
        gladly=GladlySettings(
            organization="acme",
            sandbox=False,
            email=email,
            api_token=api_token,
            base_url=base_url,
            requests_per_second=requests_per_second,
            timeout_seconds=timeout_seconds,
        ),
        inboxes=InboxSettings(ingest=(), escalation=escalation),
        storage=StorageSettings(
            path=tmp_path / "gladly.duckdb",
            snapshot_path=None,
            lock_wait_seconds=5,
            outbox_path=tmp_path / "gladly_outbox.sqlite",
            url=POSTGRES.url if POSTGRES is not None else None,
            schema=POSTGRES.schema if POSTGRES is not None else None,
        ),
        schedule=ScheduleSettings(
            sync_every=timedelta(minutes=5),
            drain_every=timedelta(seconds=30),
            reconcile_every=timedelta(hours=6),
        ),
        outbox=OutboxSettings(enabled=enabled, max_attempts=max_attempts, unknown_settle=unknown_settle),
        logging=LoggingSettings(level="info", format="json"),
        config_path=tmp_path / "config.yaml",
    )


def gladly_time(moment: datetime) -> str:
    """Gladly's timestamp format: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
