"""The faults the pull must survive, as the simulator serves them: Gladly's clock off from the
host's, line separators inside event strings, and item lists cut at 1000 with newer items."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from gladly_sync.simulator import Simulator
from gladly_sync.simulator.timestamps import parse_timestamp

from tests.clocks import WallClock

ALL = ["CONVERSATION", "CONTACT", "CUSTOMER", "CUSTOMER_PROFILE"]
START = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)


def client(sim: Simulator) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url + "/api/v1", auth=(sim.api_email, sim.api_token), timeout=10)


def events(http: httpx.Client, start: datetime) -> list[dict]:
    response = http.get("/events", params={"startAt": start.isoformat(), "entities": ALL})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.split("\n") if line]


class TestClockOffset:
    def test_date_header_and_timestamps_follow_gladlys_clock(self) -> None:
        """With clock_offset, the Date header and new events are on the host clock plus the offset."""
        clock, offset = WallClock(START), timedelta(minutes=-10)
        with Simulator(seed=2, customers=4, conversations=6, clock=clock, clock_offset=offset) as sim:
            world = sim.world
            assert world.now() == START + offset
            world.add_note(world.conversations()[0]["id"], "noted")
            with client(sim) as http:
                response = http.get("/organization")
                assert parsedate_to_datetime(response.headers["Date"]) == START + offset
                [note] = [e for e in events(http, START - timedelta(hours=1))
                          if e["type"] == "CONVERSATION/NOTE_CREATED"]
        assert parse_timestamp(note["timestamp"]) == START + offset


class TestSeparatorsInEvents:
    def test_a_custom_attribute_value_reaches_the_events_body_unescaped(self) -> None:
        """U+2028, U+2029 and U+0085 in an event string arrive as raw UTF-8, as valid JSON Lines."""
        value = "Happy birthday\u2028Love,\u2029Sam\u0085xx"
        with Simulator(seed=2, customers=4, conversations=6) as sim:
            world = sim.world
            conversation_id = world.conversations()[0]["id"]
            world.set_conversation_attribute(conversation_id, "giftMessage", value)
            with client(sim) as http:
                response = http.get("/events", params={
                    "startAt": (world.now() - timedelta(minutes=5)).isoformat(), "entities": ALL})
            assert "\u2028".encode() in response.content and b"\\u2028" not in response.content
            [event] = [e for e in events_of(response) if e["type"] == "CONVERSATION/CUSTOM_ATTRIBUTE_ADDED"]
            assert event["content"]["customAttributeValue"] == value
            assert event["content"]["conversationId"] == conversation_id
            attribute = {"id": event["content"]["customAttributeId"], "value": value}
            assert attribute in world.conversation(conversation_id)["customAttributes"]


def events_of(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.split("\n") if line]


class TestLongConversation:
    def test_the_list_is_cut_at_1000_and_events_name_the_newer_items(self) -> None:
        """A 1200-message conversation lists its oldest 1000 with Gladly-Limited-Data; the
        CONTACT/MESSAGE_* events name every item by messageId, readable one by one."""
        with Simulator(seed=2, customers=4, conversations=6) as sim:
            world = sim.world
            customer_id = world.new_customer(phone="+14155550123")
            conversation_id = world.new_long_conversation(customer_id, world.inbox_id("SMS"), 1200)
            newest = world.items(conversation_id)[-1]
            with client(sim) as http:
                listed = http.get(f"/conversations/{conversation_id}/items")
                assert listed.headers["Gladly-Limited-Data"] == "true"
                oldest = [i["id"] for i in world.items(conversation_id)[:1000]]
                assert [i["id"] for i in listed.json()] == oldest
                named = {e["content"]["messageId"] for e in events(http, world.now() - timedelta(hours=1))
                         if e["type"].startswith("CONTACT/MESSAGE_")
                         and e["content"]["conversationId"] == conversation_id}
                assert named == {i["id"] for i in world.items(conversation_id)}
                assert http.get(f"/conversation-items/{newest['id']}").json() == newest
