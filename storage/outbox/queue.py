"""The outbox queue: rows of the outbox database and their states.

Every function takes a SQLAlchemy connection ``con`` whose transaction the caller owns (see
``OutboxDatabase.transaction``), and the current instant ``now`` (UTC-aware) where it writes a
time. Rows come back as plain dicts, times UTC-aware. The SQL is SQLAlchemy Core, so the same
functions run on SQLite and PostgreSQL.

States of an action::

    pending ──mark_sending──▶ sending ──mark_sent──▶ sent
       ▲                        │  ├──mark_unknown──▶ unknown ──(reconciled)──▶ sent
       │                        │  │                    │ not found after the settle period:
       │                        │  │                    │ mark_sending (a new attempt)
       └──mark_pending──────────┤  └──mark_failed───▶ failed ──retry_action──▶ pending
                                └── (crash, attempt older than the request timeout)
                                    recover_stale_sending ──▶ unknown
    pending / unknown / failed ──cancel_action──▶ cancelled

``attempts`` counts requests that may have reached Gladly. ``mark_sending`` adds one, committed
with the ``sending`` status before the request leaves, so a crash mid-request is counted;
``mark_pending(counted=False)`` gives it back for a 429 or an error that proves nothing was sent.

Claims are compare-and-set: ``mark_sending`` given the row as the drain saw it changes it only if
its status, attempts and ``last_attempt_at`` are still what was seen, so two drains can never both
send one row (the loser gets None).

Queue order is ``seq``, drawn from a sequence at enqueue (``database.next_seq``). Per
conversation, the oldest row that is ``pending``, ``sending`` or ``unknown`` holds back every later
row of that conversation; ``failed``, ``cancelled`` and ``sent`` rows do not.

A reused ``dedupe_key`` returns the existing row when it names the same action (kind, conversation
and body); a different action is refused, naming the row that has the key. Two transactions racing
with the same new key: the UNIQUE constraint on ``dedupe_key`` is the last word.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gladly_sync.storage.outbox.database import next_seq
from gladly_sync.storage.outbox.schema import OUTBOX
from sqlalchemy import Connection, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from gladly_sync.errors import EnqueueRejected, NotFound, UsageError

__all__ = [
    "KINDS",
    "OPEN_STATUSES",
    "STATUSES",
    "EnqueueResult",
    "NewAction",
    "blank_erased_actions",
    "cancel_action",
    "check_dedupe",
    "claimed_item_ids",
    "due_actions",
    "get_action",
    "insert_action",
    "list_actions",
    "mark_failed",
    "mark_pending",
    "mark_sending",
    "mark_sent",
    "mark_unknown",
    "open_actions",
    "outbox_by_key",
    "outbox_counts",
    "record_note_sent",
    "recover_stale_sending",
    "retry_action",
    "touch_attempt",
]

KINDS = ("reply", "note", "escalation")
STATUSES = ("pending", "sending", "unknown", "sent", "failed", "cancelled")
OPEN_STATUSES = ("pending", "sending", "unknown")  # these hold back later rows of their conversation

_ORDER = (OUTBOX.c.seq, OUTBOX.c.created_at, OUTBOX.c.id)
_COLUMNS = tuple(OUTBOX.c)


@dataclass(frozen=True)
class NewAction:
    """A validated action, ready to be queued (see ``validation``)."""

    kind: str
    conversation_id: str
    body: str | None = None
    body_is_html: bool = False
    channel: str | None = None
    target_inbox_id: str | None = None
    reply_to_item_id: str | None = None


@dataclass(frozen=True)
class EnqueueResult:
    row: dict[str, Any]
    deduplicated: bool


# --------------------------------------------------------------------------- reading


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]


def _one(result: Any) -> dict[str, Any] | None:
    row = result.first()
    return dict(row._mapping) if row is not None else None


def get_action(con: Connection, action_id: str) -> dict[str, Any]:
    """The outbox row ``action_id``; ``NotFound`` when there is none."""
    row = _one(con.execute(select(OUTBOX).where(OUTBOX.c.id == action_id)))
    if row is None:
        raise NotFound(f"no outbox action {action_id!r}; list them with `gladly-sync outbox list`")
    return row


def outbox_by_key(con: Connection, key: str) -> dict[str, Any] | None:
    """The row queued with ``dedupe_key`` ``key``, or None when nothing was queued with it."""
    return _one(con.execute(select(OUTBOX).where(OUTBOX.c.dedupe_key == key)))


def list_actions(con: Connection, status: str | None = None) -> list[dict[str, Any]]:
    """Rows in queue order, optionally only those in ``status``."""
    query = select(OUTBOX).order_by(*_ORDER)
    if status is not None:
        if status not in STATUSES:
            raise UsageError(f"unknown outbox status {status!r}; expected one of {', '.join(STATUSES)}")
        query = query.where(OUTBOX.c.status == status)
    return _rows(con.execute(query))


def open_actions(con: Connection, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's actions not yet ``sent`` (``context``'s outbox part), oldest first."""
    query = (
        select(
            OUTBOX.c.id,
            OUTBOX.c.kind,
            OUTBOX.c.status,
            OUTBOX.c.body,
            OUTBOX.c.dedupe_key,
            OUTBOX.c.created_at,
            OUTBOX.c.last_error,
        )
        .where(OUTBOX.c.conversation_id == conversation_id, OUTBOX.c.status != "sent")
        .order_by(OUTBOX.c.created_at, *_ORDER)
    )
    return _rows(con.execute(query))


