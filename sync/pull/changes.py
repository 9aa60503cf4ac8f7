"""Pure: a page of Gladly events -> what changed (``collect_changes``).

Events whose id is already known change nothing; the new ones name the dirty conversations,
customers, merges and deleted profiles, with the inbox hints that may save a GET.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gladly_sync.storage import rows as rowmaps

ENTITIES = ("CONVERSATION", "CONTACT", "CUSTOMER", "CUSTOMER_PROFILE")


@dataclass(frozen=True)
class Merge:
    """``source_customer_id`` was merged into ``destination_customer_id`` (an event or a 301)."""

    source_customer_id: str
    destination_customer_id: str
    at: datetime
    event_id: str | None = None


@dataclass
class Changes:
    """What the new events of one poll say changed. Lists keep first-seen order, without repeats."""

    events: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    deleted_profiles: list[str] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    inbox_hints: dict[str, str] = field(default_factory=dict)
    item_ids: dict[str, list[str]] = field(default_factory=dict)  # conversation -> items its events name

    def customer_ids(self) -> list[str]:
        """Every customer id the changes name (profiles, deletions, both sides of merges)."""
        ids = [*self.profiles, *self.deleted_profiles]
        for merge in self.merges:
            ids += [merge.source_customer_id, merge.destination_customer_id]
        return list(dict.fromkeys(ids))


def event_content(event: dict[str, Any]) -> dict[str, Any]:
    content = event.get("content")
    return content if isinstance(content, dict) else {}


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def event_conversation_ids(event: dict[str, Any]) -> list[str]:
    """Conversations an event is about: ``conversationId``, or both sides of a ``CUSTOMER/MERGED``."""
    content = event_content(event)
    if event.get("type") == "CUSTOMER/MERGED":
        keys = ("sourceConversationId", "destinationConversationId")
    else:
        keys = ("conversationId",)
    return list(dict.fromkeys(cid for key in keys if (cid := text_or_none(content.get(key)))))


# The event types whose content names a conversation item, and the key that holds its id
# (Gladly's event schemas: the item is then readable at GET /conversation-items/{id}).
ITEM_ID_KEYS = {
    "CONTACT/MESSAGE_RECEIVED": "messageId",
    "CONTACT/MESSAGE_SENT": "messageId",
    "CONVERSATION/NOTE_CREATED": "noteId",
}


def event_item_id(event: dict[str, Any]) -> str | None:
    """The conversation item an event names (a message received or sent, a note created), if any."""
    key = ITEM_ID_KEYS.get(str(event.get("type", "")))
    return text_or_none(event_content(event).get(key)) if key else None


def event_inbox_hint(event: dict[str, Any]) -> str | None:
    """The conversation's inbox as of the event: the new ``assignee`` of an assignee update, else the
    ``context.assignee`` (which on an assignee update is the previous one, so it is not used there)."""
    content = event_content(event)
    assignee = content.get("assignee")
    if isinstance(assignee, dict) and text_or_none(assignee.get("inboxId")):
        return assignee["inboxId"]
    if str(event.get("type", "")).startswith("CONVERSATION_ASSIGNEE/"):
        return None
    context = content.get("context")
    assignee = context.get("assignee") if isinstance(context, dict) else None
    if isinstance(assignee, dict):
        return text_or_none(assignee.get("inboxId"))
    return None

def event_at(event: dict[str, Any]) -> datetime | None:
    try:
        return rowmaps.parse_timestamp(event.get("timestamp"))
    except (TypeError, ValueError):
        return None



def _when(event: dict[str, Any]) -> datetime:
    return event_at(event) or datetime.min.replace(tzinfo=UTC)


def _note_item(changes: Changes, event: dict[str, Any]) -> None:
    item_id = event_item_id(event)
    conversation_ids = event_conversation_ids(event)
    if item_id and conversation_ids:
        named = changes.item_ids.setdefault(conversation_ids[0], [])
        if item_id not in named:
            named.append(item_id)


def collect_changes(events: Sequence[dict[str, Any]], known_ids: Iterable[str]) -> Changes:
    """The dirty sets of one poll. Events whose id is in ``known_ids`` (or repeated) change nothing;
    inbox hints come from the newest event that carries one, known or not."""
    known = set(known_ids)
    changes = Changes()
    conversations: dict[str, None] = {}
    profiles: dict[str, None] = {}
    deleted: dict[str, None] = {}
    newest_hint: dict[str, tuple[datetime, int]] = {}
    for index, event in enumerate(events):
        kind = event.get("type")
        content = event_content(event)
        hint = event_inbox_hint(event)
        if hint is not None:
            for conversation_id in event_conversation_ids(event):
                key = (_when(event), index)
                if conversation_id not in newest_hint or key >= newest_hint[conversation_id]:
                    newest_hint[conversation_id] = key
                    changes.inbox_hints[conversation_id] = hint
        event_id = event.get("id")
        if event_id in known:
            continue
        known.add(event_id)
        changes.events.append(event)
        for conversation_id in event_conversation_ids(event):
            conversations.setdefault(conversation_id)
        _note_item(changes, event)
        customer_id = text_or_none(content.get("customerId"))
        if kind == "CUSTOMER/MERGED":
            source = text_or_none(content.get("sourceCustomerId"))
            destination = text_or_none(content.get("destinationCustomerId"))
            if source and destination and source != destination:
                changes.merges.append(Merge(source, destination, _when(event), event_id))
        elif kind in ("CUSTOMER_PROFILE/CREATED", "CUSTOMER_PROFILE/UPDATED") and customer_id:
            profiles.setdefault(customer_id)
        elif kind == "CUSTOMER_PROFILE/DELETED" and customer_id:
            deleted.setdefault(customer_id)
    changes.conversations = list(conversations)
    changes.deleted_profiles = list(deleted)
    changes.profiles = [cid for cid in profiles if cid not in deleted]
    return changes

