"""sync_once against a small in-memory Gladly (respx): what is requested, what is stored, what moves."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import structlog
from gladly_sync.storage.database import Database
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.context import Context
from gladly_sync.sync.pacer import Pacer
from gladly_sync.sync.pull.export import reconcile_once
from gladly_sync.sync.pull.run import SyncSummary, sync_once
from gladly_sync.sync.runs import record_skipped, run_job
from structlog.testing import capture_logs

from gladly_sync.config import load_settings
from gladly_sync.errors import MalformedResponse, UsageError
from tests.clocks import WallClock

API = "https://acme.gladly.com/api/v1"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOKEN = "test-token-9f8e7d"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def not_found(what: str) -> httpx.Response:
    return httpx.Response(404, json={"errors": [{"code": "not_exist", "detail": f"{what} does not exist"}]})


def ndjson(objects: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(obj) + "\n" for obj in objects).encode()


# --------------------------------------------------------------------------- a tiny Gladly


@dataclass
class FakeGladly:
    """Gladly's read endpoints over dicts the test fills in; ``calls`` records (method, path, params)."""

    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    limited: set[str] = field(default_factory=set)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    events_body: str | None = None  # a raw body replacing ``events`` (a malformed page)
    items_body: dict[str, str] = field(default_factory=dict)  # raw bodies of items lists
    jobs: list[dict[str, Any]] = field(default_factory=list)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    inboxes: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": "in-a", "name": "A"}, {"id": "in-b", "name": "B"}]
    )
    calls: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    clock: Callable[[], datetime] | None = None  # the host's clock; Gladly's is it + ``offset``
    offset: timedelta = timedelta()

    def conversation(self, cid: str, customer: str, inbox: str = "in-a", **extra: Any) -> dict[str, Any]:
        self.conversations[cid] = {
            "id": cid,
            "customerId": customer,
            "inboxId": inbox,
            "status": "OPEN",
            "createdAt": "2024-05-01T10:00:00Z",
            **extra,
        }
        self.items.setdefault(cid, [])
        return self.conversations[cid]

    def message(self, cid: str, item_id: str, text: str, at: str = "2024-05-01T10:00:00Z") -> dict[str, Any]:
        customer = self.conversations[cid]["customerId"]
        item = {
            "id": item_id,
            "conversationId": cid,
            "customerId": customer,
            "timestamp": at,
            "initiator": {"id": customer, "type": "CUSTOMER"},
            "content": {"type": "SMS", "content": text},
        }
        self.items.setdefault(cid, []).append(item)
        return item

    def customer(self, customer_id: str, name: str = "Pat") -> dict[str, Any]:
        email = f"{customer_id}@example.com"
        self.customers[customer_id] = {
            "id": customer_id,
            "name": name,
            "emails": [{"original": email, "normalized": email, "primary": True}],
            "phones": [],
            "createdAt": "2024-04-01T00:00:00Z",
            "updatedAt": "2024-04-01T00:00:00Z",
        }
        return self.customers[customer_id]

    def event(self, event_id: str, kind: str, at: datetime, **content: Any) -> dict[str, Any]:
        event = {
            "id": event_id,
            "type": kind,
            "timestamp": iso(at),
            "initiator": {"type": "AGENT"},
            "content": content,
        }
        self.events.append(event)
        return event

    def paths(self, pattern: str = "") -> list[str]:
        return [path for _, path, _ in self.calls if re.search(pattern, path)]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        params: dict[str, list[str]] = {}
        for key, value in request.url.params.multi_items():
            params.setdefault(key, []).append(value)
        self.calls.append((request.method, path, params))
        if request.method != "GET":
            return httpx.Response(405)
        if path == "/events":
            body = self.events_body
            if body is None:
                body = "".join(json.dumps(e) + "\n" for e in self.events)
            headers = {"Content-Type": "application/x-jsonlines"}
            if self.clock is not None:
                headers["Date"] = format_datetime(self.clock() + self.offset, usegmt=True)
            return httpx.Response(200, text=body, headers=headers)
        if match := re.fullmatch(r"/conversation-items/([^/]+)", path):
            found = [i for items in self.items.values() for i in items if i["id"] == match.group(1)]
            return httpx.Response(200, json=found[0]) if found else not_found("conversation item")
        if match := re.fullmatch(r"/conversations/([^/]+)/items", path):
            cid = match.group(1)
            if cid in self.items_body:
                return httpx.Response(
                    200, text=self.items_body[cid], headers={"Content-Type": "application/json"}
                )
            if cid not in self.conversations:
                return not_found("conversation")
            headers = {"Gladly-Limited-Data": "true"} if cid in self.limited else {}
            return httpx.Response(200, json=self.items.get(cid, []), headers=headers)
        if match := re.fullmatch(r"/conversations/([^/]+)", path):
            conversation = self.conversations.get(match.group(1))
            return httpx.Response(200, json=conversation) if conversation else not_found("conversation")
        if match := re.fullmatch(r"/customer-profiles/([^/]+)", path):
            cid = match.group(1)
            if cid in self.moved:
                meta = {"old": cid, "new": self.moved[cid]}
                error = {
                    "attr": "customerId",
                    "code": "moved",
                    "detail": "customer id has changed",
                    "meta": meta,
                }
                return httpx.Response(301, json={"errors": [error]})
            customer = self.customers.get(cid)
            return httpx.Response(200, json=customer) if customer else not_found("customer profile")
        if path == "/export/jobs":
            return httpx.Response(200, json=self.jobs)
        if match := re.fullmatch(r"/export/jobs/([^/]+)/files/([^/]+)", path):
            body = self.files.get((match.group(1), match.group(2)))
            if body is None:
                return not_found("file")
            return httpx.Response(200, content=body, headers={"Content-Type": "application/x-ndjson"})
        if path == "/organization":
            organization = {"id": "org-acme", "name": "Acme", "timezone": "America/New_York"}
            return httpx.Response(200, json=organization)
        if path == "/inboxes":
            return httpx.Response(200, json=self.inboxes)
        if path in ("/agents", "/topics"):
            return httpx.Response(200, json=[])
        return not_found(path)


