"""conversation_metrics and daily_volume against the simulator: every metric is computed by hand from
the simulator's own conversations and items, after a real sync over HTTP, and compared row by row."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gladly_sync.simulator import World
from gladly_sync.simulator.timestamps import parse_timestamp
from gladly_sync.sync.pull.run import sync_once

from tests.pull import test_pull_simulator as pull

# The pull tests' fixtures: a clock at noon (the whole seeded history is covered) and its simulator.
clock, sim, make_ctx = pull.clock, pull.sim, pull.make_ctx

# SPEC, Second release -> Analysts: the message types (written out here, not imported).
MESSAGE_TYPES = {
    "CHAT_MESSAGE", "EMAIL", "SMS", "WHATSAPP", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT", "TWITTER",
    "PHONE_CALL", "VOICEMAIL",
}  # fmt: skip


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def conversation_by_hand(world: World, conversation: dict[str, Any]) -> dict[str, Any]:
    """One conversation_metrics row, from the simulator's conversation and its items."""
    items = sorted(world.items(conversation["id"]), key=lambda i: (parse_timestamp(i["timestamp"]), i["id"]))
    at = {item["id"]: parse_timestamp(item["timestamp"]) for item in items}
    messages = [i for i in items if i["content"]["type"] in MESSAGE_TYPES]
    customer = [i for i in messages if i["initiator"]["type"] == "CUSTOMER"]
    first = customer[0] if customer else None
    first_at = at[first["id"]] if first else None
    responses = [
        at[i["id"]]
        for i in messages
        if i["initiator"]["type"] == "AGENT" and first_at and at[i["id"]] > first_at
    ]
    changes = [
        (at[i["id"]], i["content"]["status"])
        for i in items
        if i["content"]["type"] == "CONVERSATION_STATUS_CHANGE"
    ]
    first_close = min((when for when, status in changes if status == "CLOSED"), default=None)
    created = parse_timestamp(conversation["createdAt"])
    closed = parse_timestamp(conversation["closedAt"]) if conversation.get("closedAt") else None
    return {
        "conversation_id": conversation["id"],
        "customer_id": conversation["customerId"],
        "inbox_id": conversation["inboxId"],
        "inbox_name": world.inboxes[conversation["inboxId"]]["name"],
        "status": conversation["status"],
        "channel": first["content"]["type"] if first else None,
        "created_at": created,
        "first_customer_message_at": first_at,
        "first_response_at": min(responses, default=None),
        "first_response_seconds": _seconds(min(responses, default=None), first_at),
        "closed_at": closed,
        "resolution_seconds": _seconds(closed, created) if conversation["status"] == "CLOSED" else None,
        "reopen_count": sum(
            1 for when, status in changes if status == "OPEN" and first_close and when > first_close
        ),
        "customer_messages": len(customer),
        "agent_messages": sum(1 for i in messages if i["initiator"]["type"] == "AGENT"),
        "notes": sum(1 for i in items if i["content"]["type"] == "CONVERSATION_NOTE"),
    }


def metrics_by_hand(world: World) -> dict[str, dict[str, Any]]:
    return {c["id"]: conversation_by_hand(world, c) for c in world.conversations()}


def volume_by_hand(world: World) -> dict[tuple, tuple[int, int, int]]:
    """daily_volume, keyed by (local_date, inbox_id, channel), in the organization's time zone."""
    zone = ZoneInfo(world.organization["timezone"])
    counts: Counter = Counter()
    for conversation in world.conversations():
        row = conversation_by_hand(world, conversation)
        key = (conversation["inboxId"], row["channel"])
        counts[(row["created_at"].astimezone(zone).date(), *key, "created")] += 1
        for item in world.items(conversation["id"]):
            kind = item["initiator"]["type"]
            if item["content"]["type"] in MESSAGE_TYPES and kind in ("CUSTOMER", "AGENT"):
                counts[(parse_timestamp(item["timestamp"]).astimezone(zone).date(), *key, kind)] += 1
    keys = {key[:3] for key in counts}
    return {
        key: (counts[(*key, "created")], counts[(*key, "CUSTOMER")], counts[(*key, "AGENT")]) for key in keys
    }


