"""The World: deterministic seed data that keeps Gladly's rules, and mutations with their events."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from gladly_sync.simulator import ApiError, Quirks, World
from gladly_sync.simulator.timestamps import parse_timestamp

FIXED = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)
ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{21}$")
MESSAGE_TYPES = {"EMAIL", "CHAT_MESSAGE", "SMS", "WHATSAPP", "FACEBOOK_MESSAGE",
                 "INSTAGRAM_DIRECT", "PHONE_CALL", "VOICEMAIL"}


def fixed_clock() -> datetime:
    return FIXED


@pytest.fixture(scope="module", params=[1, 2, 3, 4, 5])
def seeded(request: pytest.FixtureRequest) -> World:
    return World(seed=request.param, customers=25, conversations=60, clock=fixed_clock)


class TestDeterminism:
    def test_same_seed_gives_equal_worlds(self) -> None:
        """Two worlds with the same seed, sizes and clock are equal in every object."""
        first = World(seed=11, customers=15, conversations=30, clock=fixed_clock)
        second = World(seed=11, customers=15, conversations=30, clock=fixed_clock)
        assert first.snapshot() == second.snapshot()

    def test_other_seed_gives_other_world(self) -> None:
        """A different seed gives different ids."""
        first = World(seed=11, clock=fixed_clock)
        second = World(seed=12, clock=fixed_clock)
        assert set(first.snapshot()["items"]).isdisjoint(second.snapshot()["items"])

    def test_ids_do_not_depend_on_the_clock(self) -> None:
        """The same seed gives the same ids whatever the time of day the world is built."""
        first = World(seed=11, clock=fixed_clock)
        second = World(seed=11, clock=lambda: FIXED + timedelta(hours=7, minutes=13))
        assert first.snapshot()["items"].keys() == second.snapshot()["items"].keys()
        assert first.inboxes == second.inboxes


class TestSeedRules:
    def test_at_most_one_unclosed_conversation_per_customer(self, seeded: World) -> None:
        """No customer has two conversations that are OPEN or WAITING."""
        unclosed = Counter(c["customerId"] for c in seeded.conversations() if c["status"] != "CLOSED")
        assert unclosed and max(unclosed.values()) == 1

    def test_conversations_start_with_a_customer_message(self, seeded: World) -> None:
        """Every conversation's first item is a message initiated by the customer."""
        for conversation in seeded.conversations():
            first = seeded.items(conversation["id"])[0]
            assert first["initiator"] == {"id": conversation["customerId"], "type": "CUSTOMER"}
            assert first["content"]["type"] in MESSAGE_TYPES
            assert first["timestamp"] == conversation["createdAt"]

    def test_items_strictly_ascend_and_lie_in_the_past(self, seeded: World) -> None:
        """Item timestamps, as written, strictly ascend within a conversation and precede now."""
        for conversation in seeded.conversations():
            times = [parse_timestamp(i["timestamp"]) for i in seeded.items(conversation["id"])]
            assert times == sorted(set(times))
            assert times[-1] < FIXED

    def test_closed_conversations_carry_closed_at(self, seeded: World) -> None:
        """closedAt is present exactly on CLOSED conversations and is their last status change."""
        for conversation in seeded.conversations():
            assert ("closedAt" in conversation) == (conversation["status"] == "CLOSED")
            if conversation["status"] == "CLOSED":
                last = seeded.items(conversation["id"])[-1]
                assert last["content"] == {"type": "CONVERSATION_STATUS_CHANGE", "status": "CLOSED"}
                assert last["timestamp"] == conversation["closedAt"]

    def test_ids_are_nice_slugids(self, seeded: World) -> None:
        """Ids are 22 URL-safe base64 characters and never start with '-'."""
        snapshot = seeded.snapshot()
        ids = [*snapshot["items"], *snapshot["conversations"], *snapshot["customers"],
               *seeded.inboxes, *seeded.agents, *seeded.topics, *(e["id"] for e in snapshot["events"])]
        assert all(ID.match(value) for value in ids)
        assert len(ids) == len(set(ids))

    def test_reference_data(self, seeded: World) -> None:
        """Inbox names are unique, the API user is an agent, one topic has a parent."""
        names = [inbox["name"] for inbox in seeded.inboxes.values()]
        assert len(names) == len(set(names)) and "Escalations" in names
        assert seeded.agents[seeded.api_agent_id]["emailAddress"] == seeded.api_email
        assert any("parentId" in topic for topic in seeded.topics.values())

    def test_history_has_recent_activity_and_varied_timestamps(self, seeded: World) -> None:
        """Events exist for the last 24 h, ascending, and fraction digits vary as Gladly's do."""
        events = seeded.events()
        times = [parse_timestamp(e["timestamp"]) for e in events]
        assert events and times == sorted(times)
        assert all(FIXED - timedelta(hours=24) < t <= FIXED for t in times)
        stamps = [i["timestamp"] for i in seeded.snapshot()["items"].values()]
        fractions = {len(s.rpartition(".")[2]) - 1 if "." in s else 0 for s in stamps}
        assert {0, 2, 3, 9} <= fractions and all(s.endswith("Z") for s in stamps)

    def test_customers_have_profile_shapes(self, seeded: World) -> None:
        """Profiles have a primary email object, phones with type and smsPreference, times."""
        for profile in seeded.customers():
            assert profile["emails"][0]["primary"] is True
            assert all({"original", "normalized", "primary"} <= set(e) for e in profile["emails"])
            assert all(p["type"] in {"HOME", "MOBILE", "OFFICE"} and "smsPreference" in p
                       for p in profile["phones"])
            assert {"createdAt", "updatedAt", "customAttributes"} <= set(profile)


