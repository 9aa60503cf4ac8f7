"""The outbox: replies, internal notes and escalations queued for Gladly, and their states.

Every function takes an open DuckDB connection ``con`` whose transaction the caller owns, and the
current instant ``now`` (UTC-aware) where it writes a time. Rows come back as plain dicts.

States of an action::

    pending ──mark_sending──▶ sending ──mark_sent──▶ sent
       ▲                        │  ├──mark_unknown──▶ unknown ──(reconciled)──▶ sent
       │                        │  │                    │ not found: mark_sending (a new attempt)
       └──mark_pending──────────┤  └──mark_failed───▶ failed ──retry_action──▶ pending
                                └── (crash) recover_stale_sending ──▶ unknown
    pending / unknown / failed ──cancel_action──▶ cancelled

``attempts`` counts requests that may have reached Gladly. ``mark_sending`` adds one, committed
with the ``sending`` status before the request leaves, so a crash mid-request is counted;
``mark_pending(counted=False)`` gives it back for a 429 or an error that proves nothing was sent.

Queue order is ``seq`` (assigned ``max(seq) + 1`` at enqueue). Per conversation, the oldest row that
is ``pending``, ``sending`` or ``unknown`` holds back every later row of that conversation; ``failed``,
``cancelled`` and ``sent`` rows do not.

Body limits checked at enqueue (Gladly documents only "content.body cannot be larger than 2048
characters" for replies): non-email replies 2048 characters, email replies 100,000, notes (also an
escalation's note) 10,000.

A reused ``dedupe_key`` returns the existing row when it names the same kind and conversation (the
body is not compared: a caller retrying its own enqueue may word it differently). Two transactions
racing with the same new key: the UNIQUE constraint on ``dedupe_key`` is the last word; the loser's
commit fails, and running its enqueue again returns the winner's row with ``deduplicated=True``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gladly_sync.errors import EnqueueRejected, NotFound, UsageError

__all__ = [
    "EMAIL_REPLY_MAX_CHARS",
    "KINDS",
    "NOTE_MAX_CHARS",
    "REPLY_MAX_CHARS",
    "REPLYABLE_TYPES",
    "STATUSES",
    "EnqueueResult",
    "cancel_action",
    "claimed_item_ids",
    "due_actions",
    "enqueue_escalation",
    "enqueue_note",
    "enqueue_reply",
    "get_action",
    "list_actions",
    "mark_failed",
    "mark_pending",
    "mark_sending",
    "mark_sent",
    "mark_unknown",
    "outbox_by_key",
    "outbox_counts",
    "record_note_sent",
    "recover_stale_sending",
    "retry_action",
]

KINDS = ("reply", "note", "escalation")
STATUSES = ("pending", "sending", "unknown", "sent", "failed", "cancelled")
OPEN_STATUSES = ("pending", "sending", "unknown")  # these hold back later rows of their conversation

REPLYABLE_TYPES = ("EMAIL", "CHAT_MESSAGE", "SMS", "WHATSAPP", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT")
REPLY_MAX_CHARS = 2048
EMAIL_REPLY_MAX_CHARS = 100_000
NOTE_MAX_CHARS = 10_000


@dataclass(frozen=True)
class EnqueueResult:
    row: dict[str, Any]
    deduplicated: bool


# --------------------------------------------------------------------------- reading


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [_row(dict(zip(names, values, strict=True))) for values in cursor.fetchall()]


def _row(row: dict[str, Any]) -> dict[str, Any]:
    for key, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is not None:
            row[key] = value.astimezone(UTC)
    return row


def _one(cursor: Any) -> dict[str, Any] | None:
    rows = _rows(cursor)
    return rows[0] if rows else None


def get_action(con: Any, action_id: str) -> dict[str, Any]:
    """The outbox row ``action_id``; ``NotFound`` when there is none."""
    row = _one(con.execute("SELECT * FROM outbox WHERE id = ?", [action_id]))
    if row is None:
        raise NotFound(f"no outbox action {action_id!r}; list them with `gladly-sync outbox list`")
    return row


def outbox_by_key(con: Any, key: str) -> dict[str, Any] | None:
    """The row queued with ``dedupe_key`` ``key``, or None when nothing was queued with it."""
    return _one(con.execute("SELECT * FROM outbox WHERE dedupe_key = ?", [key]))


def list_actions(con: Any, status: str | None = None) -> list[dict[str, Any]]:
    """Rows in queue order, optionally only those in ``status``."""
    if status is None:
        return _rows(con.execute("SELECT * FROM outbox ORDER BY seq, created_at, id"))
    if status not in STATUSES:
        raise UsageError(f"unknown outbox status {status!r}; expected one of {', '.join(STATUSES)}")
    return _rows(con.execute("SELECT * FROM outbox WHERE status = ? ORDER BY seq, created_at, id", [status]))


def outbox_counts(con: Any) -> dict[str, int]:
    """Rows per status, every status present (0 when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in con.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall():
        counts[status] = n
    return counts


def claimed_item_ids(con: Any, conversation_id: str, *, exclude_id: str | None = None) -> set[str]:
    """Gladly item ids already owned by outbox rows of the conversation (other than ``exclude_id``)."""
    rows = con.execute(
        "SELECT gladly_item_id, note_item_id FROM outbox WHERE conversation_id = ? AND id IS DISTINCT FROM ?",
        [conversation_id, exclude_id],
    ).fetchall()
    return {item_id for pair in rows for item_id in pair if item_id}


def due_actions(con: Any, now: datetime, *, conversation_id: str | None = None) -> list[dict[str, Any]]:
    """Rows the drain may work on now: per conversation, its oldest open row in queue order.

    An open row (``pending``, ``sending``, ``unknown``) holds back the later rows of its conversation;
    a ``sending`` head, or one whose ``next_attempt_at`` is still ahead, makes nothing of that
    conversation due. ``unknown`` rows come first (they are reconciled before anything is sent).
    """
    sql = """
        WITH heads AS (
            SELECT *, row_number() OVER (PARTITION BY conversation_id ORDER BY seq, created_at, id) AS rn
            FROM outbox WHERE status IN ('pending', 'sending', 'unknown')
        )
        SELECT * EXCLUDE (rn) FROM heads
        WHERE rn = 1 AND status IN ('pending', 'unknown')
          AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
    """
    params: list[Any] = [now]
    if conversation_id is not None:
        sql += " AND conversation_id = ?"
        params.append(conversation_id)
    sql += " ORDER BY status = 'unknown' DESC, seq, created_at, id"
    return _rows(con.execute(sql, params))


# --------------------------------------------------------------------------- enqueue


def enqueue_reply(
    con: Any,
    conversation_id: str,
    body: str,
    *,
    html: bool = False,
    dedupe_key: str | None = None,
    now: datetime,
) -> EnqueueResult:
    """Queue a reply to the conversation's newest replyable customer message.

    The target item and its channel are fixed now, in ``reply_to_item_id`` and ``channel``.
    """
    existing = _deduplicate(con, dedupe_key, "reply", conversation_id)
    if existing is not None:
        return EnqueueResult(existing, True)
    _require_conversation(con, conversation_id)
    _require_body(body, "reply body", "--body")
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
    return _insert(
        con,
        now=now,
        kind="reply",
        conversation_id=conversation_id,
        body=body,
        body_is_html=html,
        channel=channel,
        reply_to_item_id=target["id"],
        dedupe_key=dedupe_key,
    )


def enqueue_note(
    con: Any, conversation_id: str, body: str, *, dedupe_key: str | None = None, now: datetime
) -> EnqueueResult:
    """Queue an internal note (plain text or Gladly's rich-content HTML)."""
    existing = _deduplicate(con, dedupe_key, "note", conversation_id)
    if existing is not None:
        return EnqueueResult(existing, True)
    _require_conversation(con, conversation_id)
    _require_body(body, "note body", "--body")
    _require_note_length(body, "note")
    return _insert(
        con, now=now, kind="note", conversation_id=conversation_id, body=body, dedupe_key=dedupe_key
    )


def enqueue_escalation(
    con: Any,
    conversation_id: str,
    *,
    note: str | None = None,
    inbox_id: str | None = None,
    default_inbox: str | None = None,
    dedupe_key: str | None = None,
    now: datetime,
) -> EnqueueResult:
    """Queue one escalation row: the optional note (kept in ``body``) first, then the move to
    ``inbox_id`` (else ``default_inbox``, the configured escalation inbox), kept in ``target_inbox_id``."""
    existing = _deduplicate(con, dedupe_key, "escalation", conversation_id)
    if existing is not None:
        return EnqueueResult(existing, True)
    _require_conversation(con, conversation_id)
    if note is not None:
        _require_body(note, "escalation note", "--note (or leave --note out)")
        _require_note_length(note, "escalation note")
    target = (inbox_id or "").strip() or (default_inbox or "").strip()
    if not target:
        raise EnqueueRejected("no escalation inbox: set inboxes.escalation in config.yaml or pass --inbox ID")
    return _insert(
        con,
        now=now,
        kind="escalation",
        conversation_id=conversation_id,
        body=note,
        target_inbox_id=target,
        dedupe_key=dedupe_key,
    )


def _deduplicate(con: Any, key: str | None, kind: str, conversation_id: str) -> dict[str, Any] | None:
    if key is None:
        return None
    if not key.strip():
        raise EnqueueRejected("the dedupe key is empty; pass a non-empty --dedupe-key or leave it out")
    row = outbox_by_key(con, key)
    if row is None:
        return None
    if row["kind"] != kind or row["conversation_id"] != conversation_id:
        raise EnqueueRejected(
            f"dedupe key {key!r} is already used by outbox action {row['id']} ({row['kind']} on "
            f"conversation {row['conversation_id']}); use a different key for a different action"
        )
    return row


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


def _require_body(body: str | None, what: str, option: str) -> None:
    if body is None or not body.strip():
        raise EnqueueRejected(f"the {what} is empty; give the text to send with {option}")


def _require_note_length(body: str, what: str) -> None:
    if len(body) > NOTE_MAX_CHARS:
        raise EnqueueRejected(
            f"the {what} is {len(body)} characters; at most {NOTE_MAX_CHARS} are accepted; shorten it"
        )


def _reply_target(con: Any, conversation_id: str) -> dict[str, Any]:
    placeholders = ", ".join("?" for _ in REPLYABLE_TYPES)
    row = _one(
        con.execute(
            f"""
            SELECT id, content_type FROM conversation_items
            WHERE conversation_id = ? AND initiator_type = 'CUSTOMER' AND deleted_at IS NULL
              AND content_type IN ({placeholders})
            ORDER BY timestamp DESC NULLS LAST, id DESC
            LIMIT 1
            """,
            [conversation_id, *REPLYABLE_TYPES],
        )
    )
    if row is None:
        raise EnqueueRejected(
            f"conversation {conversation_id} has no customer message to reply to (a reply needs a "
            f"customer {', '.join(REPLYABLE_TYPES)} item; voice items cannot be replied to); "
            "queue an internal note instead, or run `gladly-sync sync` if the message is recent"
        )
    return row


def _insert(con: Any, *, now: datetime, dedupe_key: str | None, **values: Any) -> EnqueueResult:
    row = {
        "id": str(uuid.uuid4()),
        "body": None,
        "body_is_html": False,
        "channel": None,
        "target_inbox_id": None,
        "reply_to_item_id": None,
        **values,
        "dedupe_key": dedupe_key,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
    }
    names = list(row)
    inserted = _one(
        con.execute(
            f"""
            INSERT INTO outbox ({", ".join(names)}, seq)
            SELECT {", ".join("?" for _ in names)}, coalesce(max(seq), 0) + 1 FROM outbox
            ON CONFLICT DO NOTHING
            RETURNING *
            """,
            [row[name] for name in names],
        )
    )
    if inserted is not None:
        return EnqueueResult(inserted, False)
    # Only the dedupe key can collide (ids are fresh UUIDs): someone committed it since we looked.
    existing = _deduplicate(con, dedupe_key, values["kind"], values["conversation_id"])
    if existing is None:  # pragma: no cover - the constraint said otherwise
        raise EnqueueRejected(f"outbox action could not be queued (dedupe key {dedupe_key!r})")
    return EnqueueResult(existing, True)


# --------------------------------------------------------------------------- operator actions


def retry_action(con: Any, action_id: str, now: datetime) -> dict[str, Any]:
    """Ask the next drain to work on the row again.

    - ``failed`` → ``pending`` with ``attempts`` reset: a deliberate resend (an escalation whose note
      was already sent still only does the move).
    - ``unknown`` stays ``unknown`` and becomes due at once: it is reconciled first, so a message that
      did reach Gladly is never sent twice. If its outcome cannot be verified, check Gladly, then
      ``cancel`` it and queue it again if it was not sent.
    - ``pending`` becomes due at once.
    - ``sending``, ``sent`` and ``cancelled`` rows are refused.
    """
    row = get_action(con, action_id)
    status = row["status"]
    if status == "failed":
        sql = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL WHERE id = ?"
    elif status in ("unknown", "pending"):
        sql = "UPDATE outbox SET next_attempt_at = NULL WHERE id = ?"
    elif status == "sending":
        raise UsageError(
            f"outbox action {action_id} is being sent right now; wait for the drain to finish and look again"
        )
    elif status == "sent":
        raise UsageError(
            f"outbox action {action_id} was already sent (Gladly item {row['gladly_item_id'] or '-'}); "
            "queue a new action to send it again"
        )
    else:
        raise UsageError(f"outbox action {action_id} was cancelled; queue a new action instead")
    con.execute(sql, [action_id])
    return get_action(con, action_id)


def cancel_action(con: Any, action_id: str, now: datetime) -> dict[str, Any]:
    """Cancel a row that is ``pending``, ``unknown`` or ``failed`` (an ``unknown`` one may already
    have reached Gladly). Refused for ``sending`` and ``sent``; cancelling twice is harmless."""
    row = get_action(con, action_id)
    status = row["status"]
    if status == "cancelled":
        return row
    if status == "sending":
        raise UsageError(
            f"outbox action {action_id} is being sent right now and cannot be cancelled; "
            "wait for the drain to finish and look again"
        )
    if status == "sent":
        raise UsageError(f"outbox action {action_id} was already sent and cannot be cancelled")
    con.execute(
        "UPDATE outbox SET status = 'cancelled', next_attempt_at = NULL, last_error = ? WHERE id = ?",
        [_join(row["last_error"], f"cancelled at {now.astimezone(UTC).isoformat()}"), action_id],
    )
    return get_action(con, action_id)


def _join(previous: str | None, note: str) -> str:
    return f"{note} (last error: {previous})" if previous else note


# --------------------------------------------------------------------------- drain transitions


def recover_stale_sending(con: Any, now: datetime) -> int:
    """Rows left ``sending`` by a drain that stopped mid-request become ``unknown``: reconcile first."""
    found = con.execute(
        """
        UPDATE outbox SET status = 'unknown', next_attempt_at = NULL,
            last_error = 'the drain stopped while sending (crash?); outcome not known yet'
        WHERE status = 'sending'
        RETURNING id
        """
    ).fetchall()
    return len(found)


def mark_sending(con: Any, action_id: str, now: datetime) -> dict[str, Any] | None:
    """Claim a ``pending``/``unknown`` row for a request: ``sending``, ``last_attempt_at = now``,
    one more attempt. None when the row is no longer claimable (cancelled, sent, taken)."""
    return _one(
        con.execute(
            """
            UPDATE outbox SET status = 'sending', last_attempt_at = ?, attempts = attempts + 1
            WHERE id = ? AND status IN ('pending', 'unknown')
            RETURNING *
            """,
            [now, action_id],
        )
    )


def mark_sent(con: Any, action_id: str, gladly_item_id: str | None, now: datetime) -> dict[str, Any]:
    """Gladly created the item (or the move is verified): ``sent``, with the item id when there is one."""
    return _update(
        con,
        action_id,
        "status = 'sent', gladly_item_id = coalesce(?, gladly_item_id), sent_at = ?, "
        "next_attempt_at = NULL, last_error = NULL",
        [gladly_item_id, now],
    )


def record_note_sent(con: Any, action_id: str, note_item_id: str) -> dict[str, Any]:
    """An escalation's note is in Gladly: a later attempt resumes at the move."""
    return _update(con, action_id, "note_item_id = ?", [note_item_id])


def mark_pending(
    con: Any, action_id: str, next_attempt_at: datetime, error: str, counted: bool
) -> dict[str, Any] | None:
    """Back to ``pending`` until ``next_attempt_at``. ``counted=False`` (429, never sent) gives back
    the attempt ``mark_sending`` took."""
    return _transition(
        con,
        action_id,
        "status = 'pending', next_attempt_at = ?, last_error = ?"
        + ("" if counted else ", attempts = greatest(attempts - 1, 0)"),
        [next_attempt_at, error],
    )


def mark_unknown(
    con: Any, action_id: str, error: str, *, next_attempt_at: datetime | None = None
) -> dict[str, Any] | None:
    """The request may or may not have been applied: a drain reconciles it before any resend (the
    next one, or the first after ``next_attempt_at`` when a check could not settle it)."""
    return _transition(
        con, action_id, "status = 'unknown', next_attempt_at = ?, last_error = ?", [next_attempt_at, error]
    )


def mark_failed(con: Any, action_id: str, error: str) -> dict[str, Any] | None:
    """Gladly refused it, or it ran out of attempts: no more tries until an operator retries it."""
    return _transition(con, action_id, "status = 'failed', next_attempt_at = NULL, last_error = ?", [error])


def _update(con: Any, action_id: str, assignments: str, params: list[Any]) -> dict[str, Any]:
    row = _one(con.execute(f"UPDATE outbox SET {assignments} WHERE id = ? RETURNING *", [*params, action_id]))
    if row is None:
        raise NotFound(f"no outbox action {action_id!r}")
    return row


def _transition(con: Any, action_id: str, assignments: str, params: list[Any]) -> dict[str, Any] | None:
    """Update a row still in flight; None when it was meanwhile sent or cancelled (left alone)."""
    return _one(
        con.execute(
            f"UPDATE outbox SET {assignments} WHERE id = ? AND status IN ('pending', 'sending', 'unknown') "
            "RETURNING *",
            [*params, action_id],
        )
    )