@dataclass
class Env:
    ctx: Context
    gladly: FakeGladly
    clock: WallClock

    def sync(self, **options: Any) -> SyncSummary:
        before = len(self.gladly.calls)
        summary = sync_once(self.ctx, **options)
        self.last_calls = self.gladly.calls[before:]
        return summary

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        with self.ctx.db.connect() as con:
            return con.execute(sql, list(params)).fetchall()

    def cursor(self, stream: str = "events") -> str | None:
        found = self.rows("SELECT cursor FROM sync_state WHERE stream = ?", stream)
        return found[0][0] if found else None


def make_env(
    tmp_path: Path,
    router: respx.Router,
    *,
    ingest: tuple[str, ...] = (),
    escalation: str | None = None,
    snapshot: bool = False,
) -> Env:
    config = tmp_path / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "gladly:",
                "  organization: acme",
                "  email: api@acme.com",
                f"  api_token: {TOKEN}",
                "  requests_per_second: 1000",
                "inboxes:",
                f"  ingest: {json.dumps(list(ingest))}",
                f"  escalation: {json.dumps(escalation)}",
                "storage:",
                "  path: store.duckdb",
                "  snapshot_path: " + ("read.duckdb" if snapshot else "null"),
                "schedule:",
                "  reconcile_every: 6h",
            ]
        )
    )
    settings = load_settings(config, environ={})
    clock = WallClock(T0)
    gladly = FakeGladly(clock=clock)
    router.route(path__regex=r".*").mock(side_effect=gladly.handle)

    def client() -> GladlyClient:
        return GladlyClient(settings.gladly, pacer=Pacer(1000.0, sleep=lambda _: None), sleep=lambda _: None)

    ctx = Context(settings=settings, db=Database(settings.storage.path), client_factory=client, clock=clock)
    return Env(ctx, gladly, clock)


@pytest.fixture
def router():
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def env(tmp_path, router) -> Env:
    return make_env(tmp_path, router)


def seed_one(env: Env) -> None:
    """c1 (in-a) of customer u1 with one message, and the event that announces it; synced once."""
    env.gladly.customer("u1")
    env.gladly.conversation("c1", "u1", "in-a")
    env.gladly.message("c1", "i1", "hello")
    env.gladly.event(
        "e1",
        "CONVERSATION/CREATED",
        T0 - timedelta(minutes=5),
        conversationId="c1",
        customerId="u1",
        context={"assignee": {"inboxId": "in-a"}},
    )
    env.sync()


# --------------------------------------------------------------------------- cursor


