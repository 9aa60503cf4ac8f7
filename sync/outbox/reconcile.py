"""Reconciliation: did an attempt whose outcome is unknown reach Gladly?

Gladly takes no idempotency key on replies or notes, so before a row in ``unknown`` is sent again
the drain reads the conversation's items and looks for the one the attempt would have created:

- initiated by our API user (AGENT, with the agent id ``GET /agents`` gives for ``gladly.email``;
  an item of any other user or integration never counts);
- no earlier than ``last_attempt_at`` minus 2 minutes (clock skew), of the row's content type,
  whose normalised plain text equals the queued body's, and that no other outbox row has claimed.

Gladly may apply a request long after our read timeout fired, so "not there" is not final at
once: a row is resent only when its item has not appeared ``outbox.unknown_settle`` after the last
attempt (:func:`settled`). Until then every drain looks again (one GET) and the row holds back
the later actions of its conversation.

When the list is capped (1000 items) the events of the last 24 h are searched for the item ids
Gladly created in the conversation; when even they cannot settle it the verdict is
:class:`Unverifiable` (the row stays ``unknown`` and is checked again later).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gladly_sync.storage import outbox
from gladly_sync.sync.outbox.payloads import normalise_text, note_body, reply_text

from gladly_sync.errors import AuthError, GladlyError, GladlyNotFound, Rejected

__all__ = ["Found", "Gone", "Missing", "Reconciler", "Unverifiable", "settled"]

CLOCK_SKEW = timedelta(minutes=2)  # an item may carry a timestamp this much before our attempt
EVENTS_WINDOW = timedelta(hours=24) - timedelta(minutes=1)  # Gladly rejects startAt 24 h back exactly


@dataclass(frozen=True)
class Found:
    """The attempt's item is in Gladly."""

    item_id: str


@dataclass(frozen=True)
class Missing:
    """No such item (yet): resend only once :func:`settled`."""


@dataclass(frozen=True)
class Gone:
    """The conversation is gone: nothing can be verified or sent."""

    reason: str


@dataclass(frozen=True)
class Unverifiable:
    """Gladly cannot tell us (capped list, no events, unknown API user)."""

    reason: str


Verdict = Found | Missing | Gone | Unverifiable


def settled(row: dict[str, Any], now: datetime, settle: timedelta) -> bool:
    """Whether an attempt not found in Gladly is old enough (``settle`` after it) to be sent again."""
    attempted = row["last_attempt_at"] or row["created_at"]
    return attempted is None or now - attempted >= settle