class TestQuirks:
    def test_documented_quirks_are_served_by_default(self) -> None:
        """Chat items without messageType, one string recordingDuration, one foreign item."""
        world = World(seed=3, customers=20, conversations=50)
        items = world.snapshot()["items"].values()
        assert sum(1 for i in items if i["content"]["type"] == "CHAT_MESSAGE"
                   and "messageType" not in i["content"]) == 2
        assert [i["content"]["recordingDuration"] for i in items
                if isinstance(i["content"].get("recordingDuration"), str)] == ["100"]
        assert len(world.snapshot()["foreign_items"]) == 1

    def test_quirks_can_be_switched_off(self) -> None:
        """With every quirk off, no item breaks the schema in those ways."""
        world = World(seed=3, customers=20, conversations=50, quirks=Quirks(False, False, False))
        items = world.snapshot()["items"].values()
        assert all("messageType" in i["content"] for i in items
                   if i["content"]["type"] == "CHAT_MESSAGE")
        assert not any(isinstance(i["content"].get("recordingDuration"), str) for i in items)
        assert world.snapshot()["foreign_items"] == {}


@pytest.fixture
def world() -> World:
    return World(seed=5, customers=10, conversations=20)


def event_types(world: World, conversation_id: str) -> list[str]:
    return [e["type"] for e in world.events() if e["content"].get("conversationId") == conversation_id]