class TestCursor:
    def test_fresh_store_polls_23_hours_back_and_saves_gladlys_end_minus_2_minutes(self, env):
        """The first poll starts 23 h back with the four entities and no endAt; the cursor becomes
        Gladly's Date minus 2 min."""
        summary = env.sync()
        polls = [params for _, path, params in env.last_calls if path == "/events"]
        assert polls == [
            {
                "startAt": [iso(T0 - timedelta(hours=23))],
                "entities": ["CONVERSATION", "CONTACT", "CUSTOMER", "CUSTOMER_PROFILE"],
            }
        ]
        assert datetime.fromisoformat(env.cursor()) == T0 - timedelta(minutes=2)
        assert summary.mode == "full" and summary.reconciled
        assert summary.events_end_at == iso(T0).replace(".000Z", "+00:00")
        assert datetime.fromisoformat(env.cursor("reconcile")) == T0

    def test_cursor_moves_on_a_quiet_poll_and_the_next_poll_overlaps(self, env):
        """With no events the cursor still moves to endAt - 2 min; the next poll starts there."""
        env.sync()
        now = env.clock.advance(minutes=5)
        summary = env.sync()
        assert [params["startAt"] for _, path, params in env.last_calls if path == "/events"] == [
            [iso(T0 - timedelta(minutes=2))]
        ]
        assert datetime.fromisoformat(env.cursor()) == now - timedelta(minutes=2)
        assert summary.mode == "incremental" and summary.requests == 1 and not summary.reconciled

    @pytest.mark.parametrize("skew", [timedelta(minutes=-10), timedelta(minutes=7)])
    def test_the_end_is_gladlys_clock_not_the_hosts(self, env, skew):
        """With the host clock off from Gladly's, the cursor follows the Date header of the events
        response: Gladly's now minus 2 min."""
        env.gladly.offset = skew
        env.sync()
        assert datetime.fromisoformat(env.cursor()) == T0 + skew - timedelta(minutes=2)

    def test_without_a_date_header_the_host_clock_is_the_end(self, env):
        """No Date header: the host's clock stands in, with a warning, and the margin still applies."""
        env.gladly.clock = None
        with capture_logs() as logs:
            env.sync()
        assert datetime.fromisoformat(env.cursor()) == T0 - timedelta(minutes=2)
        assert any(log["event"] == "events_date_missing" for log in logs)

    def test_a_quiet_run_makes_one_request(self, env):
        """A no-change incremental run with no reconcile due is just the events poll."""
        seed_one(env)
        env.clock.advance(minutes=5)
        summary = env.sync()  # e1 comes again in the overlap: known, nothing is dirty
        assert [path for _, path, _ in env.last_calls] == ["/events"]
        assert summary.requests == 1 and summary.events_seen == 1 and summary.events_new == 0

    def test_reconcile_every_triggers_the_export_pass(self, env):
        """A plain sync runs the export pass and refreshes the organization and reference lists once
        reconcile_every has passed."""
        env.sync()
        env.clock.advance(hours=6)
        summary = env.sync()
        assert summary.reconciled
        assert [path for _, path, _ in env.last_calls] == [
            "/events",
            "/export/jobs",
            "/organization",
            "/inboxes",
            "/agents",
            "/topics",
        ]

    def test_summary_is_json_serialisable(self, env):
        seed_one(env)
        summary = env.sync()
        data = json.loads(json.dumps(summary.to_dict()))
        assert data["run_id"] == summary.run_id and data["mode"] == "incremental"
        run = env.rows("SELECT status, requests, job FROM sync_runs WHERE run_id = ?", summary.run_id)
        assert run == [("ok", 1, "sync")]


# --------------------------------------------------------------------------- what is stored


