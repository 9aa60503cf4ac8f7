"""``Outbox``: queue replies, notes and escalations, the one path the CLI and ``Store`` share.

An enqueue is three short steps, none of which takes the DuckDB store's lock when a read snapshot
is configured:

1. a dedupe key already used is looked up in the outbox database (the same action again returns
   its row at once; a different action is refused);
2. the action is validated against the conversations (``validation``: snapshot, else the store
   read-only);
3. it is inserted in one write transaction of the outbox database (which checks the key again).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gladly_sync.storage.outbox import validation
from gladly_sync.storage.outbox.database import OutboxDatabase
from gladly_sync.storage.outbox.queue import EnqueueResult, NewAction, check_dedupe, insert_action
from gladly_sync.storage.outbox.validation import ConversationSource

__all__ = ["Outbox"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Outbox:
    """Enqueue into ``database``, validating against ``conversations``."""

    def __init__(
        self,
        database: OutboxDatabase,
        conversations: ConversationSource,
        *,
        escalation_inbox: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ):
        self.database = database
        self.conversations = conversations
        self.escalation_inbox = escalation_inbox
        self.clock = clock

    def enqueue_reply(
        self, conversation_id: str, body: str | None, *, html: bool = False, dedupe_key: str | None = None
    ) -> EnqueueResult:
        """Queue a reply to the conversation's newest replyable customer message."""
        return self._enqueue(
            "reply",
            conversation_id,
            body,
            lambda con: validation.reply_action(con, conversation_id, body, html=html),
            dedupe_key,
        )

    def enqueue_note(
        self, conversation_id: str, body: str | None, *, dedupe_key: str | None = None
    ) -> EnqueueResult:
        """Queue an internal note."""
        return self._enqueue(
            "note",
            conversation_id,
            body,
            lambda con: validation.note_action(con, conversation_id, body),
            dedupe_key,
        )

    def enqueue_escalation(
        self,
        conversation_id: str,
        *,
        note: str | None = None,
        inbox_id: str | None = None,
        dedupe_key: str | None = None,
    ) -> EnqueueResult:
        """Queue an escalation (optional note, then the move to ``inbox_id`` or the configured inbox)."""
        return self._enqueue(
            "escalation",
            conversation_id,
            note,
            lambda con: validation.escalation_action(
                con, conversation_id, note=note, inbox_id=inbox_id, default_inbox=self.escalation_inbox
            ),
            dedupe_key,
        )

    def _enqueue(
        self,
        kind: str,
        conversation_id: str,
        body: str | None,
        validate: Callable[[Any], NewAction],
        dedupe_key: str | None,
    ) -> EnqueueResult:
        if dedupe_key is not None:
            with self.database.connect() as con:
                existing = check_dedupe(con, dedupe_key, kind, conversation_id, body)
            if existing is not None:
                return EnqueueResult(existing, True)
        with self.conversations.connect() as con:
            action = validate(con)
        with self.database.transaction() as con:
            return insert_action(con, action, dedupe_key=dedupe_key, now=self.clock())
