"""Deterministic seed data: the same seed and sizes give the same org, ids and texts.

History is laid out relative to the world's clock: conversations spread over `history_days`,
some active in the last 24 h so the Events API has something to say, one OPEN-or-WAITING
conversation at most per customer, items strictly ascending. Events are emitted for seeded
activity that falls inside Gladly's 24 h events window. Daily export jobs cover the history.
Two days back, around the org's local midnight, sit the conversations every support metric needs
(an unanswered one, and one reopened in a second channel): see `_analyst_cases`.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gladly_sync.simulator import lexicon
from gladly_sync.simulator.ids import IdFactory
from gladly_sync.simulator.organization import DOMAIN, GLADLY_URL, NOPERM_EMAIL
from gladly_sync.simulator.timestamps import STYLES, canonical, day_start, format_timestamp

if TYPE_CHECKING:
    from gladly_sync.simulator.world import ConversationRecord, World

INBOX_NAMES = ("Email Support", "Chat Support", "SMS", "Voice", "Escalations")
HUMAN_AGENTS = (("Amy Agent", "amy.agent"), ("Ben Ortiz", "ben.ortiz"),
                ("Carla Jensen", "carla.jensen"), ("Dev Raman", "dev.raman"))
CHANNEL_INBOX = {"EMAIL": "Email Support", "CHAT_MESSAGE": "Chat Support",
                 "FACEBOOK_MESSAGE": "Chat Support", "INSTAGRAM_DIRECT": "Chat Support",
                 "SMS": "SMS", "WHATSAPP": "SMS", "PHONE_CALL": "Voice"}
CHANNEL_WEIGHTS = {"EMAIL": 35, "CHAT_MESSAGE": 25, "SMS": 12, "WHATSAPP": 6,
                   "FACEBOOK_MESSAGE": 5, "INSTAGRAM_DIRECT": 5, "PHONE_CALL": 12}
FIRST_CHANNELS = ("EMAIL", "CHAT_MESSAGE", "PHONE_CALL", "SMS")
PHONE_CHANNELS = ("SMS", "WHATSAPP", "PHONE_CALL")
STYLE_WEIGHTS = (2, 5, 2, 1)     # centis, millis, nanos, seconds
AREA_CODES = ("415", "212", "503", "737", "720", "608")
MIN_GAP_SECONDS = 2.0
EXPORT_DELAY = timedelta(minutes=40)


def seed_world(world: World, rng: random.Random, *, customers: int, conversations: int,
               items_per_conversation: tuple[int, int], history_days: int) -> None:
    """Fill an empty world. Called once by World.__init__ with the lock held."""
    now = world.now()
    ids = IdFactory(rng)
    _reference_data(world, ids, now)
    profiles = [_profile(world, rng, ids, index, now, history_days) for index in range(customers)]
    counts = [0] * len(profiles)
    for number in range(conversations if profiles else 0):
        counts[number if number < len(profiles) else rng.randrange(len(profiles))] += 1
    number = 0
    for profile, count in zip(profiles, counts, strict=True):
        for index in range(count):
            channel = FIRST_CHANNELS[number] if number < len(FIRST_CHANNELS) else rng.choices(
                list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values()))[0]
            if channel in PHONE_CHANNELS and not profile["phones"]:
                channel = "EMAIL"
            _conversation(world, rng, profile, channel, index, count, now, history_days,
                          items_per_conversation)
            number += 1
    _apply_quirks(world)
    _analyst_cases(world, now, history_days)
    _daily_jobs(world, now, history_days)


def _style(rng: random.Random) -> str:
    return rng.choices(STYLES, STYLE_WEIGHTS)[0]


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain if ch.isalnum())


def _reference_data(world: World, ids: IdFactory, now: datetime) -> None:
    world.organization = {"id": ids.new(), "loginDomain": DOMAIN, "name": "Demo Outfitters",
                          "timezone": "America/Los_Angeles", "gladlyUrl": GLADLY_URL}
    for name in INBOX_NAMES:
        inbox_id = ids.new()
        world.inboxes[inbox_id] = {"id": inbox_id, "name": name, "disabled": False}
    world.api_agent_id = ids.new()
    world.agents[world.api_agent_id] = {"id": world.api_agent_id, "name": "API User",
                                        "emailAddress": world.api_email}
    for name, local in HUMAN_AGENTS:
        agent_id = ids.new()
        world.agents[agent_id] = {"id": agent_id, "name": name,
                                  "emailAddress": f"{local}@{DOMAIN}"}
        world.human_agent_ids.append(agent_id)
    world.noperm_agent_id = ids.new()
    world.agents[world.noperm_agent_id] = {"id": world.noperm_agent_id, "name": "Reporting Bot",
                                           "emailAddress": NOPERM_EMAIL}
    parent = ids.new()
    topics = [(parent, "Order Return", False, None), (ids.new(), "Damaged Merchandise", False, parent),
              (ids.new(), "Shipping Delay", False, None), (ids.new(), "Billing", False, None),
              (ids.new(), "Product Question", False, None),
              (ids.new(), "Holiday 2019", True, parent)]
    for topic_id, name, disabled, parent_id in topics:
        topic: dict[str, Any] = {"id": topic_id, "name": name, "disabled": disabled}
        if parent_id:
            topic["parentId"] = parent_id
        world.topics[topic_id] = topic
    world.custom_attribute_ids = {"orderNumber": ids.new(), "trackingNumber": ids.new()}
    next_run = day_start(now) + timedelta(days=1)
    world.schedules.append({"id": ids.new(), "frequency": "DAILY", "type": "CONVERSATIONS",
                            "nextStartAt": format_timestamp(next_run, "centis"),
                            "updatedAt": format_timestamp(day_start(now) - timedelta(days=90),
                                                          "nanos", 72)})


def _profile(world: World, rng: random.Random, ids: IdFactory, index: int, now: datetime,
             history_days: int) -> dict[str, Any]:
    first, last = rng.choice(lexicon.FIRST_NAMES), rng.choice(lexicon.LAST_NAMES)
    customer_id = ids.new()
    local = f"{_ascii(first)}.{_ascii(last)}{index + 1}"
    emails = [{"original": f"{local}@{rng.choice(lexicon.EMAIL_DOMAINS)}", "primary": True}]
    if rng.random() < 0.2:
        emails.append({"original": f"{_ascii(first).lower()}{index + 1}@example.com",
                       "primary": False})
    for email in emails:
        email["normalized"] = email["original"].lower()
    phones = []
    if index < 4 or rng.random() < 0.85:
        area = rng.choice(AREA_CODES)
        digits = f"{area}555{1000 + index:04d}"
        original = rng.choice((f"({area}) 555-{1000 + index:04d}", f"+1{digits}", digits,
                               f"{area}-555-{1000 + index:04d}"))
        phones.append({"original": original, "normalized": f"+1{digits}", "regionCode": "US",
                       "primary": True, "smsPreference": rng.choice(("ON", "ON", "OFF")),
                       "type": "MOBILE"})
        if rng.random() < 0.2:
            phones.append({"original": f"+1{area}555{5000 + index:04d}",
                           "normalized": f"+1{area}555{5000 + index:04d}", "extension": "12",
                           "regionCode": "US", "primary": False, "smsPreference": "FORBIDDEN",
                           "type": rng.choice(("HOME", "OFFICE"))})
    profile: dict[str, Any] = {"id": customer_id, "name": f"{first} {last}"}
    if rng.random() < 0.2:
        profile["image"] = f"https://images.example/avatars/{customer_id}.png"
    if rng.random() < 0.8:
        profile["address"] = (f"{rng.randint(100, 9999)} {rng.choice(lexicon.STREETS)}, "
                              f"{rng.choice(lexicon.CITIES)}")
    profile["emails"] = emails
    profile["phones"] = phones
    if rng.random() < 0.25:
        profile["externalCustomerId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if rng.random() < 0.15:
        profile["externalCustomerIds"] = {"SHOPIFY": str(rng.randint(10**9, 10**10))}
    profile["customAttributes"] = ({"membershipTier": rng.choice(lexicon.TIERS),
                                    "lifetimeValue": f"{rng.uniform(20, 4000):.2f}"}
                                   if rng.random() < 0.7 else {})
    created = now - timedelta(days=history_days + rng.uniform(1, 400))
    recent_update = rng.random() < 0.3
    updated = (now - timedelta(hours=rng.uniform(0.5, 20)) if recent_update
               else created + (now - timedelta(days=history_days) - created) * rng.random())
    profile["createdAt"] = canonical(created, _style(rng), rng.randrange(1000))[1]
    profile["updatedAt"] = canonical(updated, _style(rng), rng.randrange(1000))[1]
    world._customers[customer_id] = profile
    if recent_update:
        world._emit("CUSTOMER_PROFILE/UPDATED", updated,
                    {"id": world.human_agent_ids[0], "type": "AGENT"},
                    {"customerId": customer_id}, late=False)
    return profile


def _timeline(rng: random.Random, start: datetime, end: datetime, count: int) -> list[datetime]:
    """`count` ascending instants in [start, end], at least MIN_GAP_SECONDS apart."""
    room = max((end - start).total_seconds() - MIN_GAP_SECONDS * count, 0.0)
    offsets = sorted(rng.uniform(0, room) for _ in range(count))
    return [start + timedelta(seconds=o + MIN_GAP_SECONDS * i) for i, o in enumerate(offsets)]


def _plan_kinds(rng: random.Random, count: int, status: str, voice: bool) -> list[str]:
    kinds = ["customer"]
    follow = {"customer": (("agent", 55), ("note", 15), ("customer", 15), ("topic", 15)),
              "agent": (("customer", 60), ("note", 15), ("topic", 10), ("agent", 15))}
    for _ in range(count - 1):
        options = follow.get(kinds[-1], (("agent", 60), ("customer", 40)))
        kinds.append(rng.choices([k for k, _ in options], [w for _, w in options])[0])
    if voice:
        kinds = ["note" if k == "agent" else k for k in kinds]
    if status == "WAITING":
        kinds[-1:] = kinds[-1:] + ["note" if voice else "agent"] if len(kinds) == 1 \
            else ["note" if voice else "agent"]
    if status == "CLOSED":
        kinds[-1:] = ["close"] if len(kinds) > 1 else ["customer", "close"]
    return kinds


def _conversation(world: World, rng: random.Random, profile: dict[str, Any], channel: str,
                  index: int, count: int, now: datetime, history_days: int,
                  items_per_conversation: tuple[int, int]) -> None:
    window_start = now - timedelta(days=history_days)
    window_end = now - timedelta(minutes=1)
    segment = (window_end - window_start) / count
    seg_start = window_start + segment * index
    last = index == count - 1
    status = rng.choices(("OPEN", "WAITING", "CLOSED"), (45, 20, 35))[0] if last else "CLOSED"
    start = seg_start + segment * rng.uniform(0, 0.3)
    recent = last and rng.random() < (0.8 if status != "CLOSED" else 0.4)
    if recent:
        start = max(start, now - timedelta(hours=rng.uniform(1, 20)))
    bound = window_end if last else seg_start + segment
    length = rng.choice((timedelta(minutes=30), timedelta(hours=4), timedelta(days=1),
                         timedelta(days=3))) * rng.uniform(0.3, 1.0)
    end = min(bound, start + length)
    voice = channel == "PHONE_CALL"
    kinds = _plan_kinds(rng, max(rng.randint(*items_per_conversation), 1), status, voice)
    times = _timeline(rng, start, end, len(kinds))
    escalate = rng.random() < 0.1 and not voice and "note" in kinds

    inbox_id = world.inbox_id(CHANNEL_INBOX[channel])
    subject = rng.choice(lexicon.SUBJECTS)
    record = world._start_conversation(profile["id"], inbox_id, channel, subject, times[0])
    agent_id = rng.choice(world.human_agent_ids)
    enabled_topics = [t for t, topic in world.topics.items() if not topic["disabled"]]
    if rng.random() < 0.4:
        record.data["customAttributes"].append(
            {"id": world.custom_attribute_ids["orderNumber"], "value": str(rng.randint(10**6, 10**7))})
        if rng.random() < 0.5:
            record.data["customAttributes"].append(
                {"id": world.custom_attribute_ids["trackingNumber"],
                 "value": f"1Z{rng.randint(10**9, 10**10)}"})
    for kind, at in zip(kinds, times, strict=True):
        style = _style(rng)
        if kind != "customer" and not record.data.get("agentId") and record.data["inboxId"] == inbox_id:
            world._assign(record, inbox_id, agent_id, "AUTOMATED_ASSIGNMENT",
                          {"id": inbox_id, "type": "SYSTEM"}, at)
        if kind == "customer":
            _customer_turn(world, rng, record, channel, at, style)
        elif kind == "agent":
            text = " ".join(rng.sample(lexicon.AGENT_SENTENCES, rng.randint(1, 3)))
            content = world._compose(record, channel, text, inbound=False)
            world._agent_message(record, content, agent_id, at, style)
        elif kind == "note":
            world._note(record, rng.choice(lexicon.NOTE_SENTENCES), agent_id, at, style)
            if escalate:
                world._assign(record, world.inbox_id("Escalations"), None, "MANUAL",
                              {"id": agent_id, "type": "AGENT"}, at)
                escalate = False
        elif kind == "topic":
            world._topic(record, rng.choice(enabled_topics), agent_id, at, style)
        else:
            world._close(record, {"id": agent_id, "type": "AGENT"}, at, style)
    if status == "WAITING":
        record.data["status"] = "WAITING"


def _customer_turn(world: World, rng: random.Random, record: ConversationRecord, channel: str,
                   at: datetime, style: str) -> None:
    if channel != "PHONE_CALL":
        text = " ".join(rng.sample(lexicon.CUSTOMER_SENTENCES, rng.randint(1, 3)))
        content = world._compose(record, channel, text, inbound=True)
        if channel == "EMAIL" and rng.random() < 0.15:
            content["attachments"] = [{"id": world._ids.new(), "contentType": "image/jpeg",
                                       "filename": "damaged-box.jpg",
                                       "fileSize": rng.randint(20_000, 900_000)}]
        world._customer_message(record, content, at, style)
        return
    content_type = "PHONE_CALL" if rng.random() < 0.7 else "VOICEMAIL"
    summary = ("The customer calls about an order and the agent explains the next steps."
               if rng.random() < 0.5 else None)
    world._customer_call(record, content_type, at, duration=rng.randint(20, 900), summary=summary,
                         answer_after=rng.uniform(3, 40), style=style)


def _apply_quirks(world: World) -> None:
    """Serve the shapes Gladly's own items example shows although its schema forbids them
    (gladly-openapi.yml, getConversationItems example): chat items without `messageType`,
    a PHONE_CALL whose `recordingDuration` is the string "100", and an items list that holds
    an item of another conversation of the same customer."""
    if world.quirks.chat_without_message_type:
        chats = [r for r in world._items.values() if r.data["content"]["type"] == "CHAT_MESSAGE"
                 and r.data["initiator"]["type"] == "CUSTOMER"]
        for record in chats[:2]:
            del record.data["content"]["messageType"]
    if world.quirks.string_recording_duration:
        calls = [r for r in world._items.values() if r.data["content"]["type"] == "PHONE_CALL"
                 and "recordingDuration" in r.data["content"]]
        if calls:
            calls[0].data["content"]["recordingDuration"] = "100"
    if world.quirks.foreign_conversation_item:
        by_customer: dict[str, list[ConversationRecord]] = {}
        for record in world._conversations.values():
            by_customer.setdefault(record.data["customerId"], []).append(record)
        pair = next((c for c in by_customer.values() if len(c) >= 2), None)
        if pair is not None:
            world._foreign_items[pair[0].data["id"]] = [pair[1].item_ids[0]]


def local_midnight(world: World, day: datetime) -> datetime:
    """The instant (UTC) the org's local date changes within the UTC day starting at `day`."""
    zone = ZoneInfo(world.organization["timezone"])
    local = day.astimezone(zone)
    if local.time() == time(0):
        return day
    nxt = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return nxt if nxt < day + timedelta(days=1) else day


