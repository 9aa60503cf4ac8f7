"""What ``enqueue`` checks before it queues an action, read from the DuckDB side.

The conversation must be known and not deleted; a reply's target is the conversation's newest
replyable customer message (fixed now, in ``reply_to_item_id`` with its ``channel``). These reads
come from the read snapshot when one is configured (never the store's lock), else from the store,
opened read-only for the few milliseconds the two queries take.

Body limits (Gladly documents only "content.body cannot be larger than 2048 characters" for
replies): non-email replies 2048 characters, email replies 100,000, notes (also an escalation's
note) 10,000.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gladly_sync.storage.database import Database
from gladly_sync.storage.outbox.queue import NewAction

from gladly_sync.errors import EnqueueRejected

__all__ = [
    "EMAIL_REPLY_MAX_CHARS",
    "NOTE_MAX_CHARS",
    "REPLYABLE_TYPES",
    "REPLY_MAX_CHARS",
    "ConversationSource",
    "escalation_action",
    "note_action",
    "reply_action",
    "require_body",
]

REPLYABLE_TYPES = ("EMAIL", "CHAT_MESSAGE", "SMS", "WHATSAPP", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT")
REPLY_MAX_CHARS = 2048
EMAIL_REPLY_MAX_CHARS = 100_000
NOTE_MAX_CHARS = 10_000


class ConversationSource:
    """Where enqueue reads conversations: the snapshot when there is one, else the store (read-only).

    The snapshot is kept open between enqueues (a read-only DuckDB connection on a file nobody
    writes: the sync publishes a new file and renames it into place) and reopened when a newer one
    was published, so an enqueue costs a query, not a DuckDB start. The store is never kept open
    (that would hold its lock): it is opened for the one batch.
    """

    def __init__(self, store: Database, snapshot_path: Path | str | None = None):
        self.store = store
        self.snapshot_path = Path(snapshot_path) if snapshot_path else None
        self._lock = threading.Lock()
        self._snapshot: Any = None
        self._opened: tuple[int, int] | None = None  # (inode, mtime_ns) of the open snapshot

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A read-only DuckDB connection for one batch of reads."""
        identity = self._published()
        if identity is None:
            with self.store.connect(read_only=True) as con:
                yield con
            return
        with self._lock:
            if self._opened != identity:
                self._open_snapshot(identity)
            yield self._snapshot

    def close(self) -> None:
        with self._lock:
            if self._snapshot is not None:
                self._snapshot.close()
            self._snapshot, self._opened = None, None

    def _published(self) -> tuple[int, int] | None:
        if self.snapshot_path is None:
            return None
        try:
            stat = self.snapshot_path.stat()
        except FileNotFoundError:
            return None  # not published yet: the store it is
        return stat.st_ino, stat.st_mtime_ns

    def _open_snapshot(self, identity: tuple[int, int]) -> None:
        import duckdb
        from gladly_sync.storage.schema import check_version

        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None
        con = duckdb.connect(str(self.snapshot_path), read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'")
            check_version(con)
        except BaseException:
            con.close()
            raise
        self._snapshot, self._opened = con, identity


def reply_action(con: Any, conversation_id: str, body: str | None, *, html: bool = False) -> NewAction:
    """A reply to the conversation's newest replyable customer message, validated."""
    _require_conversation(con, conversation_id)
    require_body(body, "reply body", "--body")
    assert body is not None
    target = _reply_target(con, conversation_id)
    channel = target["content_type"]
    limit = EMAIL_REPLY_MAX_CHARS if channel == "EMAIL" else REPLY_MAX_CHARS
    if len(body) > limit:
        raise EnqueueRejected(
            f"reply body is {len(body)} characters; a {channel} reply may have at most {limit}; "
            "shorten it or split it into several replies"
        )
    if html and channel != "EMAIL":
        raise EnqueueRejected(
            f"--html applies to email replies only, and conversation {conversation_id}'s reply goes to a "
            f"{channel} message; send the body as plain text"
        )
    return NewAction(
        kind="reply",
        conversation_id=conversation_id,
        body=body,
        body_is_html=html,
        channel=channel,
        reply_to_item_id=target["id"],
    )


def note_action(con: Any, conversation_id: str, body: str | None) -> NewAction:
    """An internal note (plain text or Gladly's rich-content HTML), validated."""
    _require_conversation(con, conversation_id)
    require_body(body, "note body", "--body")
    assert body is not None
    _require_note_length(body, "note")
    return NewAction(kind="note", conversation_id=conversation_id, body=body)


def escalation_action(
    con: Any,
    conversation_id: str,
    *,
    note: str | None = None,
    inbox_id: str | None = None,
    default_inbox: str | None = None,
) -> NewAction:
    """One escalation row: the optional note (kept in ``body``) first, then the move to ``inbox_id``
    (else ``default_inbox``, the configured escalation inbox), kept in ``target_inbox_id``."""
    _require_conversation(con, conversation_id)
    if note is not None:
        require_body(note, "escalation note", "--note (or leave --note out)")
        _require_note_length(note, "escalation note")
    target = (inbox_id or "").strip() or (default_inbox or "").strip()
    if not target:
        raise EnqueueRejected("no escalation inbox: set inboxes.escalation in config.yaml or pass --inbox ID")
    return NewAction(kind="escalation", conversation_id=conversation_id, body=note, target_inbox_id=target)


def require_body(body: str | None, what: str, option: str) -> None:
    if body is None or not body.strip():
        raise EnqueueRejected(f"the {what} is empty; give the text to send with {option}")


def _require_note_length(body: str, what: str) -> None:
    if len(body) > NOTE_MAX_CHARS:
        raise EnqueueRejected(
            f"the {what} is {len(body)} characters; at most {NOTE_MAX_CHARS} are accepted; shorten it"
        )


def _require_conversation(con: Any, conversation_id: str) -> None:
    found = con.execute("SELECT deleted_at FROM conversations WHERE id = ?", [conversation_id]).fetchone()
    if found is None:
        raise EnqueueRejected(
            f"conversation {conversation_id!r} is not in the local store; check the id, or run "
            "`gladly-sync sync` to fetch recent conversations"
        )
    if found[0] is not None:
        raise EnqueueRejected(
            f"conversation {conversation_id} no longer exists in Gladly (deleted or merged away); "
            "queue the action on the conversation it was merged into"
        )


def _reply_target(con: Any, conversation_id: str) -> dict[str, Any]:
    placeholders = ", ".join("?" for _ in REPLYABLE_TYPES)
    found = con.execute(
        f"""
        SELECT id, content_type FROM conversation_items
        WHERE conversation_id = ? AND initiator_type = 'CUSTOMER' AND deleted_at IS NULL
          AND content_type IN ({placeholders})
        ORDER BY timestamp DESC NULLS LAST, id DESC
        LIMIT 1
        """,
        [conversation_id, *REPLYABLE_TYPES],
    ).fetchone()
    if found is None:
        raise EnqueueRejected(
            f"conversation {conversation_id} has no customer message to reply to (a reply needs a "
            f"customer {', '.join(REPLYABLE_TYPES)} item; voice items cannot be replied to); "
            "queue an internal note instead, or run `gladly-sync sync` if the message is recent"
        )
    return {"id": found[0], "content_type": found[1]}
