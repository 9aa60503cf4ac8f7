"""The pull against the simulator with the faults production brings: line separators inside event
strings, Gladly's clock off from the host's, late events, item lists cut at 1000, and a deleted
profile whose conversations Gladly still serves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from gladly_sync.simulator import Simulator
from gladly_sync.sync.pull.run import sync_once

from tests.pull.test_pull_simulator import SharedClock, make_ctx, rows


@pytest.fixture
def clock() -> SharedClock:
    return SharedClock()


def simulator(clock: SharedClock, **options) -> Simulator:
    return Simulator(seed=1, customers=12, conversations=20, clock=clock, **options)


def open_conversation(sim: Simulator) -> str:
    """A new customer's open email conversation."""
    world = sim.world
    customer_id = world.new_customer(email="waiting@example.com")
    return world.new_conversation(customer_id, world.inbox_id("Email Support"), text="Hello?")


class TestEventText:
    @pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
    def test_a_line_separator_inside_an_event_string_does_not_stop_the_sync(self, tmp_path, clock, separator):
        """An event whose text holds U+2028/U+2029/U+0085 is stored like any other."""
        with simulator(clock) as sim:
            ctx = make_ctx(tmp_path, sim, clock)
            sync_once(ctx)
            conversation_id = sim.world.conversations()[0]["id"]
            value = f"Happy birthday{separator}Love, Sam"
            sim.world.set_conversation_attribute(conversation_id, "giftMessage", value)
            clock.advance(minutes=5)
            summary = sync_once(ctx)
        assert summary.events_new == 1
        [(raw,)] = rows(
            ctx,
            "SELECT raw FROM events "
            "WHERE type = 'CONVERSATION/CUSTOM_ATTRIBUTE_ADDED' AND conversation_id = ?",
            conversation_id,
        )
        assert value in raw


class TestGladlysClock:
    def test_a_host_clock_ahead_of_gladly_loses_no_event(self, tmp_path, clock):
        """The host 10 min ahead of Gladly: a message sent after one sync arrives with the next."""
        with simulator(clock, clock_offset=timedelta(minutes=-10)) as sim:
            conversation_id = open_conversation(sim)
            ctx = make_ctx(tmp_path, sim, clock)
            sync_once(ctx)
            clock.advance(minutes=5)
            message_id = sim.world.new_message(conversation_id, text="Still waiting")
            clock.advance(seconds=30)
            sync_once(ctx)
        assert rows(ctx, "SELECT conversation_id FROM conversation_items WHERE id = ?", message_id) == [
            (conversation_id,)
        ]

    def test_an_event_a_minute_late_is_not_lost(self, tmp_path, clock):
        """An event that shows up 60 s after its timestamp (beyond Gladly's 15 s) is picked up by the
        run after the one that could not see it yet."""
        with simulator(clock, event_lateness_seconds=60) as sim:
            conversation_id = open_conversation(sim)
            ctx = make_ctx(tmp_path, sim, clock)
            clock.advance(minutes=2)  # its first events are visible
            sync_once(ctx)
            clock.advance(minutes=5)
            message_id = sim.world.new_message(conversation_id, text="Hello again")
            clock.advance(seconds=30)
            sync_once(ctx)  # the event is not visible yet
            assert rows(ctx, "SELECT id FROM conversation_items WHERE id = ?", message_id) == []
            clock.advance(minutes=5)
            sync_once(ctx)
        assert rows(ctx, "SELECT id FROM conversation_items WHERE id = ?", message_id) == [(message_id,)]


class TestCutItemLists:
    def test_a_new_message_on_a_long_conversation_is_stored(self, tmp_path, clock):
        """A 1500-item conversation lists only its oldest 1000: the items its events name are read
        one by one, so every message is stored, and the summary counts the cut list."""
        with simulator(clock) as sim:
            world = sim.world
            customer_id = world.new_customer(phone="+14155550123")
            conversation_id = world.new_long_conversation(customer_id, world.inbox_id("SMS"), 1500)
            ctx = make_ctx(tmp_path, sim, clock)
            first = sync_once(ctx)
            clock.advance(minutes=5)
            message_id = world.new_message(conversation_id, text="Where is my parcel?")
            clock.advance(seconds=30)
            sim.reset_requests()
            summary = sync_once(ctx)
            item_gets = [r.path for r in sim.requests if r.path.startswith("/api/v1/conversation-items/")]
            every = {item["id"] for item in world.items(conversation_id)}
        assert first.lists_cut == 1 and first.items_completed == 500
        assert summary.lists_cut == 1 and summary.items_completed == 1
        assert item_gets == [f"/api/v1/conversation-items/{message_id}"]
        stored = rows(
            ctx,
            "SELECT id FROM conversation_items WHERE conversation_id = ? AND deleted_at IS NULL",
            conversation_id,
        )
        assert {row[0] for row in stored} == every
        [(text,)] = rows(ctx, "SELECT text FROM conversation_items WHERE id = ?", message_id)
        assert text == "Where is my parcel?"


class TestErasure:
    def test_an_erased_customers_conversation_served_again_is_not_written(self, tmp_path, clock):
        """The profile is deleted but Gladly still serves its conversation, which changes again: the
        next syncs neither restore item text nor clear deleted_at, and store nothing new of it."""
        with simulator(clock) as sim:
            world = sim.world
            conversation_id = open_conversation(sim)
            customer_id = world.conversation(conversation_id)["customerId"]
            ctx = make_ctx(tmp_path, sim, clock)
            clock.advance(minutes=2)
            sync_once(ctx)
            world.delete_profile(customer_id, still_serve_conversations=True)
            clock.advance(minutes=5)
            sync_once(ctx)
            erased = rows(
                ctx,
                "SELECT id, text, raw, deleted_at FROM conversation_items WHERE conversation_id = ?",
                conversation_id,
            )
            note_id = world.add_note(conversation_id, "Customer asked to be forgotten")
            message_id = world.new_message(conversation_id, text="One more thing")
            clock.advance(minutes=5)
            sync_once(ctx)
        assert erased and all(text is None and raw is None and deleted for _, text, raw, deleted in erased)
        assert (
            rows(
                ctx,
                "SELECT id, text, raw, deleted_at FROM conversation_items WHERE conversation_id = ?",
                conversation_id,
            )
            == erased
        )
        assert rows(
            ctx, "SELECT count(*) FROM conversation_items WHERE id IN (?, ?)", note_id, message_id
        ) == [(0,)]
        assert rows(
            ctx, "SELECT raw IS NULL, deleted_at IS NOT NULL FROM conversations WHERE id = ?", conversation_id
        ) == [(True, True)]
