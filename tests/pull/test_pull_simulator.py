"""The pull against the bundled Gladly simulator over real HTTP: backfill, idempotency, changes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gladly_sync.simulator import DEFAULT_API_EMAIL, DEFAULT_API_TOKEN, Simulator
from gladly_sync.storage.database import Database
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.context import Context
from gladly_sync.sync.pull.export import reconcile_once
from gladly_sync.sync.pull.run import sync_once

from gladly_sync.config import load_settings

# Noon UTC: the last daily export job (ending at midnight) exists, and together with the 23 h
# events window the whole seeded history is covered, whatever the wall-clock time of the test run.
START = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)

# Columns that are allowed to differ between two runs over the same data.
VOLATILE = {"synced_at", "processed_at"}
TABLES = (
    "customers",
    "conversations",
    "conversation_items",
    "events",
    "inboxes",
    "agents",
    "topics",
    "scope_exclusions",
    "skipped_events",
    "export_jobs",
)


class SharedClock:
    """The simulator's and the product's clock: START plus real elapsed time plus ``advance``s."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return START + self.offset + timedelta(seconds=time.monotonic() - self._t0)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def write_config(
    folder: Path,
    sim: Simulator,
    *,
    ingest: tuple[str, ...] = (),
    requests_per_second: float = 500,
    escalation: str | None = None,
    snapshot: str = "null",
) -> Path:
    """A config for the simulator: its URL and credentials, a store in ``folder``, no snapshot
    unless ``snapshot`` names one."""
    config = folder / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "gladly:",
                "  organization: demo",
                f"  email: {DEFAULT_API_EMAIL}",
                f"  api_token: {DEFAULT_API_TOKEN}",
                f"  base_url: {sim.base_url}",
                f"  requests_per_second: {requests_per_second}",
                "inboxes:",
                f"  ingest: {json.dumps(list(ingest))}",
                f"  escalation: {json.dumps(escalation)}",
                "storage:",
                "  path: store.duckdb",
                f"  snapshot_path: {snapshot}",
            ]
        )
    )
    return config


def make_ctx(
    tmp_path: Path,
    sim: Simulator,
    clock: SharedClock,
    *,
    ingest: tuple[str, ...] = (),
    snapshot: str = "null",
) -> Context:
    settings = load_settings(write_config(tmp_path, sim, ingest=ingest, snapshot=snapshot), environ={})
    return Context(
        settings=settings,
        db=Database(settings.storage.path),
        client_factory=lambda: GladlyClient(settings.gladly),
        clock=clock,
    )


def tables(ctx: Context) -> dict[str, list[tuple]]:
    """Every table, whole, minus the columns that record when we wrote it."""
    found = {}
    with ctx.db.connect() as con:
        for table in TABLES:
            columns = [
                row[0] for row in con.execute(f"DESCRIBE {table}").fetchall() if row[0] not in VOLATILE
            ]
            key = columns[0]
            found[table] = con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}").fetchall()
    return found


def rows(ctx: Context, sql: str, *params: Any) -> list[tuple]:
    with ctx.db.connect() as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture
def clock() -> SharedClock:
    return SharedClock()


@pytest.fixture
def sim(clock):
    with Simulator(seed=1, customers=20, conversations=40, clock=clock) as simulator:
        yield simulator


class TestBackfill:
    def test_a_fresh_store_holds_the_whole_seeded_history(self, tmp_path, sim, clock):
        """Export jobs plus the events window bring in every conversation, item and customer."""
        ctx = make_ctx(tmp_path, sim, clock)
        summary = sync_once(ctx)
        world = sim.world
        conversations = {c["id"]: c for c in world.conversations()}
        assert summary.mode == "full" and summary.export_jobs > 0
        stored = dict(rows(ctx, "SELECT id, inbox_id FROM conversations WHERE deleted_at IS NULL"))
        assert stored == {cid: c["inboxId"] for cid, c in conversations.items()}
        items = {item["id"] for cid in conversations for item in world.items(cid)}
        assert {row[0] for row in rows(ctx, "SELECT id FROM conversation_items")} >= items
        customers = {c["customerId"] for c in conversations.values()}
        assert {row[0] for row in rows(ctx, "SELECT id FROM customers")} == customers
        assert {row[0] for row in rows(ctx, "SELECT id FROM inboxes")} == set(world.inboxes)

    def test_the_inbox_filter_keeps_only_listed_inboxes(self, tmp_path, sim, clock):
        world = sim.world
        email = world.inbox_id("Email Support")
        ctx = make_ctx(tmp_path, sim, clock, ingest=(email,))
        summary = sync_once(ctx)
        wanted = {c["id"] for c in world.conversations(inbox_id=email)}
        assert {row[0] for row in rows(ctx, "SELECT id FROM conversations")} == wanted
        assert {
            row[0] for row in rows(ctx, "SELECT DISTINCT conversation_id FROM conversation_items")
        } <= wanted
        customers = {c["customerId"] for c in world.conversations(inbox_id=email)}
        assert {row[0] for row in rows(ctx, "SELECT id FROM customers")} == customers
        assert summary.skipped_inbox_filter > 0

    def test_running_the_cycle_again_changes_nothing(self, tmp_path, sim, clock):
        """Idempotency: a second sync, and a --full re-read of every job, leave every table identical."""
        ctx = make_ctx(tmp_path, sim, clock)
        sync_once(ctx)
        first = tables(ctx)
        clock.advance(minutes=5)
        sim.reset_requests()
        quiet = sync_once(ctx)
        assert quiet.requests == len(sim.requests) <= 3
        assert tables(ctx) == first
        clock.advance(minutes=5)
        sync_once(ctx, full=True)
        assert tables(ctx) == first


