"""The drain against the Gladly simulator over real HTTP, with faults: effectively once, in order.

Every test ends by reading what Gladly (the simulator's world) holds: each queued action applied
exactly once, none lost, in queue order per conversation.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from duckdb_engine import Dialect
from gladly_sync.simulator import Simulator
from gladly_sync.simulator.timestamps import parse_timestamp
from gladly_sync.storage.outbox.schema import OUTBOX
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.context import Context, utcnow
from gladly_sync.sync.outbox.drain import DrainSummary, drain_once
from gladly_sync.sync.pacer import Backoff
from sqlalchemy.schema import CreateTable

from tests.outbox import Queue, make_settings, open_db, open_outbox

SETTLED = ("sent", "failed", "cancelled")


@pytest.fixture
def sim():
    with Simulator(seed=5, customers=4, conversations=4, rate_limit_per_second=10) as sim:
        yield sim


class Store:
    """A local store loaded from the simulator's world, and a drain wired to the simulator."""

    def __init__(
        self,
        tmp_path,
        sim: Simulator,
        *,
        requests_per_second: float = 8,
        max_attempts: int = 8,
        unknown_settle: timedelta = timedelta(seconds=2),
        timeout_seconds: float = 5,
    ):
        self.sim = sim
        self.world = sim.world
        self.escalation_inbox = self.world.inbox_id("Escalations")
        self.settings = make_settings(
            tmp_path,
            base_url=sim.base_url,
            email=sim.api_email,
            api_token=sim.api_token,
            requests_per_second=requests_per_second,
            max_attempts=max_attempts,
            escalation=self.escalation_inbox,
            unknown_settle=unknown_settle,
            timeout_seconds=timeout_seconds,
        )
        self.db = open_db(tmp_path)
        self.queue = Queue(self.db, open_outbox(tmp_path, self.db))
        self.ctx = Context(
            settings=self.settings,
            db=self.db,
            # Real HTTP and real time; only the client's backoff is shortened to keep tests quick.
            client_factory=lambda: GladlyClient(self.settings.gladly, backoff=Backoff(base=0.05, cap=0.5)),
            clock=utcnow,
            outbox_db=self.queue.database,
        )

    # ---------------------------------------------------------------- Gladly side
    def new_conversation(self, channel: str) -> str:
        customer = self.world.new_customer(email=f"c{len(self.world.customers())}@example.com")
        inbox = self.world.inbox_id("Chat Support" if channel == "CHAT_MESSAGE" else "Email Support")
        conversation_id = self.world.new_conversation(
            customer, inbox, channel=channel, text="Where is my parcel?"
        )
        self.load()
        return conversation_id

    def load(self) -> None:
        """Copy the world's conversations and items into the store (what a sync would do)."""
        with self.db.transaction() as con:
            con.execute("DELETE FROM conversation_items")
            con.execute("DELETE FROM conversations")
            for conversation in self.world.conversations():
                con.execute(
                    "INSERT INTO conversations (id, customer_id, inbox_id, status, raw) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        conversation["id"],
                        conversation["customerId"],
                        conversation["inboxId"],
                        conversation["status"],
                        json.dumps(conversation),
                    ],
                )
                for item in self.world.items(conversation["id"]):
                    content = item["content"]
                    con.execute(
                        """
                        INSERT INTO conversation_items (id, conversation_id, customer_id, timestamp,
                            content_type, initiator_type, initiator_id, text, raw, redacted)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, false)
                        """,
                        [
                            item["id"],
                            conversation["id"],
                            item["customerId"],
                            parse_timestamp(item["timestamp"]),
                            content["type"],
                            item["initiator"]["type"],
                            item["initiator"].get("id"),
                            content.get("content") or content.get("body"),
                            json.dumps(item),
                        ],
                    )

    def applied(self, conversation_id: str) -> list[tuple[str, str, str]]:
        """(item id, type, text) of every item our API user created in the conversation, in order."""
        return [
            (
                item["id"],
                item["content"]["type"],
                item["content"].get("body") or item["content"].get("content"),
            )
            for item in self.world.items_by_agent(conversation_id)
        ]

    def post_requests(self, pattern: str) -> list[Any]:
        return [r for r in self.sim.requests if r.method == "POST" and r.path.endswith(pattern)]

    # ---------------------------------------------------------------- our side
    def reply(self, conversation_id: str, body: str) -> str:
        return self.queue.enqueue_reply(conversation_id, body, now=utcnow()).row["id"]

    def note(self, conversation_id: str, body: str) -> str:
        return self.queue.enqueue_note(conversation_id, body, now=utcnow()).row["id"]

    def escalate(self, conversation_id: str, note: str | None = None) -> str:
        return self.queue.enqueue_escalation(
            conversation_id, note=note, default_inbox=self.escalation_inbox, now=utcnow()
        ).row["id"]

    def row(self, action_id: str) -> dict:
        return self.queue.get_action(action_id)

    def rows(self) -> list[dict]:
        return self.queue.list_actions()

    def drain_until_settled(self, rounds: int = 8) -> list[DrainSummary]:
        """Drain (as the daemon would, every few seconds) until nothing is open any more."""
        summaries = []
        for _ in range(rounds):
            summaries.append(drain_once(self.ctx, deadline_seconds=30))
            open_rows = [r for r in self.rows() if r["status"] not in SETTLED]
            if not open_rows:
                return summaries
            waits = [r["next_attempt_at"] for r in open_rows if r["next_attempt_at"] is not None]
            if waits:
                time.sleep(min(5.0, max(0.0, (min(waits) - utcnow()).total_seconds())))
            else:  # unknown rows wait for outbox.unknown_settle; drains meanwhile look again
                time.sleep(1.0)
        raise AssertionError(
            f"still open after {rounds} drains: {[(r['id'], r['status']) for r in open_rows]}"
        )