class TestIncremental:
    def test_a_new_conversation_is_stored_with_items_customer_and_event(self, env):
        """A conversation named by an event: conversation, items, its customer and the event are stored."""
        seed_one(env)
        assert env.rows("SELECT id, customer_id, inbox_id, status FROM conversations") == [
            ("c1", "u1", "in-a", "OPEN")
        ]
        assert env.rows("SELECT id, conversation_id, text FROM conversation_items") == [("i1", "c1", "hello")]
        assert env.rows("SELECT id, name, primary_email FROM customers") == [("u1", "Pat", "u1@example.com")]
        assert env.rows("SELECT id, conversation_id FROM events") == [("e1", "c1")]

    def test_an_event_id_seen_before_makes_nothing_dirty(self, env):
        """The overlap re-delivers e1; c1 is not fetched again, and events stay unique."""
        seed_one(env)
        env.gladly.message("c1", "i2", "ignored until a new event")
        env.clock.advance(minutes=5)
        env.sync()
        assert env.gladly.paths("/conversations/c1$") == ["/conversations/c1"]
        assert env.rows("SELECT count(*) FROM conversation_items") == [(1,)]
        env.gladly.event(
            "e2",
            "CONTACT/MESSAGE_RECEIVED",
            env.clock.now - timedelta(seconds=20),
            conversationId="c1",
            customerId="u1",
        )
        env.clock.advance(minutes=5)
        summary = env.sync()
        assert summary.events_new == 1 and summary.conversations_fetched == 1
        assert env.rows("SELECT id FROM conversation_items ORDER BY id") == [("i1",), ("i2",)]
        assert env.rows("SELECT id FROM events ORDER BY id") == [("e1",), ("e2",)]

    def test_a_closed_conversation_is_updated(self, env):
        seed_one(env)
        env.gladly.conversations["c1"].update(status="CLOSED", closedAt="2024-05-01T12:01:00Z")
        env.gladly.event(
            "e2", "CONVERSATION/CLOSED", T0 + timedelta(minutes=1), conversationId="c1", customerId="u1"
        )
        env.clock.advance(minutes=5)
        env.sync()
        assert env.rows("SELECT status, closed_at IS NOT NULL FROM conversations") == [("CLOSED", True)]

    def test_a_redaction_shows_when_items_are_listed_again(self, env):
        """Gladly sends no redaction event: the emptied item arrives with the next re-listing."""
        seed_one(env)
        env.gladly.items["c1"][0]["content"] = {"type": "SMS", "content": ""}
        env.gladly.message("c1", "i2", "more")
        env.gladly.event("e2", "CONTACT/MESSAGE_RECEIVED", T0 + timedelta(minutes=1), conversationId="c1")
        env.clock.advance(minutes=5)
        env.sync()
        assert env.rows("SELECT id, redacted, text FROM conversation_items ORDER BY id") == [
            ("i1", True, None),
            ("i2", False, "more"),
        ]
        raw = env.rows("SELECT raw FROM conversation_items WHERE id = 'i1'")[0][0]
        assert "hello" not in raw

    def test_a_cut_item_list_is_completed_from_the_items_its_events_name(self, env):
        """Gladly-Limited-Data: the listed items are stored, the items the events name that the list
        lacks are read one by one, nothing is marked deleted, and the run counts the cut list."""
        env.gladly.customer("u1")
        env.gladly.conversation("c1", "u1")
        env.gladly.message("c1", "i1", "one")
        env.gladly.limited.add("c1")
        env.gladly.event("e1", "CONVERSATION/CREATED", T0 - timedelta(minutes=1), conversationId="c1")
        with capture_logs() as logs:
            summary = env.sync()
        assert summary.lists_cut == 1 and summary.items_completed == 0
        assert any(log["event"] == "item_list_cut" and log["conversation_id"] == "c1" for log in logs)

        newer = env.gladly.message("c1", "i2", "the newest")
        env.gladly.items["c1"].remove(newer)  # beyond the cut: only GET /conversation-items/i2 has it
        env.gladly.items["elsewhere"] = [newer]
        env.gladly.event(
            "e2", "CONTACT/MESSAGE_RECEIVED", T0 + timedelta(minutes=1), conversationId="c1", messageId="i2"
        )
        env.gladly.event(  # names a stored item: no request for it
            "e3", "CONTACT/MESSAGE_SENT", T0 + timedelta(minutes=2), conversationId="c1", messageId="i1"
        )
        env.clock.advance(minutes=5)
        summary = env.sync()
        assert summary.lists_cut == 1 and summary.items_completed == 1
        assert [path for _, path, _ in env.last_calls if path.startswith("/conversation-items/")] == [
            "/conversation-items/i2"
        ]
        assert env.rows("SELECT id, text, deleted_at FROM conversation_items ORDER BY id") == [
            ("i1", "one", None),
            ("i2", "the newest", None),
        ]

    def test_snapshot_is_published_after_a_successful_run(self, tmp_path, router):
        env = make_env(tmp_path, router, snapshot=True)
        seed_one(env)
        assert (tmp_path / "read.duckdb").exists()


# --------------------------------------------------------------------------- inbox filter


