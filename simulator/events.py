"""The Events API's store: Gladly's 24 h feed of what happened, in timestamp order.

Each event keeps its own timestamp and a `visible_at` time: with `lateness_seconds` set, a new
event only shows up in `GET /events` after that delay while still carrying its original
timestamp (Gladly documents up to 15 s), which is what makes a cursor overlap necessary.
"""

from __future__ import annotations

import bisect
import copy
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gladly_sync.simulator.ids import IdFactory
from gladly_sync.simulator.timestamps import canonical

RETENTION = timedelta(hours=24)

# Which event types each `entities` value returns. Gladly does not spell this out
# (gladly-api.md §6.1); this is the documented guess the product is built against.
ENTITY_PREFIXES: dict[str, tuple[str, ...]] = {
    "CONVERSATION": ("CONVERSATION/", "CONVERSATION_ASSIGNEE/"),
    "CONTACT": ("CONTACT/",),
    "CUSTOMER": ("CUSTOMER/",),
    "CUSTOMER_PROFILE": ("CUSTOMER_PROFILE/",),
    "AGENT_AVAILABILITY": ("AGENT_AVAILABILITY/",),
    "AGENT_STATUS": ("AGENT_STATUS/",),
    "PAYMENT_REQUEST": ("PAYMENT_REQUEST/",),
    "TASK": ("TASK/",),
}

# Item content.type -> the `channel` of CONTACT/MESSAGE_* events (the webhook schemas' enum).
CHANNEL_OF_CONTENT = {
    "EMAIL": "EMAIL",
    "CHAT_MESSAGE": "CHAT",
    "SMS": "SMS",
    "WHATSAPP": "WHATSAPP",
    "FACEBOOK_MESSAGE": "FB_MESSENGER",
    "INSTAGRAM_DIRECT": "INSTAGRAM_DIRECT",
    "VOICEMAIL": "VOICEMAIL",
}


@dataclass(order=True)
class EventRecord:
    at: datetime
    seq: int
    visible_at: datetime = field(compare=False)
    data: dict[str, Any] = field(compare=False)


class EventLog:
    """Append-only, timestamp-ordered events with lateness and 24 h retention."""

    def __init__(self, rng: random.Random) -> None:
        self._ids = IdFactory(rng)
        self._rng = rng
        self._records: list[EventRecord] = []
        self._seq = 0
        self._latest: tuple[datetime, datetime] | None = None   # (instant, as written)
        self.lateness_seconds = 0.0

    def emit(self, type_: str, at: datetime, initiator: dict[str, str],
             content: dict[str, Any], *, now: datetime, late: bool = True) -> dict[str, Any]:
        """Record an event at `at`; dropped when already past retention at `now`."""
        # Millisecond precision at least: clients (and Estuary's connector) rely on it.
        style = self._rng.choice(("millis", "millis", "millis", "nanos"))
        moment, text = canonical(at, style, self._rng.randrange(1000))
        if self._latest is not None and at >= self._latest[0]:
            if moment < self._latest[1]:
                # Fewer digits must not put an event before one emitted earlier.
                moment, text = canonical(self._latest[1], "nanos", self._rng.randrange(1000))
            self._latest = (at, moment)
        elif self._latest is None:
            self._latest = (at, moment)
        data = {"id": self._ids.new(), "type": type_, "timestamp": text,
                "initiator": dict(initiator), "content": content}
        if moment <= now - RETENTION:
            return data
        delay = timedelta(seconds=self.lateness_seconds if late else 0.0)
        self._seq += 1
        bisect.insort(self._records, EventRecord(moment, self._seq, moment + delay, data))
        return data

    def query(self, start: datetime, end: datetime, entities: Iterable[str],
              now: datetime) -> list[dict[str, Any]]:
        """Visible events with start <= timestamp < end of the given entity families."""
        self.prune(now)
        prefixes = tuple(p for entity in entities for p in ENTITY_PREFIXES[entity])
        return [copy.deepcopy(r.data) for r in self._records
                if start <= r.at < end and r.visible_at <= now
                and r.data["type"].startswith(prefixes)]

    def prune(self, now: datetime) -> None:
        cutoff = now - RETENTION
        keep = 0
        while keep < len(self._records) and self._records[keep].at <= cutoff:
            keep += 1
        del self._records[:keep]

    def all(self) -> list[dict[str, Any]]:
        """Every stored event, visible yet or not, oldest first."""
        return [copy.deepcopy(r.data) for r in self._records]
