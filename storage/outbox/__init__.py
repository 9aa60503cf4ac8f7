"""The outbox: replies, internal notes and escalations queued for Gladly, in their own database.

- ``database``: ``OutboxDatabase`` (SQLite in WAL mode, or any SQLAlchemy URL) and the one dialect
  seam (``next_seq``);
- ``schema``: the ``outbox`` table in SQLAlchemy Core;
- ``queue``: rows and their states (enqueue insert, claims, transitions, operator actions);
- ``validation``: what enqueue checks against the conversations (snapshot, else store);
- ``intake``: ``Outbox``, the enqueue path shared by the CLI and ``Store``;
- ``bridge``: importing an older store's outbox; the copy each read snapshot carries.

The queue's functions and constants are re-exported here: ``from gladly_sync.storage import outbox``.
"""

from gladly_sync.storage.outbox import queue
from gladly_sync.storage.outbox.database import OutboxDatabase
from gladly_sync.storage.outbox.queue import (  # noqa: F401 - re-exported (queue.__all__)
    KINDS,
    OPEN_STATUSES,
    STATUSES,
    EnqueueResult,
    NewAction,
    blank_erased_actions,
    cancel_action,
    check_dedupe,
    claimed_item_ids,
    due_actions,
    get_action,
    insert_action,
    list_actions,
    mark_failed,
    mark_pending,
    mark_sending,
    mark_sent,
    mark_unknown,
    open_actions,
    outbox_by_key,
    outbox_counts,
    record_note_sent,
    recover_stale_sending,
    retry_action,
    touch_attempt,
)
from gladly_sync.storage.outbox.validation import (
    EMAIL_REPLY_MAX_CHARS,
    NOTE_MAX_CHARS,
    REPLY_MAX_CHARS,
    REPLYABLE_TYPES,
)

__all__ = [
    *queue.__all__,
    "EMAIL_REPLY_MAX_CHARS",
    "NOTE_MAX_CHARS",
    "REPLYABLE_TYPES",
    "REPLY_MAX_CHARS",
    "OutboxDatabase",
    "blank_erased_actions",
]