class TestInboxFilter:
    @pytest.fixture
    def env(self, tmp_path, router) -> Env:
        return make_env(tmp_path, router, ingest=("in-a",), escalation="in-esc")

    def test_out_of_scope_conversations_are_counted_not_stored(self, env):
        """A conversation in another inbox costs one GET (no items), is counted and remembered as skipped."""
        env.gladly.customer("u1")
        env.gladly.customer("u2")
        env.gladly.conversation("c1", "u1", "in-a")
        env.gladly.conversation("c2", "u2", "in-b")
        env.gladly.message("c2", "i2", "elsewhere")
        env.gladly.event("e1", "CONTACT/MESSAGE_RECEIVED", T0 - timedelta(minutes=2), conversationId="c1")
        env.gladly.event("e2", "CONTACT/MESSAGE_RECEIVED", T0 - timedelta(minutes=1), conversationId="c2")
        summary = env.sync()
        assert summary.skipped_inbox_filter == 1
        assert (
            "/conversations/c2/items" not in env.gladly.paths()
            and "/customer-profiles/u2" not in env.gladly.paths()
        )
        assert env.rows("SELECT id FROM conversations") == [("c1",)]
        assert env.rows("SELECT id FROM events") == [("e1",)]
        assert env.rows("SELECT id FROM skipped_events") == [("e2",)]
        assert env.rows("SELECT conversation_id, inbox_id FROM scope_exclusions") == [("c2", "in-b")]

    def test_an_inbox_hint_outside_the_scope_saves_the_get(self, env):
        """An unstored conversation whose newest event names another inbox is not fetched at all."""
        env.gladly.conversation("c3", "u3", "in-b")
        env.gladly.event(
            "e1",
            "CONVERSATION/CREATED",
            T0 - timedelta(minutes=1),
            conversationId="c3",
            customerId="u3",
            context={"assignee": {"inboxId": "in-b"}},
        )
        summary = env.sync()
        assert env.gladly.paths("^/conversations") == []
        assert summary.skipped_inbox_filter == 1
        assert env.rows("SELECT id FROM skipped_events") == [("e1",)]
        env.clock.advance(minutes=5)
        again = env.sync()
        assert again.requests == 1 and again.skipped_inbox_filter == 0

    def test_a_conversation_moved_out_keeps_its_last_state(self, env):
        """Moved to another inbox: the stored row and items stay as they were and stop updating."""
        seed_one(env)
        before = env.rows("SELECT id, inbox_id, status, raw FROM conversations")
        env.gladly.conversations["c1"]["inboxId"] = "in-b"
        env.gladly.message("c1", "i2", "after the move")
        env.gladly.event(
            "e2",
            "CONVERSATION_ASSIGNEE/UPDATED",
            T0 + timedelta(minutes=1),
            conversationId="c1",
            assignee={"inboxId": "in-b"},
            context={"assignee": {"inboxId": "in-a"}},
        )
        env.clock.advance(minutes=5)
        summary = env.sync()
        assert summary.skipped_inbox_filter == 1
        assert env.rows("SELECT id, inbox_id, status, raw FROM conversations") == before
        assert env.rows("SELECT id FROM conversation_items") == [("i1",)]
        assert env.rows("SELECT conversation_id, inbox_id FROM scope_exclusions") == [("c1", "in-b")]

    def test_a_stored_conversation_escalated_stays_in_scope(self, env):
        """The escalation inbox keeps conversations we already store."""
        seed_one(env)
        env.gladly.conversations["c1"]["inboxId"] = "in-esc"
        env.gladly.event(
            "e2",
            "CONVERSATION_ASSIGNEE/UPDATED",
            T0 + timedelta(minutes=1),
            conversationId="c1",
            assignee={"inboxId": "in-esc"},
        )
        env.clock.advance(minutes=5)
        summary = env.sync()
        assert summary.skipped_inbox_filter == 0
        assert env.rows("SELECT inbox_id FROM conversations") == [("in-esc",)]


# --------------------------------------------------------------------------- merges and erasures


class TestMerges:
    def test_customer_merged_event(self, env):
        """CUSTOMER/MERGED: the old row stays with merged_into, the survivor is fetched, rows re-pointed."""
        seed_one(env)
        env.gladly.customer("u2", name="Survivor")
        env.gladly.conversations["c1"]["customerId"] = "u2"
        for item in env.gladly.items["c1"]:
            item["customerId"] = "u2"
        env.gladly.moved["u1"] = "u2"
        env.gladly.event(
            "e2",
            "CUSTOMER/MERGED",
            T0 + timedelta(minutes=1),
            sourceCustomerId="u1",
            destinationCustomerId="u2",
            sourceConversationId="c1",
            destinationConversationId="c1",
        )
        env.clock.advance(minutes=5)
        env.sync()
        assert env.rows("SELECT id, merged_into, name FROM customers ORDER BY id") == [
            ("u1", "u2", "Pat"),
            ("u2", None, "Survivor"),
        ]
        assert env.rows("SELECT customer_id FROM conversations") == [("u2",)]
        assert env.rows("SELECT customer_id FROM conversation_items") == [("u2",)]
        assert ("e2",) in env.rows("SELECT id FROM events")
        assert env.gladly.paths("customer-profiles/u1$") == ["/customer-profiles/u1"]  # only the first sync

    def test_a_301_on_a_profile_is_a_merge(self, env):
        """A profile update answered 301: the merge is applied and the surviving customer fetched."""
        seed_one(env)
        env.gladly.customer("u2", name="Survivor")
        env.gladly.moved["u1"] = "u2"
        env.gladly.event("e2", "CUSTOMER_PROFILE/UPDATED", T0 + timedelta(minutes=1), customerId="u1")
        env.clock.advance(minutes=5)
        summary = env.sync()
        assert env.rows("SELECT id, merged_into FROM customers ORDER BY id") == [("u1", "u2"), ("u2", None)]
        assert env.rows("SELECT customer_id FROM conversations") == [("u2",)]
        assert summary.customers_fetched == 2

    def test_a_conversation_gone_in_a_merge_gets_deleted_at(self, env):
        """404 with no redirect for a stored conversation: it (and its items) get deleted_at."""
        seed_one(env)
        del env.gladly.conversations["c1"]
        env.gladly.event("e2", "CONVERSATION/CLOSED", T0 + timedelta(minutes=1), conversationId="c1")
        env.clock.advance(minutes=5)
        env.sync()
        assert env.rows("SELECT deleted_at IS NOT NULL FROM conversations") == [(True,)]
        assert env.rows("SELECT deleted_at IS NOT NULL FROM conversation_items") == [(True,)]


