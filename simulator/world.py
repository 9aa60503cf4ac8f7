"""The in-memory Gladly organization: reference data, customers, conversations, items, events
and export jobs, with the mutations Gladly performs and the events it emits for them.

Everything public takes `World.lock` (one re-entrant lock), so HTTP handler threads and test
code can call in freely. Accessors return deep copies. Gladly's refusals are raised as
`ApiError` (status + Gladly's error body), from mutations called by tests as well as by the API.

Rules kept from gladly-api.md:
- a customer has at most one conversation that is not CLOSED (OPEN or WAITING);
- items in a conversation are strictly ascending by timestamp;
- a merged-away customer id answers 301 with the new id; an OPEN conversation merged into the
  destination's OPEN one disappears (404, no redirect) and its items join that conversation;
  other conversations keep their ids; moved items keep their ids and take the new customerId;
- replies and notes made through the API are initiated by `{"type": "AGENT", "id": <the API
  user's agent id>}`; a reply assigns its agent when the conversation had none;
- redactions emit no event.
Choices where Gladly is silent:
- a customer message on a CLOSED conversation reopens it (CONVERSATION/REOPENED), as Gladly
  does within its reopen window;
- CUSTOMER/MERGED is emitted once per source conversation (its schema carries one
  source/destination conversation pair); a source without conversations gives one event with
  an empty sourceConversationId;
- deleting a profile deletes its conversations and items (all then 404);
- a reply must use the replied item's channel (400 `invalid` otherwise).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gladly_sync.simulator.errors import ApiError
from gladly_sync.simulator.events import CHANNEL_OF_CONTENT, EventLog
from gladly_sync.simulator.export import (
    EXPORT_FILES,
    BulkSpec,
    ExportJob,
    bulk_item_chunks,
    customer_export_row,
    encode_rows,
)
from gladly_sync.simulator.ids import IdFactory
from gladly_sync.simulator.markup import html_to_text
from gladly_sync.simulator.organization import (
    COMPANY_PHONE,
    DEFAULT_API_EMAIL,
    FACEBOOK_PAGE_ID,
    SUPPORT_ADDRESS,
)
from gladly_sync.simulator.payloads import REPLY_TYPES, VOICE_TYPES
from gladly_sync.simulator.seed import seed_world
from gladly_sync.simulator.timestamps import (
    ONE_MILLISECOND,
    canonical,
    day_start,
    format_timestamp,
    parse_timestamp,
    utc_now,
)

ITEMS_CAP = 1000
CONVERSATIONS_CAP = 100
FIND_CAP = 50
EXPORT_RETENTION = timedelta(days=14)
EXPORT_CHUNK_ITEMS = 500
MESSAGE_TYPES = REPLY_TYPES + VOICE_TYPES
CHANNEL_ALIASES = {"CHAT": "CHAT_MESSAGE", "FB_MESSENGER": "FACEBOOK_MESSAGE",
                   "FACEBOOK": "FACEBOOK_MESSAGE", "INSTAGRAM": "INSTAGRAM_DIRECT"}


@dataclass
class Quirks:
    """Deliberate departures from Gladly's own schema that its items example shows
    (gladly-openapi.yml, getConversationItems example). All on by default."""

    chat_without_message_type: bool = True      # CHAT_MESSAGE items lacking `messageType`
    string_recording_duration: bool = True      # one PHONE_CALL with recordingDuration "100"
    foreign_conversation_item: bool = True      # a list holding another conversation's item


@dataclass
class ItemRecord:
    data: dict[str, Any]
    at: datetime


@dataclass
class ConversationRecord:
    data: dict[str, Any]
    channel: str
    subject: str
    session_id: str | None
    item_ids: list[str] = field(default_factory=list)
    contacts: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.data["status"]


def _channel(value: str) -> str:
    return CHANNEL_ALIASES.get(value.upper(), value.upper())


class World:
    """A seeded Gladly org. See the module docstring for the rules it keeps."""

    def __init__(self, seed: int = 1, customers: int = 20, conversations: int = 40,
                 items_per_conversation: tuple[int, int] = (2, 8), history_days: int = 10,
                 api_email: str = DEFAULT_API_EMAIL, clock: Callable[[], datetime] | None = None,
                 quirks: Quirks | None = None, event_lateness_seconds: float = 0.0,
                 clock_offset: timedelta = timedelta()) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.api_email = api_email
        self.quirks = quirks if quirks is not None else Quirks()
        self._clock = clock or utc_now
        # Gladly's clock = the host's (`clock`) + this; its timestamps and Date header follow it.
        self.clock_offset = clock_offset
        self._rng = random.Random(seed)
        self._ids = IdFactory(self._rng)
        self._events = EventLog(random.Random(f"{seed}:events"))
        self._jobs_rng = random.Random(f"{seed}:export")
        self.organization: dict[str, Any] = {}
        self.inboxes: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.topics: dict[str, dict[str, Any]] = {}
        self.schedules: list[dict[str, Any]] = []
        self.api_agent_id = ""
        self.noperm_agent_id = ""
        self.human_agent_ids: list[str] = []
        self.custom_attribute_ids: dict[str, str] = {}
        self._customers: dict[str, dict[str, Any]] = {}
        self._merged_into: dict[str, str] = {}
        self._deleted_customers: set[str] = set()
        self._conversations: dict[str, ConversationRecord] = {}
        self._items: dict[str, ItemRecord] = {}
        self._foreign_items: dict[str, list[str]] = {}
        self._jobs: dict[str, ExportJob] = {}
        with self.lock:
            seed_world(self, random.Random(f"{seed}:seed"), customers=customers,
                       conversations=conversations, items_per_conversation=items_per_conversation,
                       history_days=history_days)
        self.event_lateness_seconds = event_lateness_seconds

    # ----------------------------------------------------------------- time and settings
    def now(self) -> datetime:
        """Gladly's clock: the host's plus `clock_offset` (a skew between host and Gladly)."""
        return self._clock() + self.clock_offset

    @property
    def event_lateness_seconds(self) -> float:
        return self._events.lateness_seconds

    @event_lateness_seconds.setter
    def event_lateness_seconds(self, value: float) -> None:
        with self.lock:
            self._events.lateness_seconds = float(value)

    def inbox_id(self, name: str) -> str:
        """The id of the inbox called `name` (inbox names are unique)."""
        return next(i for i, inbox in self.inboxes.items() if inbox["name"] == name)

    # ----------------------------------------------------------------- accessors (copies)
    def customer(self, customer_id: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(self._customers.get(customer_id))

    def customers(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self._customers.values()))

    def merged_into(self, customer_id: str) -> str | None:
        """The surviving id of a merged-away customer, else None."""
        with self.lock:
            return self._resolve_merge(customer_id) if customer_id in self._merged_into else None

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        with self.lock:
            record = self._conversations.get(conversation_id)
            return copy.deepcopy(record.data) if record else None

    def conversations(self, customer_id: str | None = None, status: str | None = None,
                      inbox_id: str | None = None) -> list[dict[str, Any]]:
        """Conversations (oldest first), optionally filtered."""
        with self.lock:
            found = [r.data for r in self._conversations.values()
                     if (customer_id is None or r.data["customerId"] == customer_id)
                     and (status is None or r.status == status)
                     and (inbox_id is None or r.data["inboxId"] == inbox_id)]
            return copy.deepcopy(sorted(found, key=lambda c: parse_timestamp(c["createdAt"])))

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        """All of the conversation's own items, ascending, uncapped (no foreign quirk item)."""
        with self.lock:
            record = self._conversations.get(conversation_id)
            if record is None:
                return []
            return [copy.deepcopy(self._items[i].data) for i in record.item_ids]

    def item(self, item_id: str) -> dict[str, Any] | None:
        with self.lock:
            record = self._items.get(item_id)
            return copy.deepcopy(record.data) if record else None

    def items_by_agent(self, conversation_id: str, agent_id: str | None = None,
                       content_type: str | None = None) -> list[dict[str, Any]]:
        """Items of the conversation initiated by the agent (default: the API user)."""
        agent_id = agent_id or self.api_agent_id
        return [item for item in self.items(conversation_id)
                if item.get("initiator") == {"type": "AGENT", "id": agent_id}
                and (content_type is None or item["content"]["type"] == content_type)]

    def events(self) -> list[dict[str, Any]]:
        """Every stored event (also those not yet visible because of lateness), oldest first."""
        with self.lock:
            return self._events.all()

    def export_jobs(self) -> list[dict[str, Any]]:
        """Every export job record, including ones past Gladly's 14-day retention."""
        with self.lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.updated)
            return [copy.deepcopy(j.data) for j in jobs]

    def snapshot(self) -> dict[str, Any]:
        """The whole org as plain data, for comparing worlds."""
        with self.lock:
            return copy.deepcopy({
                "organization": self.organization, "inboxes": self.inboxes,
                "agents": self.agents, "topics": self.topics, "customers": self._customers,
                "conversations": {k: r.data for k, r in self._conversations.items()},
                "items": {k: r.data for k, r in self._items.items()},
                "foreign_items": self._foreign_items, "events": self._events.all(),
                "jobs": [j.data for j in self._jobs.values()],
            })

    # ----------------------------------------------------------------- mutations
    def new_customer(self, name: str | None = None, email: str | None = None,
                     phone: str | None = None, **fields: Any) -> str:
        """Create a profile (CUSTOMER_PROFILE/CREATED); returns its id."""
        with self.lock:
            now = self.now()
            customer_id = self._ids.new()
            number = len(self._customers) + len(self._merged_into) + 1
            profile: dict[str, Any] = {"id": customer_id, "name": name or f"Customer {number}"}
            profile["emails"] = [{"original": email, "normalized": email.lower(), "primary": True}
                                 ] if email else []
            profile["phones"] = [{"original": phone, "normalized": phone, "regionCode": "US",
                                  "primary": True, "smsPreference": "ON", "type": "MOBILE"}
                                 ] if phone else []
            profile["customAttributes"] = {}
            profile.update(fields)
            text = format_timestamp(now, "nanos", self._rng.randrange(1000))
            profile["createdAt"] = profile["updatedAt"] = text
            self._customers[customer_id] = profile
            self._emit("CUSTOMER_PROFILE/CREATED", now, self._api_initiator(),
                       {"customerId": customer_id})
            return customer_id

    def new_conversation(self, customer_id: str, inbox_id: str, channel: str = "EMAIL",
                         text: str | None = None, subject: str | None = None) -> str:
        """A customer starts a conversation (CONVERSATION/CREATED, CONTACT/MESSAGE_RECEIVED)."""
        with self.lock:
            content_type = self._may_start_conversation(customer_id, inbox_id, channel)
            record = self._start_conversation(customer_id, inbox_id, content_type,
                                              subject or "Question about my order", self.now())
            self._inbound(record, content_type, text or "Hi, I need some help.", self.now())
            return record.data["id"]

    def new_long_conversation(self, customer_id: str, inbox_id: str, items: int,
                              channel: str = "SMS") -> str:
        """A conversation of `items` messages, customer and agent in turn, one second apart and
        ending now, each with its CONTACT/MESSAGE_* event: longer than 1000, its item list comes
        back cut (`Gladly-Limited-Data`) and only the events name the newest items."""
        with self.lock:
            content_type = self._may_start_conversation(customer_id, inbox_id, channel)
            first = self.now() - timedelta(seconds=items)
            record = self._start_conversation(customer_id, inbox_id, content_type, "A long thread",
                                              first)
            agent = self.human_agent_ids[0]
            for number in range(items):
                at = first + timedelta(seconds=number)
                if number % 2 == 0:
                    self._inbound(record, content_type, f"Customer message {number + 1}", at)
                else:
                    content = self._compose(record, content_type, f"Agent message {number + 1}",
                                            inbound=False)
                    self._agent_message(record, content, agent, at)
            return record.data["id"]

    def new_message(self, conversation_id: str, text: str | None = None,
                    channel: str | None = None) -> str:
        """The customer writes again (CONTACT/MESSAGE_RECEIVED); reopens a CLOSED conversation."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            now = self.now()
            if record.status == "CLOSED":
                self._reopen_checked(record, now, self._customer_initiator(record))
            content_type = _channel(channel) if channel else record.channel
            return self._inbound(record, content_type, text or "Any update on this?", now).data["id"]

    def agent_reply(self, conversation_id: str, text: str | None = None,
                    agent_id: str | None = None, channel: str | None = None) -> str:
        """An agent answers in the conversation's channel (CONTACT/MESSAGE_SENT), taking the
        conversation when it had no agent. Default agent: the assigned one, else a human."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            if record.status == "CLOSED":
                raise ApiError.invalid("you cannot reply to items in closed conversations")
            agent_id = agent_id or record.data.get("agentId") or self.human_agent_ids[0]
            content_type = _channel(channel) if channel else record.channel
            if content_type in VOICE_TYPES:
                raise ApiError.invalid(f"type [{content_type}] is not supported")
            content = self._compose(record, content_type, text or "Thanks, we're on it.",
                                    inbound=False)
            now = self.now()
            if not record.data.get("agentId"):
                self._assign(record, record.data["inboxId"], agent_id, "MESSAGE_OUTBOUND",
                             self._agent_initiator(agent_id), now)
            return self._agent_message(record, content, agent_id, now).data["id"]

    def add_note(self, conversation_id: str, body: str, agent_id: str | None = None) -> str:
        """An internal note (CONVERSATION/NOTE_CREATED); returns the note's item id."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            agent_id = agent_id or self.api_agent_id
            return self._note(record, body, agent_id, self.now()).data["id"]

    def move_inbox(self, conversation_id: str, inbox_id: str, agent_id: str | None = None,
                   by_agent_id: str | None = None) -> None:
        """Reassign (CONVERSATION_ASSIGNEE/UPDATED, reason MANUAL); no-op when unchanged."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            self._known_inbox(inbox_id)
            if agent_id is not None:
                self._known_agent(agent_id)
            initiator = self._agent_initiator(by_agent_id or self.human_agent_ids[0])
            self._assign(record, inbox_id, agent_id, "MANUAL", initiator, self.now())

    def close(self, conversation_id: str, agent_id: str | None = None) -> None:
        """Close (CONVERSATION/CLOSED); no-op when already closed."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            if record.status != "CLOSED":
                agent = agent_id or record.data.get("agentId") or self.human_agent_ids[0]
                self._close(record, self._agent_initiator(agent), self.now())

    def reopen(self, conversation_id: str, agent_id: str | None = None) -> None:
        """Reopen (CONVERSATION/REOPENED); no-op unless closed."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            if record.status == "CLOSED":
                agent = agent_id or record.data.get("agentId") or self.human_agent_ids[0]
                self._reopen_checked(record, self.now(), self._agent_initiator(agent))

    def set_conversation_attribute(self, conversation_id: str, key: str, value: str,
                                   agent_id: str | None = None) -> None:
        """Set a custom attribute of the conversation (CONVERSATION/CUSTOM_ATTRIBUTE_ADDED). The
        event carries `value` verbatim, so free text (U+2028 and friends too) reaches /events."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            attribute_id = self.custom_attribute_ids.setdefault(key, self._ids.new())
            attributes = [a for a in record.data["customAttributes"] if a.get("id") != attribute_id]
            record.data["customAttributes"] = [*attributes, {"id": attribute_id, "value": value}]
            agent = agent_id or record.data.get("agentId") or self.human_agent_ids[0]
            self._emit("CONVERSATION/CUSTOM_ATTRIBUTE_ADDED", self.now(), self._agent_initiator(agent), {
                "customerId": record.data["customerId"], "conversationId": conversation_id,
                "customAttributeId": attribute_id, "customAttributeKey": key,
                "customAttributeValue": value})

    def update_profile(self, customer_id: str, **fields: Any) -> None:
        """Change profile fields, API shape (CUSTOMER_PROFILE/UPDATED)."""
        with self.lock:
            profile = self._live_customer(customer_id)
            now = self.now()
            profile.update(copy.deepcopy(fields))
            profile["updatedAt"] = format_timestamp(now, "nanos", self._rng.randrange(1000))
            self._emit("CUSTOMER_PROFILE/UPDATED", now, self._api_initiator(),
                       {"customerId": customer_id})

    def merge_customers(self, source_id: str, dest_id: str) -> None:
        """Merge `source_id` into `dest_id` (CUSTOMER/MERGED per source conversation)."""
        with self.lock:
            if source_id == dest_id:
                raise ApiError.invalid("cannot merge a customer into itself")
            source = self._live_customer(source_id)
            dest = self._live_customer(dest_id)
            now = self.now()
            initiator = self._agent_initiator(self.human_agent_ids[0])
            dest_open = self._unclosed_conversation(dest_id)
            moved = [r for r in self._conversations.values()
                     if r.data["customerId"] == source_id]
            pairs = []
            for record in moved:
                if record.status != "CLOSED" and dest_open is not None:
                    self._fold_into(record, dest_open, dest_id)
                    pairs.append((record.data["id"], dest_open.data["id"]))
                else:
                    record.data["customerId"] = dest_id
                    for item_id in record.item_ids:
                        self._items[item_id].data["customerId"] = dest_id
                    pairs.append((record.data["id"], record.data["id"]))
            if not pairs:
                latest = self._latest_conversation(dest_id)
                pairs.append(("", latest.data["id"] if latest else ""))
            known = {e["normalized"] for e in dest.get("emails", []) if "normalized" in e}
            for email in source.get("emails", []):
                if email.get("normalized") not in known:
                    dest.setdefault("emails", []).append(dict(email, primary=False))
            dest["updatedAt"] = format_timestamp(now, "nanos", self._rng.randrange(1000))
            del self._customers[source_id]
            self._merged_into[source_id] = dest_id
            for source_conversation, dest_conversation in pairs:
                self._emit("CUSTOMER/MERGED", now, initiator, {
                    "sourceCustomerId": source_id, "destinationCustomerId": dest_id,
                    "sourceConversationId": source_conversation,
                    "destinationConversationId": dest_conversation})

    def delete_profile(self, customer_id: str, still_serve_conversations: bool = False) -> None:
        """Delete the profile with its conversations and items (CUSTOMER_PROFILE/DELETED).

        `still_serve_conversations` is the fault where Gladly's erasure lags: the profile is gone
        (404) but its conversations and items are still served, and still change."""
        with self.lock:
            self._live_customer(customer_id)
            for record in [r for r in self._conversations.values()
                           if r.data["customerId"] == customer_id and not still_serve_conversations]:
                self._drop_conversation(record)
            del self._customers[customer_id]
            self._deleted_customers.add(customer_id)
            self._emit("CUSTOMER_PROFILE/DELETED", self.now(), self._api_initiator(),
                       {"customerId": customer_id})

    def redact_item(self, item_id: str) -> None:
        """Empty the item's content in place; Gladly emits no event for this."""
        with self.lock:
            record = self._items.get(item_id)
            if record is None:
                raise ApiError.not_exist(f"conversation item [{item_id}] does not exist")
            content = record.data["content"]
            kind = content["type"]
            if kind in ("CONVERSATION_STATUS_CHANGE", "TOPIC_CHANGE"):
                raise ApiError.invalid(f"type [{kind}] cannot be redacted")
            for key in ("content", "subject", "body"):
                if key in content:
                    content[key] = ""
            if "attachments" in content:
                content["attachments"] = []
            if kind in VOICE_TYPES:
                content.pop("recordingUrl", None)
                content.pop("recordingSummary", None)
                content["recordingStatus"] = "DELETED"

    # ----------------------------------------------------------------- API operations
    def api_customer(self, customer_id: str) -> dict[str, Any]:
        with self.lock:
            if customer_id in self._merged_into:
                new = self._resolve_merge(customer_id)
                if new in self._customers:
                    raise ApiError.moved(customer_id, new, f"/api/v1/customer-profiles/{new}")
            profile = self._customers.get(customer_id)
            if profile is None:
                raise ApiError.not_exist_single(f"customer profile [{customer_id}] does not exist")
            return copy.deepcopy(profile)

    def api_find_customers(self, field_name: str, value: str) -> list[dict[str, Any]]:
        """Profiles matching one identifier, most recently updated first, at most 50."""
        with self.lock:
            if field_name == "email":
                wanted = value.strip().lower()
                found = [p for p in self._customers.values()
                         if any(e.get("normalized", e["original"].lower()) == wanted
                                for e in p.get("emails", []))]
            elif field_name == "phoneNumber":
                wanted = "".join(ch for ch in value if ch.isdigit() or ch == "+")
                found = [p for p in self._customers.values()
                         if any(ph.get("normalized") == wanted for ph in p.get("phones", []))]
            else:
                found = [p for p in self._customers.values()
                         if p.get("externalCustomerId") == value]
            order = {customer_id: n for n, customer_id in enumerate(self._customers)}
            found.sort(key=lambda p: (parse_timestamp(p["updatedAt"]), order[p["id"]]),
                       reverse=True)
            return copy.deepcopy(found[:FIND_CAP])

    def api_customer_conversations(self, customer_id: str) -> tuple[list[dict[str, Any]], bool]:
        """(oldest-first conversations, truncated?) for the customer."""
        with self.lock:
            self.api_customer(customer_id)
            found = self.conversations(customer_id=customer_id)
            return found[:CONVERSATIONS_CAP], len(found) > CONVERSATIONS_CAP

    def api_conversation(self, conversation_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._live_conversation(conversation_id).data)

    def api_items(self, conversation_id: str,
                  session_id: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """(the first 1000 items ascending by timestamp, truncated?)."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            ids = record.item_ids + [i for i in self._foreign_items.get(conversation_id, [])
                                     if i in self._items]
            records = sorted((self._items[i] for i in ids), key=lambda r: r.at)
            if session_id is not None:
                records = [r for r in records if r.data.get("sessionId") == session_id]
            page = [copy.deepcopy(r.data) for r in records[:ITEMS_CAP]]
            return page, len(records) > ITEMS_CAP

    def api_item(self, item_id: str) -> dict[str, Any]:
        with self.lock:
            record = self._items.get(item_id)
            if record is None:
                raise ApiError.not_exist(f"conversation item [{item_id}] does not exist")
            return copy.deepcopy(record.data)

    def api_note(self, conversation_id: str, note_id: str) -> dict[str, Any]:
        with self.lock:
            self._live_conversation(conversation_id)
            record = self._items.get(note_id)
            if (record is None or record.data.get("conversationId") != conversation_id
                    or record.data["content"]["type"] != "CONVERSATION_NOTE"):
                raise ApiError.not_exist(f"note [{note_id}] does not exist")
            return copy.deepcopy(record.data)

    def reply_to_item(self, item_id: str, content: dict[str, Any], agent_id: str) -> str:
        """The reply endpoint's domain checks and effects; `content` is already well-formed."""
        with self.lock:
            item = self._items.get(item_id)
            record = self._conversations.get(item.data.get("conversationId", "")) if item else None
            if item is None or record is None:
                raise ApiError.not_exist(f"conversation item [{item_id}] does not exist")
            item_type = item.data["content"]["type"]
            if record.status == "CLOSED":
                raise ApiError.invalid("you cannot reply to items in closed conversations")
            if item_type in VOICE_TYPES:
                raise ApiError.invalid(f"type [{item_type}] is not supported")
            if item.data.get("initiator", {}).get("type") != "CUSTOMER" or item_type not in REPLY_TYPES:
                raise ApiError.invalid("you can only reply to customer messages")
            if content["type"] != item_type:
                # Not documented by Gladly: the simulator only replies in the item's own channel.
                raise ApiError.invalid(f"type [{content['type']}] does not match the channel "
                                       f"of the item [{item_type}]", "content.type")
            text = content.get("bodyPlain") if content["type"] == "EMAIL" else None
            if text is None:
                text = html_to_text(content["body"]) if content["type"] == "EMAIL" else content["body"]
            composed = self._compose(record, item_type, text, inbound=False, reply_to=item.data)
            if item_type == "CHAT_MESSAGE":
                composed["messageType"] = content.get("messageType", "TEXT")
                if "messageData" in content:
                    composed["messageData"] = copy.deepcopy(content["messageData"])
            now = self.now()
            if not record.data.get("agentId"):
                self._assign(record, record.data["inboxId"], agent_id, "MESSAGE_OUTBOUND",
                             self._agent_initiator(agent_id), now)
            return self._agent_message(record, composed, agent_id, now).data["id"]

    def patch_conversation(self, conversation_id: str, assignee: dict[str, Any] | None,
                           status: dict[str, Any] | None, agent_id: str) -> None:
        """PATCH /conversations/{id} with a well-formed (assignee, status)."""
        with self.lock:
            record = self._live_conversation(conversation_id)
            if assignee is not None:
                if assignee["inboxId"] not in self.inboxes:
                    raise ApiError.invalid(f"inbox [{assignee['inboxId']}] does not exist",
                                           "assignee.inboxId")
                if assignee["agentId"] is not None and assignee["agentId"] not in self.agents:
                    raise ApiError.invalid(f"agent [{assignee['agentId']}] does not exist",
                                           "assignee.agentId")
            data = record.data
            closed = record.status == "CLOSED"
            wants = status["value"] if status else None
            reassign = assignee is not None and (assignee["inboxId"] != data["inboxId"]
                                                 or assignee["agentId"] != data.get("agentId"))
            if closed and reassign and wants != "OPEN":
                raise ApiError.invalid_state("closed conversation cannot be reassigned")
            if wants == "CLOSED" and not closed and not status["force"] \
                    and self._customer_waiting(record):
                raise ApiError.invalid_state("cannot close conversation, customer waiting for "
                                             "response, set 'status.force' to true to override")
            now = self.now()
            initiator = self._agent_initiator(agent_id)
            if wants == "OPEN" and closed:
                self._reopen_checked(record, now, initiator)
            elif wants == "OPEN" and record.status == "WAITING":
                data["status"] = "OPEN"
            if reassign:
                self._assign(record, assignee["inboxId"], assignee["agentId"], "MANUAL",
                             initiator, now)
            if wants == "CLOSED" and not closed:
                self._close(record, initiator, now)

    def api_events(self, start: datetime, end: datetime, entities: list[str]) -> list[dict]:
        with self.lock:
            return self._events.query(start, end, entities, self.now())

    def api_export_jobs(self, status: str | None, start: datetime | None,
                        end: datetime | None) -> list[dict[str, Any]]:
        """Jobs whose updatedAt is in [start, end] (default: the last 14 days)."""
        with self.lock:
            now = self.now()
            start = max(start or now - EXPORT_RETENTION, now - EXPORT_RETENTION)
            end = min(end or now, now)
            jobs = sorted((j for j in self._jobs.values() if start <= j.updated <= end
                           and (status is None or j.data["status"] == status)),
                          key=lambda j: j.updated)
            return [copy.deepcopy(j.data) for j in jobs]

    def api_export_job(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._retained_job(job_id).data)

    def export_file(self, job_id: str, filename: str) -> Iterator[bytes]:
        """The file's ndjson as a lazy sequence of byte chunks; raises 404 when missing."""
        with self.lock:
            job = self._retained_job(job_id)
            if filename not in job.data["files"]:
                raise ApiError.not_exist(f"file [{filename}] does not exist for job [{job_id}]")
            if filename == "agents.jsonl":
                return encode_rows([{k: a[k] for k in ("id", "name", "emailAddress")}
                                    for a in self.agents.values()])
            if filename == "topics.jsonl":
                return encode_rows(copy.deepcopy(list(self.topics.values())))
            if job.bulk is not None:
                if filename == "customers.jsonl":
                    return encode_rows([customer_export_row(self._customers[c])
                                        for c in job.bulk.customer_ids if c in self._customers])
                return bulk_item_chunks(job.bulk)
            ids = [i for i, r in sorted(self._items.items(), key=lambda kv: kv[1].at)
                   if job.start <= r.at < job.end]
            if filename == "customers.jsonl":
                customer_ids = dict.fromkeys(self._items[i].data["customerId"] for i in ids)
                return encode_rows([customer_export_row(self._customers[c])
                                    for c in customer_ids if c in self._customers])
            return self._item_chunks(ids)

    def create_export_job(self, start_at: datetime | str, end_at: datetime | str) -> dict[str, Any]:
        """A COMPLETED CONVERSATIONS job over [start_at, end_at), updatedAt now."""
        with self.lock:
            start = parse_timestamp(start_at) if isinstance(start_at, str) else start_at
            end = parse_timestamp(end_at) if isinstance(end_at, str) else end_at
            return copy.deepcopy(self._add_job(start, end, self.now()).data)

    def create_bulk_export_job(self, items: int = 1_000_000, conversations: int = 20,
                               start_at: datetime | None = None,
                               end_at: datetime | None = None) -> dict[str, Any]:
        """A COMPLETED job whose conversation_items.jsonl holds `items` synthetic lines,
        generated lazily, spread over `conversations` new CLOSED conversations that exist
        in the world (so clients can GET them for their inbox)."""
        if conversations < 1 or items < 0:
            raise ValueError("a bulk export needs at least one conversation and items >= 0")
        with self.lock:
            now = self.now()
            start = start_at or day_start(now) - timedelta(days=2)
            end = end_at or start + timedelta(days=1)
            inboxes = list(self.inboxes)
            pairs = []
            step = (end - start) / max(conversations, 1)
            for index in range(conversations):
                customer_id = self._ids.new()
                self._customers[customer_id] = {
                    "id": customer_id, "name": f"Bulk Customer {index + 1}",
                    "emails": [{"original": f"bulk.customer{index + 1}@example.com",
                                "normalized": f"bulk.customer{index + 1}@example.com",
                                "primary": True}],
                    "phones": [], "customAttributes": {},
                    "createdAt": format_timestamp(start - timedelta(days=30)),
                    "updatedAt": format_timestamp(start - timedelta(days=30))}
                at = start + step * index
                record = self._start_conversation(customer_id, inboxes[index % len(inboxes)],
                                                  "EMAIL", "Bulk history", at)
                content = self._compose(record, "EMAIL", "Historic message.", inbound=True)
                self._customer_message(record, content, at)
                agent = self.human_agent_ids[index % len(self.human_agent_ids)]
                self._close(record, self._agent_initiator(agent), at + timedelta(seconds=1))
                pairs.append((record.data["id"], customer_id))
            job = self._add_job(start, end, now)
            job.bulk = BulkSpec(seed=f"{self.seed}:bulk:{job.data['id']}", items=items,
                                conversations=pairs, agent_ids=list(self.human_agent_ids),
                                start=job.start, end=job.end)
            return copy.deepcopy(job.data)

    # ----------------------------------------------------------------- internals
    def _emit(self, type_: str, at: datetime, initiator: dict[str, str],
              content: dict[str, Any], late: bool = True) -> None:
        self._events.emit(type_, at, initiator, content, now=self.now(), late=late)

    def _api_initiator(self) -> dict[str, str]:
        return {"id": self.api_agent_id, "type": "AGENT"}

    @staticmethod
    def _agent_initiator(agent_id: str) -> dict[str, str]:
        return {"id": agent_id, "type": "AGENT"}

    @staticmethod
    def _customer_initiator(record: ConversationRecord) -> dict[str, str]:
        return {"id": record.data["customerId"], "type": "CUSTOMER"}

    def _resolve_merge(self, customer_id: str) -> str:
        while customer_id in self._merged_into:
            customer_id = self._merged_into[customer_id]
        return customer_id

    def _live_customer(self, customer_id: str) -> dict[str, Any]:
        profile = self._customers.get(customer_id)
        if profile is None:
            raise ApiError.not_exist_single(f"customer profile [{customer_id}] does not exist")
        return profile

    def _may_start_conversation(self, customer_id: str, inbox_id: str, channel: str) -> str:
        """Gladly's checks before a customer starts a conversation; returns its content type."""
        self._live_customer(customer_id)
        self._known_inbox(inbox_id)
        if self._unclosed_conversation(customer_id):
            raise ApiError.invalid_state("customer already has an open conversation")
        return _channel(channel)

    def _live_conversation(self, conversation_id: str) -> ConversationRecord:
        record = self._conversations.get(conversation_id)
        if record is None:
            raise ApiError.not_exist("conversation does not exist")
        return record

    def _known_inbox(self, inbox_id: str) -> None:
        if inbox_id not in self.inboxes:
            raise ApiError.invalid(f"inbox [{inbox_id}] does not exist", "inboxId")

    def _known_agent(self, agent_id: str) -> None:
        if agent_id not in self.agents:
            raise ApiError.invalid(f"agent [{agent_id}] does not exist", "agentId")

    def _unclosed_conversation(self, customer_id: str) -> ConversationRecord | None:
        return next((r for r in self._conversations.values()
                     if r.data["customerId"] == customer_id and r.status != "CLOSED"), None)

    def _latest_conversation(self, customer_id: str) -> ConversationRecord | None:
        mine = [r for r in self._conversations.values() if r.data["customerId"] == customer_id]
        return max(mine, key=lambda r: parse_timestamp(r.data["createdAt"]), default=None)

    def _retained_job(self, job_id: str) -> ExportJob:
        job = self._jobs.get(job_id)
        if job is None or job.updated < self.now() - EXPORT_RETENTION:
            raise ApiError.not_exist(f"export job [{job_id}] does not exist")
        return job

    def _add_job(self, start: datetime, end: datetime, updated: datetime) -> ExportJob:
        rng = self._jobs_rng
        job_id = IdFactory(rng).new()
        updated, updated_text = canonical(updated, "nanos", rng.randrange(1000))
        # The window is what parameters say, to the millisecond: files and clients agree on it.
        start, start_text = canonical(start, "millis" if start.microsecond else "seconds")
        end, end_text = canonical(end, "millis" if end.microsecond else "seconds")
        data = {"id": job_id, "scheduleId": self.schedules[0]["id"], "status": "COMPLETED",
                "updatedAt": updated_text,
                "parameters": {"type": "CONVERSATIONS", "startAt": start_text, "endAt": end_text},
                "files": list(EXPORT_FILES)}
        job = ExportJob(data=data, start=start, end=end, updated=updated)
        self._jobs[job_id] = job
        return job

    def _item_chunks(self, ids: list[str]) -> Iterator[bytes]:
        for offset in range(0, len(ids), EXPORT_CHUNK_ITEMS):
            with self.lock:
                lines = [json.dumps(self._items[i].data, separators=(",", ":")) + "\n"
                         for i in ids[offset:offset + EXPORT_CHUNK_ITEMS] if i in self._items]
            yield "".join(lines).encode("utf-8")

    def _assignee(self, record: ConversationRecord) -> dict[str, str]:
        assignee = {"inboxId": record.data["inboxId"]}
        if record.data.get("agentId"):
            assignee["agentId"] = record.data["agentId"]
        return assignee

    def _contact_id(self, record: ConversationRecord, channel: str) -> str:
        if channel not in record.contacts:
            record.contacts[channel] = self._ids.new()
        return record.contacts[channel]

    def _customer_waiting(self, record: ConversationRecord) -> bool:
        for item_id in reversed(record.item_ids):
            data = self._items[item_id].data
            if data["content"]["type"] in MESSAGE_TYPES:
                return data.get("initiator", {}).get("type") == "CUSTOMER"
        return False

    def _start_conversation(self, customer_id: str, inbox_id: str, channel: str, subject: str,
                            at: datetime, style: str = "millis") -> ConversationRecord:
        conversation_id = self._ids.new()
        session = self._ids.new() if channel == "CHAT_MESSAGE" else None
        data = {"id": conversation_id, "customerId": customer_id, "inboxId": inbox_id,
                "status": "OPEN", "topicIds": [], "customAttributes": [],
                "createdAt": format_timestamp(at, style)}
        record = ConversationRecord(data=data, channel=channel, subject=subject, session_id=session)
        self._contact_id(record, CHANNEL_OF_CONTENT.get(channel, channel))
        self._conversations[conversation_id] = record
        return record

    def _compose(self, record: ConversationRecord, content_type: str, text: str, *,
                 inbound: bool, reply_to: dict[str, Any] | None = None) -> dict[str, Any]:
        """Message content of `content_type` between the customer and the company."""
        profile = self._customers.get(record.data["customerId"], {})
        email = next((e["original"] for e in profile.get("emails", []) if e.get("primary")),
                     next((e["original"] for e in profile.get("emails", [])), "unknown@example.com"))
        phone = next((p["normalized"] for p in profile.get("phones", []) if "normalized" in p),
                     "+14155550199")
        if content_type == "EMAIL":
            subject = record.subject
            if reply_to is not None:
                subject = reply_to["content"].get("subject") or subject
                email = reply_to["content"].get("from") or email
            if not inbound and not subject.lower().startswith("re:"):
                subject = f"Re: {subject}"
            sender, receiver = (email, SUPPORT_ADDRESS) if inbound else (SUPPORT_ADDRESS, email)
            return {"type": "EMAIL", "from": sender, "to": [receiver], "subject": subject,
                    "content": text}
        if content_type == "CHAT_MESSAGE":
            if record.session_id is None:
                record.session_id = self._ids.new()
            return {"type": "CHAT_MESSAGE", "messageType": "TEXT",
                    "sessionId": record.session_id, "content": text}
        if content_type == "SMS":
            sender, receiver = (phone, COMPANY_PHONE) if inbound else (COMPANY_PHONE, phone)
            return {"type": "SMS", "from": sender, "to": receiver, "content": text}
        if content_type == "FACEBOOK_MESSAGE":
            user = str(int(hashlib.sha256(record.data["customerId"].encode()).hexdigest()[:13], 16))
            return {"type": "FACEBOOK_MESSAGE", "pageId": FACEBOOK_PAGE_ID, "userId": user,
                    "content": text}
        if content_type in ("WHATSAPP", "INSTAGRAM_DIRECT", "TWITTER"):
            return {"type": content_type, "content": text}
        raise ApiError.invalid(f"type [{content_type}] is not supported")

    def _inbound(self, record: ConversationRecord, content_type: str, text: str,
                 at: datetime) -> ItemRecord:
        """A customer message; for voice channels a call or voicemail whose summary is `text`."""
        if content_type in VOICE_TYPES:
            return self._customer_call(record, content_type, at, duration=60, summary=text)
        return self._customer_message(record, self._compose(record, content_type, text,
                                                            inbound=True), at)

    def _customer_call(self, record: ConversationRecord, content_type: str, at: datetime,
                       duration: int, summary: str | None = None, answer_after: float = 8.0,
                       style: str = "millis") -> ItemRecord:
        """An inbound PHONE_CALL (answered by an agent) or VOICEMAIL with a recording."""
        content: dict[str, Any] = {"type": content_type}
        if content_type == "PHONE_CALL":
            profile = self._customers.get(record.data["customerId"], {})
            phones = [p["normalized"] for p in profile.get("phones", []) if "normalized" in p]
            content.update({"from": phones[0] if phones else "+14155550199", "to": COMPANY_PHONE})
        item = self._customer_message(record, content, at, style)
        content["startedAt"] = item.data["timestamp"]
        if content_type == "PHONE_CALL":
            content["answeredAt"] = format_timestamp(item.at + timedelta(seconds=answer_after))
            content["completedAt"] = format_timestamp(item.at + timedelta(seconds=duration + 45))
        content["recordingStatus"] = "AVAILABLE"
        content["recordingUrl"] = f"/api/v1/conversation-items/{item.data['id']}/media/recording"
        content["recordingDuration"] = duration
        if summary is not None:
            content["recordingSummary"] = {"status": "READY", "summary": summary, "language": "en"}
        return item

    def _insert_item(self, record: ConversationRecord, content: dict[str, Any],
                     initiator: dict[str, str], responder: dict[str, str] | None,
                     at: datetime, style: str = "millis") -> ItemRecord:
        if record.item_ids:
            last = self._items[record.item_ids[-1]].at
            if at <= last:
                at = last + ONE_MILLISECOND
        moment, text = canonical(at, style, self._rng.randrange(1000))
        if record.item_ids and moment <= self._items[record.item_ids[-1]].at:
            moment, text = canonical(self._items[record.item_ids[-1]].at + ONE_MILLISECOND)
        item_id = self._ids.new()
        data: dict[str, Any] = {"id": item_id, "conversationId": record.data["id"],
                                "customerId": record.data["customerId"]}
        if "sessionId" in content:
            data["sessionId"] = content["sessionId"]
        data["timestamp"] = text
        data["initiator"] = initiator
        if responder is not None:
            data["responder"] = responder
        data["content"] = content
        item = ItemRecord(data=data, at=moment)
        self._items[item_id] = item
        record.item_ids.append(item_id)
        if len(record.item_ids) == 1:
            record.data["createdAt"] = text
        return item

    def _customer_message(self, record: ConversationRecord, content: dict[str, Any],
                          at: datetime, style: str = "millis") -> ItemRecord:
        first = not record.item_ids
        agent = record.data.get("agentId")
        responder = {"id": agent, "type": "AGENT"} if agent else None
        item = self._insert_item(record, content, self._customer_initiator(record), responder,
                                 at, style)
        if record.status == "WAITING":
            record.data["status"] = "OPEN"
        base = {"customerId": record.data["customerId"], "conversationId": record.data["id"]}
        if first:
            self._emit("CONVERSATION/CREATED", item.at, self._customer_initiator(record),
                       dict(base, context={"assignee": self._assignee(record)}))
        channel = CHANNEL_OF_CONTENT.get(content["type"])
        if channel is not None:
            self._emit("CONTACT/MESSAGE_RECEIVED", item.at, self._customer_initiator(record), {
                "channel": channel, "contactId": self._contact_id(record, channel),
                **base, "messageId": item.data["id"],
                "context": {"assignee": self._assignee(record)}})
        return item

    def _agent_message(self, record: ConversationRecord, content: dict[str, Any],
                       agent_id: str, at: datetime, style: str = "millis") -> ItemRecord:
        customer = {"id": record.data["customerId"], "type": "CUSTOMER"}
        item = self._insert_item(record, content, self._agent_initiator(agent_id), customer,
                                 at, style)
        channel = CHANNEL_OF_CONTENT.get(content["type"])
        if channel is not None and channel != "VOICEMAIL":
            self._emit("CONTACT/MESSAGE_SENT", item.at, self._agent_initiator(agent_id), {
                "channel": channel, "contactId": self._contact_id(record, channel),
                "conversationId": record.data["id"], "customerId": record.data["customerId"],
                "messageId": item.data["id"], "context": {"assignee": self._assignee(record)}})
        return item

    def _note(self, record: ConversationRecord, body: str, agent_id: str, at: datetime,
              style: str = "millis") -> ItemRecord:
        item = self._insert_item(record, {"type": "CONVERSATION_NOTE", "body": body},
                                 self._agent_initiator(agent_id), None, at, style)
        self._emit("CONVERSATION/NOTE_CREATED", item.at, self._agent_initiator(agent_id), {
            "noteId": item.data["id"], "customerId": record.data["customerId"],
            "conversationId": record.data["id"]})
        return item

    def _topic(self, record: ConversationRecord, topic_id: str, agent_id: str, at: datetime,
               style: str = "millis") -> ItemRecord:
        item = self._insert_item(record, {"type": "TOPIC_CHANGE", "addedTopicIds": [topic_id]},
                                 self._agent_initiator(agent_id), None, at, style)
        if topic_id not in record.data["topicIds"]:
            record.data["topicIds"].append(topic_id)
        self._emit("CONVERSATION/TOPIC_ADDED", item.at, self._agent_initiator(agent_id), {
            "customerId": record.data["customerId"], "conversationId": record.data["id"],
            "topicId": topic_id, "context": {"assignee": self._assignee(record)}})
        return item

    def _assign(self, record: ConversationRecord, inbox_id: str, agent_id: str | None,
                reason: str, initiator: dict[str, str], at: datetime) -> None:
        previous = self._assignee(record)
        if previous.get("agentId") == agent_id and previous["inboxId"] == inbox_id:
            return
        record.data["inboxId"] = inbox_id
        if agent_id:
            record.data["agentId"] = agent_id
        else:
            record.data.pop("agentId", None)
        self._emit("CONVERSATION_ASSIGNEE/UPDATED", at, initiator, {
            "customerId": record.data["customerId"], "conversationId": record.data["id"],
            "reason": reason, "assignee": self._assignee(record),
            "context": {"assignee": previous}})

    def _close(self, record: ConversationRecord, initiator: dict[str, str], at: datetime,
               style: str = "millis") -> None:
        item = self._insert_item(record, {"type": "CONVERSATION_STATUS_CHANGE", "status": "CLOSED"},
                                 initiator, None, at, style)
        record.data["status"] = "CLOSED"
        record.data["closedAt"] = item.data["timestamp"]
        self._emit("CONVERSATION/CLOSED", item.at, initiator, {
            "customerId": record.data["customerId"], "conversationId": record.data["id"],
            "context": {"assignee": self._assignee(record)}})

    def _reopen_checked(self, record: ConversationRecord, at: datetime,
                        initiator: dict[str, str]) -> None:
        other = self._unclosed_conversation(record.data["customerId"])
        if other is not None and other is not record:
            raise ApiError.invalid_state("customer already has an open conversation")
        item = self._insert_item(record, {"type": "CONVERSATION_STATUS_CHANGE", "status": "OPEN"},
                                 initiator, None, at)
        record.data["status"] = "OPEN"
        record.data.pop("closedAt", None)
        self._emit("CONVERSATION/REOPENED", item.at, initiator, {
            "customerId": record.data["customerId"], "conversationId": record.data["id"],
            "context": {"assignee": self._assignee(record)}})

    def _fold_into(self, source: ConversationRecord, dest: ConversationRecord,
                   dest_customer: str) -> None:
        """An OPEN conversation merged into another OPEN one: its items move, its id is gone."""
        for item_id in source.item_ids:
            data = self._items[item_id].data
            data["conversationId"] = dest.data["id"]
            data["customerId"] = dest_customer
        dest.item_ids = sorted(dest.item_ids + source.item_ids, key=lambda i: self._items[i].at)
        for topic_id in source.data["topicIds"]:
            if topic_id not in dest.data["topicIds"]:
                dest.data["topicIds"].append(topic_id)
        del self._conversations[source.data["id"]]
        self._foreign_items.pop(source.data["id"], None)

    def _drop_conversation(self, record: ConversationRecord) -> None:
        for item_id in record.item_ids:
            del self._items[item_id]
        del self._conversations[record.data["id"]]
        self._foreign_items.pop(record.data["id"], None)
