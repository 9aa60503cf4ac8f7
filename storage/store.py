"""``Store``: the Python surface Applied uses to read context and queue actions.

Reads open the DuckDB file for one batch and close it. The outbox lives in its own database
(``gladly_outbox.sqlite``, SQLite in WAL mode): queueing never takes the DuckDB store's lock, and
what an enqueue validates (the conversation, the reply target) is read from the read snapshot when
one is configured. Methods mirror the CLI (``context``, ``enqueue``, ``outbox show --dedupe-key``)
and raise the same errors: :class:`~gladly_sync.errors.NotFound` (unknown conversation),
:class:`~gladly_sync.errors.EnqueueRejected` (validation, a dedupe key reused for another action),
:class:`~gladly_sync.errors.DatabaseLocked` (lock held past ``lock_wait_seconds``). No API token is
needed: nothing here talks to Gladly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gladly_sync.storage import read
from gladly_sync.storage.database import Database
from gladly_sync.storage.outbox.bridge import outbox_for_store
from gladly_sync.storage.outbox.intake import Outbox
from gladly_sync.storage.outbox.queue import open_actions, outbox_by_key
from gladly_sync.storage.outbox.validation import ConversationSource

if TYPE_CHECKING:
    from gladly_sync.storage.outbox.queue import EnqueueResult
    from gladly_sync.storage.postgres import PostgresDatabase


class Store:
    """The local store at ``db_path``; ``escalation_inbox`` is where escalations go by default.

    ``outbox_path`` defaults to ``gladly_outbox.sqlite`` beside the store; with ``snapshot_path``
    (the read snapshot) enqueue validates against the snapshot instead of the store.
    """

    def __init__(
        self,
        db_path: Path | str | None = None,
        escalation_inbox: str | None = None,
        lock_wait_seconds: float = 30,
        *,
        outbox_path: Path | str | None = None,
        snapshot_path: Path | str | None = None,
        url: str | None = None,
        schema: str | None = None,
    ):
        """The DuckDB store at ``db_path``, or (``url``) the PostgreSQL store in ``schema``."""
        if url:
            from gladly_sync.storage.postgres import PostgresDatabase

            self.db: Database | PostgresDatabase = PostgresDatabase(
                url, schema=schema, lock_wait_seconds=lock_wait_seconds
            )
        elif db_path is not None:
            self.db = Database(db_path, lock_wait_seconds=lock_wait_seconds)
        else:
            raise TypeError("Store needs db_path (DuckDB) or url (PostgreSQL)")
        self.escalation_inbox = escalation_inbox
        self.outbox = Outbox(
            outbox_for_store(self.db, outbox_path, wait_for_store=False),
            ConversationSource(self.db, snapshot_path),
            escalation_inbox=escalation_inbox,
        )

    @classmethod
    def from_config(cls, config_path: Path | str | None = None) -> Store:
        """A store configured by ``config.yaml`` (``None``: ``$GLADLY_SYNC_CONFIG`` or ./config.yaml).

        The whole file is validated, but no API token is needed: the store never calls Gladly.
        """
        from gladly_sync.config import load_settings

        settings = load_settings(config_path, require_token=False)
        return cls(
            settings.storage.path,
            escalation_inbox=settings.inboxes.escalation,
            lock_wait_seconds=settings.storage.lock_wait_seconds,
            outbox_path=settings.storage.outbox_path,
            snapshot_path=settings.storage.snapshot_path,
            url=settings.storage.url,
            schema=settings.storage.schema,
        )

    def __repr__(self) -> str:
        return f"Store({self.db!r})"

    def conversation_context(self, conv_id: str) -> dict[str, Any]:
        """The conversation, its customer, ordered items and unsent outbox rows (JSON-ready)."""
        with self.db.connect(read_only=True) as con:
            context = read.conversation_context(con, conv_id)
        with self.outbox.database.connect() as con:
            context["outbox"] = read.jsonable(open_actions(con, conv_id))
        return context

    def enqueue_reply(
        self, conv_id: str, body: str, dedupe_key: str | None = None, html: bool = False
    ) -> EnqueueResult:
        """Queue a reply to the conversation's newest replyable customer message."""
        return self.outbox.enqueue_reply(conv_id, body, html=html, dedupe_key=dedupe_key)

    def enqueue_note(self, conv_id: str, body: str, dedupe_key: str | None = None) -> EnqueueResult:
        """Queue an internal note."""
        return self.outbox.enqueue_note(conv_id, body, dedupe_key=dedupe_key)

    def enqueue_escalation(
        self,
        conv_id: str,
        note: str | None = None,
        inbox_id: str | None = None,
        dedupe_key: str | None = None,
    ) -> EnqueueResult:
        """Queue an escalation (optional note, then the move to ``inbox_id`` or the configured inbox)."""
        return self.outbox.enqueue_escalation(conv_id, note=note, inbox_id=inbox_id, dedupe_key=dedupe_key)

    def outbox_by_key(self, dedupe_key: str) -> dict[str, Any] | None:
        """The outbox row queued with ``dedupe_key``, or None."""
        with self.outbox.database.connect() as con:
            return outbox_by_key(con, dedupe_key)