class TestErasure:
    def test_a_deleted_profile_is_erased(self, env):
        """CUSTOMER_PROFILE/DELETED: deleted_at set, personal columns and raw blanked, no GET."""
        seed_one(env)
        env.gladly.event("e2", "CUSTOMER_PROFILE/DELETED", T0 + timedelta(minutes=1), customerId="u1")
        env.clock.advance(minutes=5)
        summary = env.sync()
        assert env.rows("SELECT deleted_at IS NOT NULL, name, primary_email, raw FROM customers") == [
            (True, None, None, None)
        ]
        assert summary.requests == 1

    def test_a_profile_answering_404_is_erased(self, env):
        seed_one(env)
        del env.gladly.customers["u1"]
        env.gladly.event("e2", "CUSTOMER_PROFILE/UPDATED", T0 + timedelta(minutes=1), customerId="u1")
        env.clock.advance(minutes=5)
        env.sync()
        assert env.rows("SELECT deleted_at IS NOT NULL, name FROM customers") == [(True, None)]

    def test_profile_events_of_customers_not_in_scope_are_skipped(self, env):
        """A profile we do not store is not fetched; its event is remembered as skipped."""
        env.gladly.customer("stranger")
        env.gladly.event("e1", "CUSTOMER_PROFILE/UPDATED", T0 - timedelta(minutes=1), customerId="stranger")
        env.sync()
        assert env.gladly.paths("customer-profiles") == []
        assert env.rows("SELECT id FROM skipped_events") == [("e1",)]


# --------------------------------------------------------------------------- failures


class TestFailures:
    def test_a_malformed_events_page_fails_and_keeps_cursor_and_rows(self, env):
        seed_one(env)
        cursor = env.cursor()
        before = env.rows("SELECT * FROM conversations")
        env.gladly.events_body = (
            '{"id": "e9", "type": "CONTACT/MESSAGE_RECEIVED", "timestamp": "x"}\n{not json\n'
        )
        env.clock.advance(minutes=5)
        with pytest.raises(MalformedResponse):
            env.sync()
        assert env.cursor() == cursor
        assert env.rows("SELECT * FROM conversations") == before
        status, error = env.rows("SELECT status, error FROM sync_runs ORDER BY started_at DESC LIMIT 1")[0]
        assert status == "failed" and "not JSON" in error and TOKEN not in error

    def test_a_malformed_items_page_fails_and_keeps_cursor_and_rows(self, env):
        seed_one(env)
        cursor = env.cursor()
        items_before = env.rows("SELECT * FROM conversation_items")
        env.gladly.conversations["c1"]["status"] = "CLOSED"
        env.gladly.items_body["c1"] = '[{"id": "i1"'
        env.gladly.event("e2", "CONVERSATION/CLOSED", T0 + timedelta(minutes=1), conversationId="c1")
        env.clock.advance(minutes=5)
        with pytest.raises(MalformedResponse):
            env.sync()
        assert env.cursor() == cursor
        assert env.rows("SELECT status FROM conversations") == [("OPEN",)]
        assert env.rows("SELECT * FROM conversation_items") == items_before
        assert env.rows("SELECT id FROM events") == [("e1",)]
        # Fixed upstream: the next run picks the change up again (e2 was not remembered).
        del env.gladly.items_body["c1"]
        env.clock.advance(minutes=5)
        env.sync()
        assert env.rows("SELECT status FROM conversations") == [("CLOSED",)]


# --------------------------------------------------------------------------- request budget


