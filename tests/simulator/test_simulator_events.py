"""The Events API: its 24 h window, entity families, JSON Lines order and lateness."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from gladly_sync.simulator import Simulator
from gladly_sync.simulator.timestamps import parse_timestamp

ALL = ["CONVERSATION", "CONTACT", "CUSTOMER", "CUSTOMER_PROFILE"]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def poll(client: httpx.Client, start: datetime, end: datetime | None = None,
         entities: list[str] | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"startAt": iso(start), "entities": entities or ALL}
    if end is not None:
        params["endAt"] = iso(end)
    response = client.get("/events", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/x-jsonlines"
    return [json.loads(line) for line in response.text.split("\n") if line]


class TestWindow:
    @pytest.mark.parametrize(("hours_back", "end_offset", "entities", "attr", "code", "detail"), [
        (None, None, ALL, "startAt", "blank", "startAt is required"),
        (24, None, ALL, "startAt", "invalid", "startAt must be within the last 24 hours"),
        (30, None, ALL, "startAt", "invalid", "startAt must be within the last 24 hours"),
        (2, 0, ALL, "startAt", "invalid", "endAt must occur after startAt"),
        (2, -1, ALL, "startAt", "invalid", "endAt must occur after startAt"),
        (2, None, [], "entities", "blank", "entities is required"),
        (2, None, ["CONVERSATIONS"], "entities", "invalid", "entities [CONVERSATIONS] is not supported"),
    ])
    def test_bad_windows_are_400(self, clock, clocked_client: httpx.Client,
                                 hours_back: int | None, end_offset: int | None,
                                 entities: list[str], attr: str, code: str, detail: str) -> None:
        """startAt is required and within 24 h, endAt after it, entities known and present."""
        params: dict[str, Any] = {"entities": entities}
        if hours_back is not None:
            start = clock.now - timedelta(hours=hours_back)
            params["startAt"] = iso(start)
            if end_offset is not None:
                params["endAt"] = iso(start + timedelta(seconds=end_offset))
        response = clocked_client.get("/events", params=params)
        assert response.status_code == 400
        assert response.json() == {"errors": [{"attr": attr, "code": code, "detail": detail}]}

    def test_offset_timestamps_are_accepted(self, clock, clocked_client: httpx.Client) -> None:
        """startAt may carry a UTC offset, as Gladly's docs show (e.g. -09:00)."""
        start = (clock.now - timedelta(hours=3)).astimezone()
        response = clocked_client.get("/events", params={
            "startAt": start.strftime("%Y-%m-%dT%H:%M:%S%z"), "entities": "CONVERSATION"})
        assert response.status_code == 200

    def test_events_fall_inside_the_window_in_order(self, clock, clocked_sim: Simulator,
                                                    clocked_client: httpx.Client) -> None:
        """Returned events lie in [startAt, endAt) and ascend by timestamp."""
        start, end = clock.now - timedelta(hours=23), clock.now - timedelta(hours=2)
        events = poll(clocked_client, start, end)
        times = [parse_timestamp(e["timestamp"]) for e in events]
        assert events and times == sorted(times)
        assert all(start <= t < end for t in times)
        everything = [e for e in clocked_sim.world.events()
                      if start <= parse_timestamp(e["timestamp"]) < end]
        assert [e["id"] for e in events] == [e["id"] for e in everything]


class TestEntities:
    @pytest.mark.parametrize(("entity", "prefixes"), [
        ("CONVERSATION", ("CONVERSATION/", "CONVERSATION_ASSIGNEE/")),
        ("CONTACT", ("CONTACT/",)),
        ("CUSTOMER", ("CUSTOMER/",)),
        ("CUSTOMER_PROFILE", ("CUSTOMER_PROFILE/",)),
    ])
    def test_entity_selects_its_family(self, clock, clocked_sim: Simulator,
                                       clocked_client: httpx.Client, entity: str,
                                       prefixes: tuple[str, ...]) -> None:
        """Each entity returns exactly its event family."""
        world = clocked_sim.world
        source, dest = world.new_customer(email="s@example.com"), world.new_customer(email="d@example.com")
        world.merge_customers(source, dest)
        events = poll(clocked_client, clock.now - timedelta(hours=23), entities=[entity])
        expected = [e["id"] for e in world.events() if e["type"].startswith(prefixes)]
        assert events and [e["id"] for e in events] == expected

    def test_repeated_entities_combine(self, clock, clocked_client: httpx.Client) -> None:
        """entities=A&entities=B returns the union of both families."""
        start = clock.now - timedelta(hours=23)
        both = poll(clocked_client, start, entities=["CONVERSATION", "CONTACT"])
        alone = (poll(clocked_client, start, entities=["CONVERSATION"])
                 + poll(clocked_client, start, entities=["CONTACT"]))
        assert sorted(e["id"] for e in both) == sorted(e["id"] for e in alone)


class TestTime:
    def test_late_events_appear_after_the_lateness_with_their_own_timestamp(
            self, clock, clocked_sim: Simulator, clocked_client: httpx.Client) -> None:
        """With lateness, a new event is invisible at first, then shows with its original time."""
        clocked_sim.world.event_lateness_seconds = 15
        conversation = clocked_sim.world.conversations(status="OPEN")[0]
        clocked_sim.world.add_note(conversation["id"], "late")
        emitted_at = clock.now
        start = clock.now - timedelta(minutes=5)
        assert not any(e["type"] == "CONVERSATION/NOTE_CREATED" for e in poll(clocked_client, start))
        clock.advance(seconds=16)
        [note] = [e for e in poll(clocked_client, start) if e["type"] == "CONVERSATION/NOTE_CREATED"]
        assert parse_timestamp(note["timestamp"]) == emitted_at

    def test_events_older_than_a_day_are_dropped(self, clock, clocked_sim: Simulator,
                                                 clocked_client: httpx.Client) -> None:
        """After 24 h an event is gone from the feed."""
        conversation = clocked_sim.world.conversations(status="OPEN")[0]
        clocked_sim.world.add_note(conversation["id"], "soon forgotten")
        clock.advance(hours=24, seconds=1)
        events = poll(clocked_client, clock.now - timedelta(hours=23, minutes=59))
        assert not any(e["type"] == "CONVERSATION/NOTE_CREATED"
                       and e["content"]["conversationId"] == conversation["id"] for e in events)
        assert all(parse_timestamp(e["timestamp"]) > clock.now - timedelta(hours=24)
                   for e in clocked_sim.world.events())