@pytest.fixture
def store(tmp_path, sim):
    return Store(tmp_path, sim)


def _sent_in_order(store: Store, conversation_id: str, actions: list[tuple[str, str, str]]) -> None:
    """Each (action id, item type, text) is applied exactly once, in this order, as the row's item."""
    applied = store.applied(conversation_id)
    assert [(kind, text) for _, kind, text in applied] == [(kind, text) for _, kind, text in actions]
    for (item_id, _, _), (action_id, _, _) in zip(applied, actions, strict=True):
        row = store.row(action_id)
        assert (row["status"], row["gladly_item_id"]) == ("sent", item_id)


class TestFaults:
    def test_every_action_applied_exactly_once_in_order_despite_faults(self, store, sim):
        """5xx after apply, a response lost after apply, 429 bursts and a reset before apply:
        every action lands exactly once, none is lost, and each conversation keeps queue order."""
        channels = ["EMAIL", "CHAT_MESSAGE", "SMS", "EMAIL"]
        conversations = [store.new_conversation(channel) for channel in channels]
        expected: dict[str, list[tuple[str, str, str]]] = {}
        for n, (conversation_id, channel) in enumerate(zip(conversations, channels, strict=True)):
            plan = [
                (channel, f"Reply {n}a: your parcel left the depot."),
                ("CONVERSATION_NOTE", f"Note {n}b: customer asked twice"),
                (channel, f"Reply {n}c: tracking number follows."),
            ]
            expected[conversation_id] = [
                (
                    store.reply(conversation_id, text)
                    if kind != "CONVERSATION_NOTE"
                    else store.note(conversation_id, text),
                    kind,
                    text,
                )
                for kind, text in plan
            ]
        sim.faults.add(method="POST", path=r"/reply$", kind="error_after_apply", status=500, times=1)
        sim.faults.add(method="POST", path=r"/notes$", kind="drop_after_apply", times=1)
        sim.faults.add(method="POST", path=r"/reply$", kind="status", status=429, times=3)
        sim.faults.add(method="POST", path=r"/notes$", kind="reset_before_apply", times=1)
        sim.faults.add(method="POST", path=r"/reply$", kind="drop_after_apply", times=1)

        summaries = store.drain_until_settled()

        assert len(sim.faults) == 0, "every fault was hit"
        for conversation_id, actions in expected.items():
            _sent_in_order(store, conversation_id, actions)
        assert sum(s.reconciled for s in summaries) >= 3  # the three applied-but-unanswered requests
        assert sum(s.rate_limited for s in summaries) >= 3

    def test_429_bursts_are_retried_and_counted_once(self, store, sim):
        """Bursts of 429 on every POST: all sent, one attempt each, nothing unknown."""
        conversations = [store.new_conversation("EMAIL") for _ in range(3)]
        actions = {
            c: [
                (store.note(c, f"note {c[:4]} {i}"), "CONVERSATION_NOTE", f"note {c[:4]} {i}")
                for i in range(3)
            ]
            for c in conversations
        }
        for _ in range(3):
            sim.faults.add(method="POST", kind="status", status=429, times=4)
        summaries = store.drain_until_settled()
        for conversation_id, expected in actions.items():
            _sent_in_order(store, conversation_id, expected)
        assert all(row["attempts"] == 1 for row in store.rows())
        assert sum(s.unknown for s in summaries) == 0
        assert sum(s.rate_limited for s in summaries) == 12

    def test_drain_killed_after_the_request_applied(self, store, sim):
        """A row left sending after Gladly applied it (the drain died before marking) is reconciled,
        never resent."""
        conversation_id = store.new_conversation("EMAIL")
        note = store.note(conversation_id, "Customer called about a refund")
        reply = store.reply(conversation_id, "We refunded you today.")
        store.queue.mark_sending(note, utcnow() - timedelta(seconds=10))
        # The request the dead drain sent, as Gladly applied it.
        store.world.add_note(conversation_id, "Customer called about a refund")
        summaries = store.drain_until_settled()
        assert store.post_requests("/notes") == []
        _sent_in_order(
            store,
            conversation_id,
            [
                (note, "CONVERSATION_NOTE", "Customer called about a refund"),
                (reply, "EMAIL", "We refunded you today."),
            ],
        )
        assert summaries[0].reconciled == 1

    def test_drain_killed_before_the_request_left(self, store, sim):
        """A row left sending whose request never reached Gladly is sent once after reconciling."""
        conversation_id = store.new_conversation("CHAT_MESSAGE")
        note = store.note(conversation_id, "Lost in the crash")
        store.queue.mark_sending(note, utcnow() - timedelta(seconds=10))
        store.drain_until_settled()
        _sent_in_order(store, conversation_id, [(note, "CONVERSATION_NOTE", "Lost in the crash")])
        assert store.row(note)["attempts"] == 2
        assert len(store.post_requests("/notes")) == 1