class TestMutations:
    def test_new_conversation_emits_created_and_received(self, world: World) -> None:
        """A customer's first message creates the conversation and a MESSAGE_RECEIVED event."""
        customer_id = world.new_customer(name="Ana", email="ana@example.com")
        conversation_id = world.new_conversation(customer_id, world.inbox_id("Chat Support"),
                                                 channel="CHAT", text="Hello?")
        assert event_types(world, conversation_id) == ["CONVERSATION/CREATED",
                                                       "CONTACT/MESSAGE_RECEIVED"]
        [item] = world.items(conversation_id)
        assert item["content"]["type"] == "CHAT_MESSAGE" and item["content"]["content"] == "Hello?"

    def test_second_open_conversation_is_refused(self, world: World) -> None:
        """A customer with an open conversation cannot get another one."""
        customer_id = world.new_customer(email="bo@example.com")
        world.new_conversation(customer_id, world.inbox_id("Email Support"))
        with pytest.raises(ApiError) as caught:
            world.new_conversation(customer_id, world.inbox_id("Email Support"))
        assert caught.value.body["errors"][0]["code"] == "invalid_state"

    def test_message_on_closed_conversation_reopens_it(self, world: World) -> None:
        """A customer writing to a CLOSED conversation reopens it (CONVERSATION/REOPENED)."""
        customer_id = world.new_customer(email="cy@example.com")
        conversation_id = world.new_conversation(customer_id, world.inbox_id("Email Support"))
        world.close(conversation_id)
        world.new_message(conversation_id, text="Me again")
        assert world.conversation(conversation_id)["status"] == "OPEN"
        assert "closedAt" not in world.conversation(conversation_id)
        assert event_types(world, conversation_id)[-3:] == [
            "CONVERSATION/CLOSED", "CONVERSATION/REOPENED", "CONTACT/MESSAGE_RECEIVED"]

    def test_move_inbox_reports_new_and_previous_assignee(self, world: World) -> None:
        """A move emits CONVERSATION_ASSIGNEE/UPDATED with the old assignee as context."""
        customer_id = world.new_customer(email="di@example.com")
        email_inbox, escalations = world.inbox_id("Email Support"), world.inbox_id("Escalations")
        conversation_id = world.new_conversation(customer_id, email_inbox)
        world.move_inbox(conversation_id, escalations)
        event = [e for e in world.events() if e["type"] == "CONVERSATION_ASSIGNEE/UPDATED"][-1]
        assert event["content"]["assignee"] == {"inboxId": escalations}
        assert event["content"]["context"] == {"assignee": {"inboxId": email_inbox}}
        assert world.conversation(conversation_id)["inboxId"] == escalations

    def test_profile_update_and_delete(self, world: World) -> None:
        """Updates bump updatedAt with an event; a deleted profile and its conversations vanish."""
        customer_id = world.new_customer(email="ed@example.com")
        conversation_id = world.new_conversation(customer_id, world.inbox_id("Email Support"))
        world.update_profile(customer_id, name="Ed Example")
        assert world.customer(customer_id)["name"] == "Ed Example"
        world.delete_profile(customer_id)
        assert world.customer(customer_id) is None and world.conversation(conversation_id) is None
        types = [e["type"] for e in world.events() if e["content"].get("customerId") == customer_id]
        assert types[-2:] == ["CUSTOMER_PROFILE/UPDATED", "CUSTOMER_PROFILE/DELETED"]

    def test_items_by_agent_counts_what_the_api_user_wrote(self, world: World) -> None:
        """items_by_agent finds the notes and replies initiated by the API user's agent."""
        customer_id = world.new_customer(email="fa@example.com")
        conversation_id = world.new_conversation(customer_id, world.inbox_id("Email Support"))
        world.add_note(conversation_id, "checked")
        world.agent_reply(conversation_id, "hi", agent_id=world.api_agent_id)
        world.agent_reply(conversation_id, "hi from a human", agent_id=world.human_agent_ids[0])
        assert len(world.items_by_agent(conversation_id)) == 2
        assert len(world.items_by_agent(conversation_id, content_type="CONVERSATION_NOTE")) == 1

    def test_accessors_return_copies(self, world: World) -> None:
        """Changing what an accessor returned does not change the world."""
        conversation = world.conversations()[0]
        world.conversation(conversation["id"])["status"] = "BROKEN"
        world.items(conversation["id"])[0]["content"]["type"] = "BROKEN"
        assert world.conversation(conversation["id"])["status"] != "BROKEN"
        assert world.items(conversation["id"])[0]["content"]["type"] != "BROKEN"