class TestBudget:
    def test_changed_conversations_and_customers_stay_within_budget(self, env):
        """C conversations and K customers cost at most 1 + 2C + K (+3) requests."""
        seed_one(env)
        env.clock.advance(minutes=5)
        at = env.clock.now - timedelta(minutes=1)
        for n in range(6):  # C = 6 new conversations, of 3 new customers
            customer = f"n{n % 3}"
            env.gladly.customer(customer)
            env.gladly.conversation(f"x{n}", customer)
            env.gladly.message(f"x{n}", f"xi{n}", "hi")
            env.gladly.event(
                f"ex{n}", "CONTACT/MESSAGE_RECEIVED", at, conversationId=f"x{n}", customerId=customer
            )
            env.gladly.event(
                f"ey{n}", "CONTACT/MESSAGE_SENT", at, conversationId=f"x{n}", customerId=customer
            )
        env.gladly.event("ep", "CUSTOMER_PROFILE/UPDATED", at, customerId="u1")  # K: 3 new + u1
        summary = env.sync()
        conversations, customers = 6, 4
        assert summary.requests == 1 + 2 * conversations + customers
        assert summary.conversations_fetched == conversations and summary.customers_fetched == customers
        assert env.rows("SELECT count(*) FROM conversations") == [(7,)]


# --------------------------------------------------------------------------- expired cursor, --since


class TestWindow:
    def test_an_expired_cursor_restarts_23_hours_back_and_repairs_the_gap(self, env):
        """A cursor older than the events window: a warning, the export pass, a recorded gap, no crash."""
        env.sync()
        env.clock.advance(hours=30)
        with capture_logs() as logs:
            summary = env.sync()
        assert any(log["event"] == "events_cursor_expired" and log["log_level"] == "warning" for log in logs)
        polls = [params for _, path, params in env.last_calls if path == "/events"]
        assert polls[0]["startAt"] == [iso(env.clock.now - timedelta(hours=23))]
        assert "/export/jobs" in [path for _, path, _ in env.last_calls]
        assert summary.warnings and summary.reconciled
        gaps = json.loads(env.cursor("gaps"))
        assert [[datetime.fromisoformat(s), datetime.fromisoformat(e)] for s, e in gaps] == [
            [T0 - timedelta(minutes=2), env.clock.now - timedelta(hours=23)]
        ]
        # An export job covering the gap repairs it.
        env.gladly.jobs = [
            {
                "id": "job1",
                "status": "COMPLETED",
                "updatedAt": iso(env.clock.now),
                "parameters": {
                    "type": "CONVERSATIONS",
                    "startAt": iso(T0 - timedelta(hours=1)),
                    "endAt": iso(env.clock.now - timedelta(hours=2)),
                },
                "files": ["conversation_items.jsonl", "customers.jsonl"],
            }
        ]
        env.gladly.files[("job1", "conversation_items.jsonl")] = b""
        env.gladly.files[("job1", "customers.jsonl")] = b""
        env.clock.advance(minutes=5)
        reconcile_once(env.ctx)
        assert json.loads(env.cursor("gaps")) == []

    def test_since_beyond_23_hours_is_a_usage_error(self, env):
        """--since more than 23 h back exits 2 and points at --full; nothing is requested."""
        with pytest.raises(UsageError, match="--full") as raised:
            env.sync(since=T0 - timedelta(hours=23, minutes=1))
        assert raised.value.exit_code == 2
        assert env.gladly.calls == []

    def test_since_repolls_from_that_time(self, env):
        env.sync()
        env.clock.advance(minutes=10)
        since = T0 - timedelta(hours=5)
        summary = env.sync(since=since)
        assert summary.mode == "since"
        polls = [params for _, path, params in env.last_calls if path == "/events"]
        assert polls[0]["startAt"] == [iso(since)]
        assert "/export/jobs" in [path for _, path, _ in env.last_calls]


# --------------------------------------------------------------------------- export pass


def export_job(job_id: str, start: datetime, end: datetime, updated: datetime) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": "COMPLETED",
        "updatedAt": iso(updated),
        "parameters": {"type": "CONVERSATIONS", "startAt": iso(start), "endAt": iso(end)},
        "files": ["agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl"],
    }