class TestIncremental:
    def test_world_changes_arrive_with_the_next_sync(self, tmp_path, sim, clock):
        """New message, inbox move, close, merge, delete: each shows after one incremental sync."""
        world = sim.world
        ctx = make_ctx(tmp_path, sim, clock)
        sync_once(ctx)
        clock.advance(minutes=5)

        open_ones = [c for c in world.conversations() if c["status"] != "CLOSED"]
        talk, move, close = open_ones[0]["id"], open_ones[1]["id"], open_ones[2]["id"]
        message_id = world.new_message(talk, text="Any news on my order?")
        chat = world.inbox_id("Chat Support")
        world.move_inbox(move, chat)
        world.close(close)
        survivors = {c["customerId"] for c in open_ones[:3]}
        others = [c["id"] for c in world.customers() if c["id"] not in survivors]
        source, destination, doomed = others[0], others[1], others[2]
        world.merge_customers(source, destination)
        world.delete_profile(doomed)
        clock.advance(seconds=30)

        sim.reset_requests()
        summary = sync_once(ctx)
        assert summary.mode == "incremental"
        assert summary.requests == len(sim.requests)
        budget = 1 + 2 * summary.conversations_fetched + summary.customers_fetched + 3
        assert summary.requests <= budget

        [(text,)] = rows(ctx, "SELECT text FROM conversation_items WHERE id = ?", message_id)
        assert text.endswith("Any news on my order?")  # an email's text is subject + blank line + body
        assert rows(ctx, "SELECT inbox_id FROM conversations WHERE id = ?", move) == [(chat,)]
        assert rows(ctx, "SELECT status FROM conversations WHERE id = ?", close) == [("CLOSED",)]
        assert rows(ctx, "SELECT merged_into FROM customers WHERE id = ?", source) == [(destination,)]
        assert rows(
            ctx, "SELECT count(*) FROM conversations WHERE customer_id = ? AND deleted_at IS NULL", source
        ) == [(0,)]
        assert rows(ctx, "SELECT deleted_at IS NOT NULL, name, raw FROM customers WHERE id = ?", doomed) == [
            (True, None, None)
        ]
        live = {c["id"]: c for c in world.conversations()}
        stored = dict(rows(ctx, "SELECT id, status FROM conversations WHERE deleted_at IS NULL"))
        assert stored == {cid: c["status"] for cid, c in live.items()}

    def test_a_redaction_arrives_with_a_later_export_job(self, tmp_path, sim, clock):
        """No event is sent for a redaction; the next export job carrying the item empties it."""
        world = sim.world
        ctx = make_ctx(tmp_path, sim, clock)
        sync_once(ctx)
        redacted = next(
            item
            for c in world.conversations()
            for item in world.items(c["id"])
            if item["content"]["type"] in ("SMS", "CHAT_MESSAGE") and item["content"].get("content")
        )
        world.redact_item(redacted["id"])
        clock.advance(minutes=5)
        sync_once(ctx)  # nothing tells us yet
        assert rows(ctx, "SELECT redacted FROM conversation_items WHERE id = ?", redacted["id"]) == [(False,)]
        at = datetime.fromisoformat(redacted["timestamp"].replace("Z", "+00:00"))
        world.create_export_job(at - timedelta(minutes=1), at + timedelta(minutes=1))
        clock.advance(minutes=5)
        reconcile_once(ctx)
        text, is_redacted, raw = rows(
            ctx, "SELECT text, redacted, raw FROM conversation_items WHERE id = ?", redacted["id"]
        )[0]
        assert is_redacted and text is None
        assert redacted["content"]["content"] not in raw