class TestRefusals:
    def test_reply_to_closed_conversation_fails_with_gladlys_message(self, store, sim):
        """Gladly refuses a reply on a closed conversation: failed with its code and detail; the
        note queued after it still goes out."""
        conversation_id = store.new_conversation("EMAIL")
        reply = store.reply(conversation_id, "Too late?")
        note = store.note(conversation_id, "Reply was refused")
        store.world.close(conversation_id)
        store.drain_until_settled()
        row = store.row(reply)
        assert (row["status"], row["last_error"]) == (
            "failed",
            "invalid: you cannot reply to items in closed conversations",
        )
        _sent_in_order(store, conversation_id, [(note, "CONVERSATION_NOTE", "Reply was refused")])


class TestEscalations:
    def test_escalated_conversations_sit_in_the_escalation_inbox(self, store, sim):
        """Open and closed conversations move to the escalation inbox, unassigned, notes once each,
        despite a lost note response and a 5xx after a PATCH applied."""
        open_one = store.new_conversation("EMAIL")
        closed_one = store.new_conversation("SMS")
        silent_one = store.new_conversation("CHAT_MESSAGE")
        store.world.close(closed_one)
        store.load()
        rows = {
            open_one: store.escalate(open_one, note="VIP, call back today"),
            closed_one: store.escalate(closed_one, note="Reopened for billing"),
            silent_one: store.escalate(silent_one),
        }
        sim.faults.add(method="POST", path=r"/notes$", kind="drop_after_apply", times=1)
        sim.faults.add(method="PATCH", path=r"/conversations/", kind="error_after_apply", status=500, times=1)

        store.drain_until_settled()

        for conversation_id, action_id in rows.items():
            conversation = store.world.conversation(conversation_id)
            assert conversation["inboxId"] == store.escalation_inbox
            assert conversation["status"] != "CLOSED"
            assert "agentId" not in conversation or conversation["agentId"] is None
            row = store.row(action_id)
            assert (row["status"], row["gladly_item_id"]) == ("sent", None)
        notes = {c: [text for _, kind, text in store.applied(c) if kind == "CONVERSATION_NOTE"] for c in rows}
        assert notes == {
            open_one: ["VIP, call back today"],
            closed_one: ["Reopened for billing"],
            silent_one: [],
        }
        assert store.row(rows[open_one])["note_item_id"] == store.applied(open_one)[0][0]
        patches = [r for r in sim.requests if r.method == "PATCH"]
        assert patches and all(b"agentId" not in r.body for r in patches)
        assert len(sim.faults) == 0


class TestThroughput:
    def test_drains_at_least_nine_actions_per_second_at_ten_posts_per_second(self, tmp_path, sim):
        """Many conversations drain concurrently at the rate budget (bound kept generous here;
        the benchmark measures the figure)."""
        store = Store(tmp_path, sim, requests_per_second=10)
        conversations = [store.new_conversation("EMAIL") for _ in range(12)]
        for conversation_id in conversations:
            for i in range(3):
                store.note(conversation_id, f"bulk note {i}")
        started = datetime.now().timestamp()
        summary = drain_once(store.ctx, deadline_seconds=60)
        elapsed = datetime.now().timestamp() - started
        assert summary.sent == 36
        assert 36 / elapsed >= 4.5, f"{36 / elapsed:.1f} actions/s"
        for conversation_id in conversations:
            assert [text for _, _, text in store.applied(conversation_id)] == [
                f"bulk note {i}" for i in range(3)
            ]