def _analyst_cases(world: World, now: datetime, history_days: int) -> None:
    """Two conversations every support metric needs, on one UTC day that the org's time zone cuts
    in two local days (two days ago, inside the daily export jobs): one closed without an answer
    just before local midnight, and one just after it that starts by email, is answered, closed,
    reopened by an SMS (a second channel), answered by SMS, noted and closed again. They belong to
    a customer with no unclosed conversation, so Gladly's one-open-conversation rule holds."""
    day = day_start(now) - timedelta(days=2)
    customer = next((c for c in world._customers if world._unclosed_conversation(c) is None), None)
    if history_days < 2 or customer is None:
        return
    midnight = local_midnight(world, day)
    agent_id = world.human_agent_ids[0]
    agent = {"id": agent_id, "type": "AGENT"}
    inbox_id = world.inbox_id("Email Support")
    early = midnight - timedelta(minutes=90) if midnight > day + timedelta(hours=2) else day
    late = max(midnight, day) + timedelta(minutes=30)

    unanswered = world._start_conversation(customer, inbox_id, "EMAIL", "Order never arrived", early)
    world._customer_message(unanswered, world._compose(unanswered, "EMAIL", "Where is my order?",
                                                       inbound=True), early)
    world._close(unanswered, agent, early + timedelta(minutes=20))

    record = world._start_conversation(customer, inbox_id, "EMAIL", "Wrong size", late)
    steps = ((0, "customer", "EMAIL", "I got the wrong size."),
             (12, "agent", "EMAIL", "Sorry about that, a new pair is on its way."),
             (15, "close", None, None),
             (70, "reopen", None, None),
             (70, "customer", "SMS", "The new pair has not arrived."),
             (75, "note", None, "Checked the carrier: delayed in transit."),
             (80, "agent", "SMS", "It arrives tomorrow."),
             (90, "close", None, None))
    for minutes, kind, channel, text in steps:
        at = late + timedelta(minutes=minutes)
        if kind == "customer":
            world._customer_message(record, world._compose(record, channel, text, inbound=True), at)
        elif kind == "agent":
            world._assign(record, inbox_id, agent_id, "MESSAGE_OUTBOUND", agent, at)
            world._agent_message(record, world._compose(record, channel, text, inbound=False),
                                 agent_id, at)
        elif kind == "note":
            world._note(record, text, agent_id, at)
        elif kind == "reopen":
            world._reopen_checked(record, at, {"id": customer, "type": "CUSTOMER"})
        else:
            world._close(record, agent, at)


def _daily_jobs(world: World, now: datetime, history_days: int) -> None:
    """One COMPLETED job per UTC day of history, produced 40 minutes after the day ends."""
    day = day_start(now - timedelta(days=history_days))
    while day + timedelta(days=1) + EXPORT_DELAY <= now:
        world._add_job(day, day + timedelta(days=1), day + timedelta(days=1) + EXPORT_DELAY)
        day += timedelta(days=1)