def stored_metrics(ctx) -> dict[str, dict[str, Any]]:
    with ctx.db.connect(read_only=True) as con:
        cursor = con.execute("SELECT * FROM conversation_metrics")
        names = [d[0] for d in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def stored_volume(ctx) -> dict[tuple, tuple[int, int, int]]:
    with ctx.db.connect(read_only=True) as con:
        return {tuple(r[:3]): tuple(r[3:]) for r in con.execute("SELECT * FROM daily_volume").fetchall()}


def assert_views_match(ctx, world: World) -> None:
    expected, stored = metrics_by_hand(world), stored_metrics(ctx)
    assert set(stored) == set(expected)
    for conversation_id, row in expected.items():
        got = stored[conversation_id]
        for column in ("first_response_seconds", "resolution_seconds"):
            assert got[column] == pytest.approx(row[column], abs=1e-6), (conversation_id, column)
        assert {**got, "first_response_seconds": None, "resolution_seconds": None} == {
            **row, "first_response_seconds": None, "resolution_seconds": None,
        }, conversation_id  # fmt: skip
    assert stored_volume(ctx) == volume_by_hand(world)


class TestMetricsAgainstTheSimulator:
    def test_the_seeded_history_has_every_case_the_views_must_handle(self, sim):
        """Closed, reopened, unanswered and multi-channel conversations, and a UTC day that the
        organization's time zone splits in two local days, all exist in the seeded world."""
        world = sim.world
        rows = metrics_by_hand(world).values()
        zone = ZoneInfo(world.organization["timezone"])
        assert any(r["status"] == "CLOSED" for r in rows)
        assert any(r["reopen_count"] > 0 for r in rows)
        assert any(r["customer_messages"] and r["first_response_at"] is None for r in rows)
        channels = [
            {i["content"]["type"] for i in world.items(c["id"]) if i["content"]["type"] in MESSAGE_TYPES}
            for c in world.conversations()
        ]
        assert any(len(kinds) > 1 for kinds in channels)
        local_days: dict[Any, set] = {}
        for r in rows:
            local_days.setdefault(r["created_at"].date(), set()).add(r["created_at"].astimezone(zone).date())
        assert any(len(days) == 2 for days in local_days.values())

    def test_views_equal_the_hand_computed_metrics_after_a_backfill(self, tmp_path, sim, clock):
        """After a fresh store's first sync, both views equal the hand computation row by row."""
        ctx = make_ctx(tmp_path, sim, clock)
        sync_once(ctx)
        with ctx.db.connect(read_only=True) as con:
            assert con.execute("SELECT id, name, timezone FROM organization").fetchall() == [
                (sim.world.organization["id"], "Demo Outfitters", "America/Los_Angeles")
            ]
        assert_views_match(ctx, sim.world)

    def test_views_follow_live_reopens_channels_and_deletions(self, tmp_path, sim, clock):
        """A reopen by a message in a new channel, a reply, a close and an erased customer arrive
        with the next incremental sync; deleted items and erased conversations drop out."""
        world = sim.world
        ctx = make_ctx(tmp_path, sim, clock)
        sync_once(ctx)
        clock.advance(minutes=5)
        closed = next(
            c for c in world.conversations(status="CLOSED")
            if c["inboxId"] == world.inbox_id("Email Support")
            and not any(o["status"] != "CLOSED" for o in world.conversations(customer_id=c["customerId"]))
        )  # fmt: skip
        world.new_message(closed["id"], text="It broke again.", channel="SMS")
        world.agent_reply(closed["id"], text="Sending a replacement.", channel="SMS")
        world.close(closed["id"])
        doomed = next(
            c["customerId"] for c in world.conversations() if c["customerId"] != closed["customerId"]
        )
        world.delete_profile(doomed)
        clock.advance(seconds=30)
        assert sync_once(ctx).mode == "incremental"

        with ctx.db.connect(read_only=True) as con:
            deleted = con.execute(
                "SELECT count(*) FROM conversation_items WHERE deleted_at IS NOT NULL"
            ).fetchone()[0]
        assert deleted > 0
        reopened = stored_metrics(ctx)[closed["id"]]
        assert (reopened["reopen_count"], reopened["status"]) == (1, "CLOSED")
        assert_views_match(ctx, world)
