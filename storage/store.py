"""``Store``: the Python surface Applied uses to read context and queue actions.

Every method opens the DuckDB file for one batch and closes it, so a daemon writing to the same
file is blocked for milliseconds, never longer. Methods mirror the CLI (``context``, ``enqueue``,
``outbox show --dedupe-key``) and raise the same errors:
:class:`~storage.errors.NotFound` (unknown conversation), :class:`~storage.errors.EnqueueRejected`
(validation), :class:`~storage.errors.DatabaseLocked` (lock held past ``lock_wait_seconds``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from gladly_sync.storage import read
from gladly_sync.storage.database import Database

if TYPE_CHECKING:
    from gladly_sync.storage.outbox import EnqueueResult


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The local store at ``db_path``; ``escalation_inbox`` is where escalations go by default."""

    def __init__(
        self, db_path: Path | str, escalation_inbox: str | None = None, lock_wait_seconds: float = 30
    ):
        self.db = Database(db_path, lock_wait_seconds=lock_wait_seconds)
        self.escalation_inbox = escalation_inbox

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
        )

    def __repr__(self) -> str:
        return f"Store({str(self.db.path)!r})"

    def conversation_context(self, conv_id: str) -> dict[str, Any]:
        """The conversation, its customer, ordered items and unsent outbox rows (JSON-ready)."""
        with self.db.connect() as con:
            return read.conversation_context(con, conv_id)

    def enqueue_reply(
        self, conv_id: str, body: str, dedupe_key: str | None = None, html: bool = False
    ) -> EnqueueResult:
        """Queue a reply to the conversation's newest replyable customer message."""
        from gladly_sync.storage import outbox

        return self._enqueue(
            lambda con: outbox.enqueue_reply(
                con, conv_id, body, html=html, dedupe_key=dedupe_key, now=_now()
            ),
            dedupe_key,
        )

    def enqueue_note(self, conv_id: str, body: str, dedupe_key: str | None = None) -> EnqueueResult:
        """Queue an internal note."""
        from gladly_sync.storage import outbox

        return self._enqueue(
            lambda con: outbox.enqueue_note(con, conv_id, body, dedupe_key=dedupe_key, now=_now()),
            dedupe_key,
        )

    def enqueue_escalation(
        self,
        conv_id: str,
        note: str | None = None,
        inbox_id: str | None = None,
        dedupe_key: str | None = None,
    ) -> EnqueueResult:
        """Queue an escalation (optional note, then the move to ``inbox_id`` or the configured inbox)."""
        from gladly_sync.storage import outbox

        return self._enqueue(
            lambda con: outbox.enqueue_escalation(
                con,
                conv_id,
                note=note,
                inbox_id=inbox_id,
                default_inbox=self.escalation_inbox,
                dedupe_key=dedupe_key,
                now=_now(),
            ),
            dedupe_key,
        )

    def outbox_by_key(self, dedupe_key: str) -> dict[str, Any] | None:
        """The outbox row queued with ``dedupe_key``, or None."""
        from gladly_sync.storage import outbox

        with self.db.connect() as con:
            return outbox.outbox_by_key(con, dedupe_key)

    def _enqueue(self, enqueue: Any, dedupe_key: str | None) -> EnqueueResult:
        try:
            with self.db.transaction() as con:
                return enqueue(con)
        except duckdb.ConstraintException:
            if dedupe_key is None:
                raise
        # Another process queued the same dedupe_key first; queueing again returns its row.
        with self.db.transaction() as con:
            return enqueue(con)