class TestLateApply:
    def test_posts_gladly_applies_after_our_timeout_are_delivered_once(self, tmp_path, sim):
        """Gladly applies each POST seconds after our read timeout fired (timeout 1 s, applied
        after 4 s) while a drain runs every second, as the daemon would: every action is delivered
        exactly once (the first release sent half of them twice) and ends sent with its item."""
        store = Store(tmp_path, sim, unknown_settle=timedelta(minutes=10), timeout_seconds=1)
        conversations = [store.new_conversation(channel) for channel in ("EMAIL", "CHAT_MESSAGE", "SMS")]
        expected = {
            c: [
                (store.reply(c, f"Reply to {c[:6]}"), "reply", f"Reply to {c[:6]}"),
                (store.note(c, f"Note on {c[:6]}"), "CONVERSATION_NOTE", f"Note on {c[:6]}"),
            ]
            for c in conversations
        }
        sim.faults.add(method="POST", kind="apply_late", seconds=4, times=6)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            drain_once(store.ctx, deadline_seconds=20)
            if all(r["status"] == "sent" for r in store.rows()):
                break
            time.sleep(1)
        assert len(sim.faults) == 0, "every POST was applied late"
        for conversation_id, actions in expected.items():
            applied = store.applied(conversation_id)
            assert [text for _, _, text in applied] == [text for _, _, text in actions]
            for (item_id, _, _), (action_id, _, _) in zip(applied, actions, strict=True):
                assert (store.row(action_id)["status"], store.row(action_id)["gladly_item_id"]) == (
                    "sent",
                    item_id,
                )
        assert len([r for r in sim.requests if r.method == "POST"]) == 6


class TestConcurrentDrains:
    def test_two_drains_at_once_never_send_one_row_twice(self, tmp_path, sim):
        """Two drains (each its own connections to the outbox database) working the same queue at
        the same time: every action applied exactly once, in order per conversation."""
        store = Store(tmp_path, sim, requests_per_second=10)
        conversations = [store.new_conversation("EMAIL") for _ in range(6)]
        for conversation_id in conversations:
            for i in range(3):
                store.note(conversation_id, f"note {i}")
        sim.faults.add(method="POST", path=r"/notes$", kind="drop_after_apply", times=2)
        other = Context(
            settings=store.settings,
            db=store.db,
            client_factory=store.ctx.client_factory,
            clock=utcnow,
        )
        for _ in range(6):
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda ctx: drain_once(ctx, deadline_seconds=30), [store.ctx, other]))
            if all(r["status"] == "sent" for r in store.rows()):
                break
            time.sleep(2.5)
        for conversation_id in conversations:
            assert [text for _, _, text in store.applied(conversation_id)] == [f"note {i}" for i in range(3)]
        assert all(r["status"] == "sent" for r in store.rows())


@pytest.mark.duckdb_only
class TestUpgrade:
    def test_rows_queued_by_the_first_release_are_sent_once(self, tmp_path, sim):
        """A store from the first release with pending, sent and unknown rows: after the upgrade
        the pending row is sent once, the unknown one (applied before the crash) is reconciled, and
        the sent one is left alone."""
        probe = Store(tmp_path / "probe", sim)
        conversation_id = probe.new_conversation("EMAIL")
        applied_id = sim.world.add_note(conversation_id, "Applied before the upgrade")
        old = open_db(tmp_path)
        probe.db = old
        probe.load()
        with old.transaction() as con:
            con.execute(str(CreateTable(OUTBOX).compile(dialect=Dialect())))
            now = utcnow()
            for action_id, status, body, attempted, item, seq in [
                ("old-sent", "sent", "Sent long ago", now, "item-x", 1),
                ("old-unknown", "unknown", "Applied before the upgrade", now, None, 2),
                ("old-pending", "pending", "Still to send", None, None, 3),
            ]:
                con.execute(
                    "INSERT INTO outbox (id, kind, conversation_id, body, body_is_html, status, attempts, "
                    "last_attempt_at, gladly_item_id, created_at, seq) "
                    "VALUES (?, 'note', ?, ?, false, ?, ?, ?, ?, ?, ?)",
                    [
                        action_id,
                        conversation_id,
                        body,
                        status,
                        int(attempted is not None),
                        attempted,
                        item,
                        now,
                        seq,
                    ],
                )
        store = Store(tmp_path, sim)
        store.drain_until_settled()
        assert [text for _, _, text in store.applied(conversation_id)] == [
            "Applied before the upgrade",
            "Still to send",
        ]
        states = {r["id"]: (r["status"], r["gladly_item_id"]) for r in store.rows()}
        assert states["old-sent"] == ("sent", "item-x")
        assert states["old-unknown"] == ("sent", applied_id)
        assert states["old-pending"][0] == "sent"
        assert len(store.post_requests("/notes")) == 1