def outbox_counts(con: Connection) -> dict[str, int]:
    """Rows per status, every status present (0 when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in con.execute(select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)):
        counts[status] = n
    return counts


def claimed_item_ids(con: Connection, conversation_id: str, *, exclude_id: str | None = None) -> set[str]:
    """Gladly item ids already owned by outbox rows of the conversation (other than ``exclude_id``)."""
    query = select(OUTBOX.c.gladly_item_id, OUTBOX.c.note_item_id).where(
        OUTBOX.c.conversation_id == conversation_id
    )
    if exclude_id is not None:
        query = query.where(OUTBOX.c.id != exclude_id)
    return {item_id for pair in con.execute(query) for item_id in pair if item_id}


def due_actions(
    con: Connection, now: datetime, *, conversation_id: str | None = None
) -> list[dict[str, Any]]:
    """Rows the drain may work on now: per conversation, its oldest open row in queue order.

    An open row (``pending``, ``sending``, ``unknown``) holds back the later rows of its conversation;
    a ``sending`` head, or one whose ``next_attempt_at`` is still ahead, makes nothing of that
    conversation due. ``unknown`` rows come first (they are reconciled before anything is sent).
    """
    ranked = select(
        OUTBOX, func.row_number().over(partition_by=OUTBOX.c.conversation_id, order_by=_ORDER).label("rn")
    ).where(OUTBOX.c.status.in_(OPEN_STATUSES))
    if conversation_id is not None:
        ranked = ranked.where(OUTBOX.c.conversation_id == conversation_id)
    heads = ranked.subquery()
    query = (
        select(*(heads.c[column.name] for column in _COLUMNS))
        .where(
            heads.c.rn == 1,
            heads.c.status.in_(("pending", "unknown")),
            or_(heads.c.next_attempt_at.is_(None), heads.c.next_attempt_at <= now),
        )
        .order_by(
            case((heads.c.status == "unknown", 0), else_=1), heads.c.seq, heads.c.created_at, heads.c.id
        )
    )
    return _rows(con.execute(query))


# --------------------------------------------------------------------------- enqueue


def check_dedupe(
    con: Connection, key: str | None, kind: str, conversation_id: str, body: str | None
) -> dict[str, Any] | None:
    """The row already queued with ``key`` for this same action, None when the key is new.

    A key names one action: the same kind, conversation and body again is that action (its row is
    returned); anything else is refused with ``EnqueueRejected`` naming the row that has the key.
    """
    if key is None:
        return None
    if not key.strip():
        raise EnqueueRejected("the dedupe key is empty; pass a non-empty --dedupe-key or leave it out")
    row = outbox_by_key(con, key)
    if row is None:
        return None
    differs = [
        what
        for what, ours, theirs in (
            ("kind", kind, row["kind"]),
            ("conversation", conversation_id, row["conversation_id"]),
            ("body", body, row["body"]),
        )
        if ours != theirs
    ]
    if differs:
        raise EnqueueRejected(
            f"dedupe key {key!r} is already used by outbox action {row['id']} ({row['kind']} on "
            f"conversation {row['conversation_id']}, {row['status']}) with a different "
            f"{' and '.join(differs)}; use a different key for a different action"
        )
    return row


def insert_action(
    con: Connection, action: NewAction, *, dedupe_key: str | None, now: datetime
) -> EnqueueResult:
    """Queue ``action`` (``pending``, next ``seq``), or return the row that already has ``dedupe_key``."""
    existing = check_dedupe(con, dedupe_key, action.kind, action.conversation_id, action.body)
    if existing is not None:
        return EnqueueResult(existing, True)
    values = {
        "id": str(uuid.uuid4()),
        **action.__dict__,
        "dedupe_key": dedupe_key,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "seq": next_seq(con),
    }
    savepoint = con.begin_nested() if dedupe_key is not None else None
    try:
        row = _one(con.execute(insert(OUTBOX).values(**values).returning(*_COLUMNS)))
    except IntegrityError:
        if savepoint is None:
            raise
        savepoint.rollback()
        # Someone committed the key since we looked (possible only where writers do not queue).
        existing = check_dedupe(con, dedupe_key, action.kind, action.conversation_id, action.body)
        if existing is None:
            raise
        return EnqueueResult(existing, True)
    if savepoint is not None:
        savepoint.commit()
    assert row is not None
    return EnqueueResult(row, False)


# --------------------------------------------------------------------------- operator actions


def retry_action(con: Connection, action_id: str, now: datetime) -> dict[str, Any]:
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
        values: dict[str, Any] = {"status": "pending", "attempts": 0, "next_attempt_at": None}
    elif status in ("unknown", "pending"):
        values = {"next_attempt_at": None}
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
    con.execute(update(OUTBOX).where(OUTBOX.c.id == action_id).values(**values))
    return get_action(con, action_id)


def cancel_action(con: Connection, action_id: str, now: datetime) -> dict[str, Any]:
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
    note = f"cancelled at {now.astimezone(UTC).isoformat()}"
    error = f"{note} (last error: {row['last_error']})" if row["last_error"] else note
    con.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == action_id, OUTBOX.c.status == status)
        .values(status="cancelled", next_attempt_at=None, last_error=error)
    )
    return get_action(con, action_id)


# --------------------------------------------------------------------------- drain transitions


def recover_stale_sending(con: Connection, now: datetime, *, older_than: timedelta) -> int:
    """Rows left ``sending`` by a drain that stopped mid-request become ``unknown`` (reconcile first).

    Only rows whose attempt started more than ``older_than`` (the request timeout) ago: a younger
    one may be a concurrent drain's request still in flight, and is left alone.
    """
    result = con.execute(
        update(OUTBOX)
        .where(
            OUTBOX.c.status == "sending",
            or_(OUTBOX.c.last_attempt_at.is_(None), OUTBOX.c.last_attempt_at < now - older_than),
        )
        .values(
            status="unknown",
            next_attempt_at=None,
            last_error="the drain stopped while sending (crash?); outcome not known yet",
        )
        .returning(OUTBOX.c.id)
    )
    return len(result.all())


def mark_sending(
    con: Connection, action_id: str, now: datetime, *, seen: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Claim a ``pending``/``unknown`` row for a request: ``sending``, ``last_attempt_at = now``,
    one more attempt. None when the row is no longer claimable (cancelled, sent, taken), or, given
    ``seen`` (the row the caller's decision was based on), when it changed since."""
    conditions = [OUTBOX.c.id == action_id, OUTBOX.c.status.in_(("pending", "unknown"))]
    if seen is not None:
        conditions += [
            OUTBOX.c.status == seen["status"],
            OUTBOX.c.attempts == seen["attempts"],
            OUTBOX.c.last_attempt_at.is_(None)
            if seen["last_attempt_at"] is None
            else OUTBOX.c.last_attempt_at == seen["last_attempt_at"],
        ]
    return _one(
        con.execute(
            update(OUTBOX)
            .where(*conditions)
            .values(status="sending", last_attempt_at=now, attempts=OUTBOX.c.attempts + 1)
            .returning(*_COLUMNS)
        )
    )