class Reconciler:
    """Looks rows up in Gladly through ``client``; ``call`` runs a request with the drain's 429 policy."""

    def __init__(
        self,
        client: Any,
        *,
        email: str,
        claimed_ids: Callable[[dict[str, Any]], set[str]],
        call: Callable[[Callable[[], Any]], Any],
        clock: Callable[[], datetime],
        log: Any,
    ):
        self.client = client
        self.email = email.casefold()
        self._claimed_ids = claimed_ids
        self._call = call
        self._clock = clock
        self.log = log
        self._agent_lock = threading.Lock()
        self._agent: tuple[str | None] | None = None

    def verdict(self, row: dict[str, Any]) -> Verdict | None:
        """Look for the row's item: a verdict, or None when Gladly could not be read now."""
        conversation_id = row["conversation_id"]
        try:
            agent_id = self.agent_id()
            if agent_id is None:
                return Unverifiable(
                    f"outcome cannot be verified: the API user {self.email} is not among Gladly's agents, "
                    "so its items cannot be told apart; check gladly.email"
                )
            page = self._call(lambda: self.client.list_conversation_items(conversation_id))
            match = Matcher(row, agent_id, self._claimed_ids(row))
            for item in page.items:
                if match(item):
                    return Found(item["id"])
            if not page.limited:
                return Missing()
            return self._from_events(row, match, {item.get("id") for item in page.items})
        except AuthError:
            raise
        except GladlyNotFound as exc:
            return Gone(f"the conversation is gone in Gladly ({gladly_said(exc)}); cannot verify or send")
        except GladlyError as exc:
            self.log.warning(
                "outbox_reconcile_failed",
                action_id=row["id"],
                conversation_id=conversation_id,
                error=type(exc).__name__,
                status=exc.status,
            )
            return None

    def agent_id(self) -> str | None:
        """Our API user's agent id (``GET /agents``, matched by email), read once per drain."""
        with self._agent_lock:
            if self._agent is None:
                agents = self._call(self.client.list_agents)
                found = next(
                    (a.get("id") for a in agents if _email_of(a) == self.email),
                    None,
                )
                if found is None:
                    self.log.warning("outbox_agent_not_found", agents=len(agents))
                self._agent = (found,)
            return self._agent[0]

    def _from_events(self, row: dict[str, Any], match: Matcher, listed: set[Any]) -> Found | Unverifiable:
        now = self._clock()
        if match.since < now - EVENTS_WINDOW:
            return Unverifiable(
                "outcome cannot be verified: the conversation has more items than Gladly lists (1000) and "
                "the attempt is older than the 24 h events window; check the conversation in Gladly, "
                "then cancel this action (and queue it again if it was not sent)"
            )
        for item_id in self._event_item_ids(row, match, listed, now):
            try:
                item = self._call(lambda item_id=item_id: self.client.get_item(item_id))
            except GladlyNotFound:
                continue
            if match(item):
                return Found(item["id"])
        return Unverifiable(
            "outcome cannot be verified: the conversation has more items than Gladly lists (1000) and no "
            "matching item was found through the events of the last 24 h; check the conversation in "
            "Gladly, then cancel this action (and queue it again if it was not sent)"
        )

    def _event_item_ids(
        self, row: dict[str, Any], match: Matcher, listed: set[Any], now: datetime
    ) -> list[str]:
        """Ids of items created in the conversation since the attempt, not listed and not claimed."""
        is_note = match.is_note
        events = self._call(
            lambda: self.client.list_events(match.since, now, ["CONVERSATION" if is_note else "CONTACT"])
        )
        wanted_type, id_key = (
            ("CONVERSATION/NOTE_CREATED", "noteId") if is_note else ("CONTACT/MESSAGE_SENT", "messageId")
        )
        candidates: list[str] = []
        for event in events:
            content = event.get("content") or {}
            item_id = content.get(id_key)
            if (
                event.get("type") == wanted_type
                and content.get("conversationId") == row["conversation_id"]
                and item_id
                and item_id not in listed
                and item_id not in match.claimed
                and item_id not in candidates
            ):
                candidates.append(item_id)
        return candidates


class Matcher:
    """Does a Gladly item look like the one this row created?"""

    def __init__(self, row: dict[str, Any], agent_id: str, claimed: set[str]):
        self.row = row
        self.agent_id = agent_id
        self.claimed = claimed
        self.is_note = row["kind"] in ("note", "escalation")
        if self.is_note:
            self.content_type = "CONVERSATION_NOTE"
            self.expected = normalise_text(note_body(row["body"]))
        else:
            self.content_type = row["channel"]
            self.expected = normalise_text(reply_text(row))
        attempted = row["last_attempt_at"] or row["created_at"]
        self.since: datetime = attempted - CLOCK_SKEW

    def __call__(self, item: dict[str, Any]) -> bool:
        if not item.get("id") or item["id"] in self.claimed:
            return False
        if item.get("conversationId", self.row["conversation_id"]) != self.row["conversation_id"]:
            return False  # Gladly's list may hold another conversation's item
        initiator = item.get("initiator") or {}
        if initiator.get("type") != "AGENT" or initiator.get("id") != self.agent_id:
            return False  # only our API user's items; never another user's or integration's
        timestamp = _parse_time(item.get("timestamp"))
        if timestamp is None or timestamp < self.since:
            return False
        content = item.get("content") or {}
        if content.get("type") != self.content_type:
            return False
        if self.is_note:
            text = content.get("body")
        else:
            text = content.get("content") if content.get("content") is not None else content.get("body")
        return normalise_text(text) == self.expected


def claimed_ids_from(database: Any) -> Callable[[dict[str, Any]], set[str]]:
    """Item ids other outbox rows of the row's conversation own, read from the outbox database."""

    def claimed(row: dict[str, Any]) -> set[str]:
        with database.connect() as con:
            return outbox.claimed_item_ids(con, row["conversation_id"], exclude_id=row["id"])

    return claimed


def _email_of(agent: dict[str, Any]) -> str:
    return str(agent.get("emailAddress") or "").casefold()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def gladly_said(exc: Rejected) -> str:
    if exc.code or exc.detail:
        return ": ".join(part for part in (exc.code, exc.detail) if part)
    return str(exc)