class TestExportPass:
    @pytest.fixture
    def env(self, tmp_path, router) -> Env:
        return make_env(tmp_path, router, ingest=("in-a",))

    def seed_history(self, env: Env) -> None:
        g = env.gladly
        g.customer("u1")
        g.customer("u2")
        g.conversation("old1", "u1", "in-a")
        g.conversation("old2", "u2", "in-b")
        day = T0 - timedelta(days=3)
        g.jobs = [export_job("job1", day - timedelta(days=1), day, day + timedelta(hours=2))]
        items = [
            g.message("old1", "h1", "history one", at=iso(day - timedelta(hours=3))),
            g.message("old2", "h2", "history two", at=iso(day - timedelta(hours=2))),
            g.message("old1", "h3", "history three", at=iso(day - timedelta(hours=1))),
        ]
        g.files[("job1", "conversation_items.jsonl")] = ndjson(items)
        g.files[("job1", "customers.jsonl")] = ndjson(
            [
                {"id": "u1", "name": "Pat Export", "emailAddresses": ["u1@example.com"], "phoneNumbers": []},
                {"id": "u2", "name": "Not in scope", "emailAddresses": [], "phoneNumbers": []},
            ]
        )

    def test_a_fresh_store_backfills_from_export_jobs(self, env):
        """Each distinct conversation is resolved once; only in-scope items and customers are stored."""
        self.seed_history(env)
        summary = env.sync()
        assert summary.export_jobs == 1
        assert sorted(env.gladly.paths("^/conversations")) == ["/conversations/old1", "/conversations/old2"]
        assert env.rows("SELECT id, conversation_id, text FROM conversation_items ORDER BY id") == [
            ("h1", "old1", "history one"),
            ("h3", "old1", "history three"),
        ]
        assert env.rows("SELECT id FROM conversations") == [("old1",)]
        assert env.rows("SELECT id, name FROM customers") == [("u1", "Pat")]  # the API profile is newer
        assert env.rows("SELECT id, items FROM export_jobs") == [("job1", 2)]
        assert env.rows("SELECT conversation_id FROM scope_exclusions") == [("old2",)]

    def test_processed_jobs_are_not_read_again_unless_full(self, env):
        self.seed_history(env)
        env.sync()
        env.clock.advance(hours=7)  # reconcile due
        env.sync()
        assert [p for _, p, _ in env.last_calls if "/files/" in p] == []
        env.clock.advance(minutes=5)
        env.sync(full=True)
        files = [p for _, p, _ in env.last_calls if "/files/" in p]
        assert len(files) == 2
        # Both conversations were checked after the job's endAt: no GET for them again.
        assert [p for _, p, _ in env.last_calls if p.startswith("/conversations")] == []

    def test_conversations_fetched_after_the_job_are_not_fetched_for_it(self, env):
        """The events pass of the same run read old1 already: the export pass does not GET it again."""
        self.seed_history(env)
        env.gladly.event("e1", "CONTACT/MESSAGE_RECEIVED", T0 - timedelta(minutes=1), conversationId="old1")
        env.sync()
        assert env.gladly.paths("^/conversations/old1$") == ["/conversations/old1"]

    def test_progress_callback_and_log(self, env):
        self.seed_history(env)
        seen: list[dict] = []
        with capture_logs() as logs:
            env.sync()  # creates the cursor and processes job1
            env.gladly.jobs.append(export_job("job2", T0 - timedelta(days=2), T0 - timedelta(days=1), T0))
            env.gladly.files[("job2", "conversation_items.jsonl")] = env.gladly.files[
                ("job1", "conversation_items.jsonl")
            ]
            reconcile_once(env.ctx, progress=seen.append)
        assert seen and seen[-1]["jobs_done"] == 1 and seen[-1]["jobs_total"] == 1
        assert any(log["event"] == "export_progress" for log in logs)


class TestRuns:
    def test_a_skipped_cron_run_is_recorded(self, env):
        """record_skipped leaves one sync_runs row with status skipped and the reason."""
        run_id = record_skipped(env.ctx, "sync", "already running (pid 4242); skipped")
        assert env.rows("SELECT run_id, job, status, error FROM sync_runs") == [
            (run_id, "sync", "skipped", "already running (pid 4242); skipped")
        ]

    def test_run_job_records_what_the_job_set(self, env):
        """The handle's rows, requests and rate_limited land in sync_runs; run_id is bound in the logs."""
        with run_job(env.ctx, "drain") as run:
            bound = structlog.contextvars.get_contextvars()
            run.rows, run.requests, run.rate_limited = {"outbox": 2}, 3, 1
        assert env.rows("SELECT job, status, requests, rate_limited, rows, error FROM sync_runs") == [
            ("drain", "ok", 3, 1, '{"outbox": 2}', None)
        ]
        assert bound == {"run_id": run.run_id, "job": "drain"}
        assert structlog.contextvars.get_contextvars() == {}

    def test_a_failed_run_records_the_message_without_the_token(self, env):
        with pytest.raises(RuntimeError), run_job(env.ctx, "sync"):
            raise RuntimeError(f"boom with {TOKEN}")
        assert env.rows("SELECT status, error FROM sync_runs") == [("failed", "boom with ***")]