def touch_attempt(con: Connection, action_id: str, now: datetime) -> None:
    """A ``sending`` row whose request is being retried (429) is still in flight: restamp it, so no
    other drain takes it for a crashed one."""
    con.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == action_id, OUTBOX.c.status == "sending")
        .values(last_attempt_at=now)
    )


def mark_sent(con: Connection, action_id: str, gladly_item_id: str | None, now: datetime) -> dict[str, Any]:
    """Gladly created the item (or the move is verified): ``sent``, with the item id when there is one."""
    values: dict[str, Any] = {"status": "sent", "sent_at": now, "next_attempt_at": None, "last_error": None}
    if gladly_item_id is not None:
        values["gladly_item_id"] = gladly_item_id
    return _update(con, action_id, values)


def record_note_sent(con: Connection, action_id: str, note_item_id: str) -> dict[str, Any]:
    """An escalation's note is in Gladly: a later attempt resumes at the move."""
    return _update(con, action_id, {"note_item_id": note_item_id})


def mark_pending(
    con: Connection, action_id: str, next_attempt_at: datetime, error: str, counted: bool
) -> dict[str, Any] | None:
    """Back to ``pending`` until ``next_attempt_at``. ``counted=False`` (429, never sent) gives back
    the attempt ``mark_sending`` took."""
    values: dict[str, Any] = {"status": "pending", "next_attempt_at": next_attempt_at, "last_error": error}
    if not counted:
        values["attempts"] = case((OUTBOX.c.attempts > 0, OUTBOX.c.attempts - 1), else_=0)
    return _transition(con, action_id, values)


def mark_unknown(
    con: Connection, action_id: str, error: str, *, next_attempt_at: datetime | None = None
) -> dict[str, Any] | None:
    """The request may or may not have been applied: a drain reconciles it before any resend (the
    next one, or the first after ``next_attempt_at`` when a check could not settle it)."""
    return _transition(
        con, action_id, {"status": "unknown", "next_attempt_at": next_attempt_at, "last_error": error}
    )


def mark_failed(con: Connection, action_id: str, error: str) -> dict[str, Any] | None:
    """Gladly refused it, or it ran out of attempts: no more tries until an operator retries it."""
    return _transition(con, action_id, {"status": "failed", "next_attempt_at": None, "last_error": error})


def _update(con: Connection, action_id: str, values: dict[str, Any]) -> dict[str, Any]:
    query = update(OUTBOX).where(OUTBOX.c.id == action_id).values(**values).returning(*_COLUMNS)
    row = _one(con.execute(query))
    if row is None:
        raise NotFound(f"no outbox action {action_id!r}")
    return row


def _transition(con: Connection, action_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
    """Update a row still in flight; None when it was meanwhile sent or cancelled (left alone)."""
    return _one(
        con.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == action_id, OUTBOX.c.status.in_(OPEN_STATUSES))
            .values(**values)
            .returning(*_COLUMNS)
        )
    )


# --------------------------------------------------------------------------- erasure

ERASED = "cancelled: the customer's profile was deleted in Gladly, and the body with it"
_ERASE_CHUNK = 500  # ids per statement


def blank_erased_actions(con: Connection, conversation_ids: Sequence[str], item_ids: Sequence[str]) -> int:
    """An erasure reaches the outbox; returns the rows blanked.

    Rows of ``conversation_ids`` (an erased customer's conversations), whatever their status, lose
    their body; those not sent yet are cancelled (a ``sending`` one too: its drain still records
    what Gladly answers, and nothing can resend it). A sent row whose Gladly item (or escalation
    note) is one of ``item_ids`` (redacted in Gladly) loses its body too.
    """
    finished = OUTBOX.c.status.in_(("sent", "cancelled"))
    blanked = 0
    for chunk in _chunks(conversation_ids):
        result = con.execute(
            update(OUTBOX)
            .where(OUTBOX.c.conversation_id.in_(chunk), or_(OUTBOX.c.body.is_not(None), ~finished))
            .values(
                body=None,
                next_attempt_at=None,
                last_error=case((finished, OUTBOX.c.last_error), else_=ERASED),
                status=case((finished, OUTBOX.c.status), else_="cancelled"),
            )
            .returning(OUTBOX.c.id)
        )
        blanked += len(result.all())
    for chunk in _chunks(item_ids):
        result = con.execute(
            update(OUTBOX)
            .where(
                OUTBOX.c.body.is_not(None),
                or_(OUTBOX.c.gladly_item_id.in_(chunk), OUTBOX.c.note_item_id.in_(chunk)),
            )
            .values(body=None)
            .returning(OUTBOX.c.id)
        )
        blanked += len(result.all())
    return blanked


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(ids))
    return [unique[i : i + _ERASE_CHUNK] for i in range(0, len(unique), _ERASE_CHUNK)]
