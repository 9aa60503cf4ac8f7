"""The drain's state machine against a mocked Gladly (respx): what is sent, and what is stored."""

from __future__ import annotations

import base64
import json
import random
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from gladly_sync.storage.outbox.schema import OUTBOX
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.context import Context
from gladly_sync.sync.outbox.drain import DrainSummary, drain_once
from sqlalchemy import update
from structlog.testing import capture_logs

from gladly_sync.errors import AuthenticationFailed, PermissionDenied
from tests.outbox import (
    FakeClock,
    Queue,
    add_conversation,
    add_item,
    gladly_time,
    make_settings,
    open_db,
    open_outbox,
)

API = "https://acme.gladly.com/api/v1"
AGENT_ID = "agent-api"
ESCALATION = "inbox-escalation"
SETTLE = timedelta(minutes=10)  # outbox.unknown_settle


def created(path: str) -> httpx.Response:
    return httpx.Response(201, headers={"Location": f"/api/v1/{path}"})


def rejected(status: int, code: str, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "detail": detail}]})


def note_item(
    item_id: str, body: str, at: datetime, *, initiator: tuple[str, str] = ("AGENT", AGENT_ID)
) -> dict:
    return {
        "id": item_id,
        "conversationId": "conv-1",
        "customerId": "cust-1",
        "timestamp": gladly_time(at),
        "initiator": {"type": initiator[0], "id": initiator[1]},
        "content": {"type": "CONVERSATION_NOTE", "body": body},
    }


def email_item(
    item_id: str, text: str, at: datetime, *, initiator: tuple[str, str] = ("AGENT", AGENT_ID)
) -> dict:
    return {
        "id": item_id,
        "conversationId": "conv-1",
        "customerId": "cust-1",
        "timestamp": gladly_time(at),
        "initiator": {"type": initiator[0], "id": initiator[1]},
        "content": {"type": "EMAIL", "subject": "Re: order", "content": text},
    }


def conversation(
    status: str = "OPEN", inbox_id: str = "inbox-support", agent_id: str | None = "agent-7"
) -> dict:
    body = {
        "id": "conv-1",
        "customerId": "cust-1",
        "inboxId": inbox_id,
        "status": status,
        "createdAt": "2025-03-01T10:00:00Z",
    }
    if agent_id:
        body["agentId"] = agent_id
    return body


class Harness:
    """A fresh store with two conversations, a fake clock, and the drain wired to a respx Gladly."""

    def __init__(self, tmp_path, router: respx.MockRouter):
        self.tmp_path = tmp_path
        self.router = router
        self.clock = FakeClock()
        self.db = open_db(tmp_path)
        self.enabled = True
        self.max_attempts = 3
        self.client_options: dict[str, Any] = {}
        self.unknown_settle = SETTLE
        self.q = Queue(self.db, open_outbox(tmp_path, self.db))
        with self.db.transaction() as con:
            add_conversation(con, "conv-1")
            add_item(con, "in-1", "conv-1", content_type="EMAIL")
            add_conversation(con, "conv-2")
            add_item(con, "chat-2", "conv-2", content_type="CHAT_MESSAGE")

    def context(self) -> Context:
        settings = make_settings(
            self.tmp_path,
            enabled=self.enabled,
            max_attempts=self.max_attempts,
            unknown_settle=self.unknown_settle,
        )
        return Context(
            settings=settings,
            db=self.db,
            client_factory=lambda: GladlyClient(
                settings.gladly, sleep=self.clock.sleep, clock=self.clock.monotonic, **self.client_options
            ),
            clock=self.clock,
            outbox_db=self.q.database,
        )

    def drain(self, **options: Any) -> DrainSummary:
        return drain_once(self.context(), sleep=self.clock.sleep, rng=random.Random(7), **options)

    def reply(self, body: str = "Thanks, it ships today.", conversation_id: str = "conv-1", **kw: Any) -> str:
        return self.q.enqueue_reply(conversation_id, body, now=self.clock(), **kw).row["id"]

    def note(self, body: str = "Customer is VIP", conversation_id: str = "conv-1") -> str:
        return self.q.enqueue_note(conversation_id, body, now=self.clock()).row["id"]

    def escalate(self, note: str | None = None) -> str:
        return self.q.enqueue_escalation("conv-1", note=note, default_inbox=ESCALATION, now=self.clock()).row[
            "id"
        ]

    def row(self, action_id: str) -> dict:
        return self.q.get_action(action_id)

    def set_row(self, action_id: str, **values: Any) -> None:
        with self.q.database.transaction() as con:
            con.execute(update(OUTBOX).where(OUTBOX.c.id == action_id).values(**values))

    def state(self, action_id: str) -> tuple:
        row = self.row(action_id)
        return row["status"], row["attempts"], row["gladly_item_id"]


@pytest.fixture
def gladly():
    with respx.mock(base_url=API, assert_all_called=False) as router:
        router.get("/agents", name="agents").respond(
            200,
            json=[
                {"id": "agent-7", "name": "Amy", "emailAddress": "amy@acme.com"},
                {"id": AGENT_ID, "name": "API user", "emailAddress": "API-User@Acme.com"},
            ],
        )
        yield router


@pytest.fixture
def h(tmp_path, gladly):
    return Harness(tmp_path, gladly)


def sent_json(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


class TestSending:
    def test_reply_201_is_sent_with_location_id(self, h, gladly):
        """A 201 marks the row sent with the item id from Location; what was sent is the email payload."""
        route = gladly.post("/conversation-items/in-1/reply").mock(
            return_value=created("conversation-items/new-1")
        )
        action = h.reply("Hi Ann,\nit ships today & arrives Monday.")
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["gladly_item_id"], row["attempts"], row["last_error"]) == (
            "sent",
            "new-1",
            1,
            None,
        )
        assert row["sent_at"] is not None and row["last_attempt_at"] is not None
        request = route.calls.last.request
        assert sent_json(route) == {
            "content": {
                "type": "EMAIL",
                "body": "Hi Ann,<br>it ships today &amp; arrives Monday.",
                "bodyPlain": "Hi Ann,\nit ships today & arrives Monday.",
            }
        }
        assert (
            request.headers["Authorization"]
            == "Basic " + base64.b64encode(b"api-user@acme.com:secret-token").decode()
        )
        assert summary == DrainSummary(sent=1, requests=1)

    def test_note_201_is_sent(self, h, gladly):
        """A note goes to /notes as content.body and stores the note id."""
        route = gladly.post("/conversations/conv-1/notes").mock(
            return_value=created("conversations/conv-1/notes/note-1")
        )
        action = h.note("  Customer is <b>VIP</b> ")
        h.drain()
        assert h.state(action) == ("sent", 1, "note-1")
        assert sent_json(route) == {"content": {"body": "Customer is <b>VIP</b>"}}

    def test_chat_reply_goes_to_the_target_item(self, h, gladly):
        """The reply goes to the item fixed at enqueue, as a TEXT chat message."""
        route = gladly.post("/conversation-items/chat-2/reply").mock(
            return_value=created("conversation-items/c-9")
        )
        action = h.reply("On it!", conversation_id="conv-2")
        h.drain()
        assert h.state(action) == ("sent", 1, "c-9")
        assert sent_json(route) == {
            "content": {"type": "CHAT_MESSAGE", "messageType": "TEXT", "body": "On it!"}
        }

    def test_429_then_201_is_sent_once(self, h, gladly):
        """A 429 is retried and nothing is marked failed; the attempt counts once."""
        route = gladly.post("/conversation-items/in-1/reply").mock(
            side_effect=[httpx.Response(429), created("conversation-items/new-1")]
        )
        action = h.reply()
        summary = h.drain()
        assert h.state(action) == ("sent", 1, "new-1")
        assert route.call_count == 2
        assert (summary.sent, summary.rate_limited, summary.requests) == (1, 1, 2)

    def test_a_row_retried_on_429_is_restamped_while_in_flight(self, h, gladly):
        """While the drain keeps retrying a 429, the sending row's last_attempt_at follows, so another
        drain never takes it for a crashed one."""
        h.client_options = {"max_retries": 0}
        stamps = []

        def third(request):
            stamps.append(h.row(action)["last_attempt_at"])
            return created("conversation-items/new-1")

        gladly.post("/conversation-items/in-1/reply").mock(
            side_effect=[httpx.Response(429), httpx.Response(429), third]
        )
        action = h.reply()
        started = h.clock()
        h.drain()
        assert h.state(action) == ("sent", 1, "new-1")
        assert stamps[0] > started and h.row(action)["status"] == "sent"

    def test_a_concurrent_drains_row_in_flight_is_left_alone(self, h, gladly):
        """A row another drain marked sending a moment ago (younger than the request timeout) is
        neither recovered, reconciled nor sent."""
        route = gladly.post("/conversations/conv-1/notes").mock(return_value=created("x/notes/n"))
        action = h.note()
        h.q.mark_sending(action, h.clock())
        h.clock.advance(2)
        summary = h.drain()
        assert h.state(action) == ("sending", 1, None)
        assert route.call_count == 0 and summary.requests == 0

    def test_429_until_the_deadline_leaves_it_pending_uncounted(self, h, gladly):
        """429s are retried in-process until the drain's deadline; then pending, not counted."""
        gladly.post("/conversation-items/in-1/reply").respond(429)
        action = h.reply()
        summary = h.drain(deadline_seconds=20)
        row = h.row(action)
        assert (row["status"], row["attempts"]) == ("pending", 0)
        assert row["next_attempt_at"] > h.clock()
        assert "429" in row["last_error"]
        assert (summary.retried, summary.sent, summary.unknown, summary.failed) == (1, 0, 0, 0)
        assert summary.rate_limited == summary.requests > 1

    def test_connect_error_is_pending_and_not_counted(self, h, gladly):
        """A request that never left: pending with a backoff of about 1 s, attempts unchanged."""
        h.client_options = {"max_retries": 0}
        gladly.post("/conversation-items/in-1/reply").mock(side_effect=httpx.ConnectError("refused"))
        action = h.reply()
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["attempts"]) == ("pending", 0)
        assert "cannot connect" in row["last_error"]
        wait = (row["next_attempt_at"] - h.clock()).total_seconds()
        assert 0.8 <= wait <= 1.2
        assert summary.retried == 1

    def test_backoff_doubles_and_is_capped(self, h, gladly):
        """Consecutive deferrals wait about twice as long each time, never more than 5 min (+ jitter)."""
        h.client_options = {"max_retries": 0}
        gladly.post("/conversation-items/in-1/reply").mock(side_effect=httpx.ConnectError("refused"))
        action = h.reply()
        waits = []
        for _ in range(12):
            h.drain()
            row = h.row(action)
            waits.append((row["next_attempt_at"] - row["last_attempt_at"]).total_seconds())
            h.clock.now = row["next_attempt_at"]
        assert all(0.8 * 2 * a <= b <= 1.2 * 2 * a for a, b in zip(waits[:4], waits[1:5], strict=True))
        assert max(waits) <= 300 * 1.2
        assert h.row(action)["attempts"] == 0

    @pytest.mark.parametrize(
        "failure",
        [httpx.ReadTimeout("read timed out"), httpx.RemoteProtocolError("peer closed"), httpx.Response(502)],
        ids=["read-timeout", "connection-lost", "502"],
    )
    def test_ambiguous_failure_is_unknown_and_counted(self, h, gladly, failure):
        """Anything after the request may have left is an unknown outcome; the client never resends it."""
        route = gladly.post("/conversation-items/in-1/reply").mock(side_effect=[failure])
        action = h.reply()
        with capture_logs() as logs:
            summary = h.drain()
        assert h.state(action) == ("unknown", 1, None)
        assert route.call_count == 1
        assert summary.unknown == 1
        assert [e["event"] for e in logs if e["event"].startswith("outbox_")] == ["outbox_unknown"]

    @pytest.mark.parametrize(
        ("response", "error"),
        [
            (
                rejected(400, "invalid", "you cannot reply to items in closed conversations"),
                "invalid: you cannot reply to items in closed conversations",
            ),
            (
                rejected(404, "not_exist", "conversation item does not exist"),
                "not_exist: conversation item does not exist",
            ),
            (
                rejected(400, "too_long", "content.body cannot be larger than 2048 characters"),
                "too_long: content.body cannot be larger than 2048 characters",
            ),
        ],
        ids=["closed", "not-found", "too-long"],
    )
    def test_refusal_is_failed_with_gladlys_code_and_detail(self, h, gladly, response, error):
        """400/404 prove refusal: failed with Gladly's code and detail, never retried."""
        route = gladly.post("/conversation-items/in-1/reply").mock(return_value=response)
        action = h.reply()
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["last_error"]) == ("failed", error)
        h.drain()
        assert route.call_count == 1
        assert summary.failed == 1

    def test_failed_row_does_not_hold_back_the_next(self, h, gladly):
        """After a refusal the conversation's next action still goes out in the same drain."""
        gladly.post("/conversation-items/in-1/reply").mock(
            return_value=rejected(400, "invalid", "you cannot reply to items in closed conversations")
        )
        gladly.post("/conversations/conv-1/notes").mock(return_value=created("conversations/conv-1/notes/n1"))
        reply, note = h.reply(), h.note()
        h.drain()
        assert h.state(reply)[0] == "failed"
        assert h.state(note) == ("sent", 1, "n1")

    @pytest.mark.parametrize(("status", "error"), [(401, AuthenticationFailed), (403, PermissionDenied)])
    def test_auth_failure_stops_the_drain_and_leaves_rows_pending(self, h, gladly, status, error):
        """401/403 stop the drain (re-raised, exit 3) and leave every row pending, uncounted."""
        route = gladly.post("/conversation-items/in-1/reply").respond(status)
        other = gladly.post("/conversation-items/chat-2/reply").mock(
            return_value=created("conversation-items/x")
        )
        first, second = h.reply(), h.reply("Hi", conversation_id="conv-2")
        with pytest.raises(error):
            h.drain(workers=1)
        assert h.state(first) == ("pending", 0, None)
        assert h.state(second) == ("pending", 0, None)
        assert (route.call_count, other.call_count) == (1, 0)

    def test_disabled_outbox_sends_nothing(self, h, gladly):
        """outbox.enabled false: no request at all, rows stay pending, and the drain says so."""
        h.enabled = False
        action = h.reply()
        with capture_logs() as logs:
            summary = h.drain()
        assert summary == DrainSummary(skipped_disabled=True)
        assert [call for call in gladly.calls] == []
        assert h.state(action) == ("pending", 0, None)
        assert [e["event"] for e in logs] == ["outbox_disabled"]

    def test_cancelled_rows_are_not_sent(self, h, gladly):
        """A cancelled action never goes out."""
        route = gladly.post("/conversations/conv-1/notes").mock(
            return_value=created("conversations/conv-1/notes/n")
        )
        action = h.note()
        h.q.cancel_action(action, h.clock())
        h.drain()
        assert route.call_count == 0

    def test_deferred_rows_wait_for_their_time(self, h, gladly):
        """A pending row whose next_attempt_at is ahead is left for a later drain."""
        route = gladly.post("/conversations/conv-1/notes").mock(
            return_value=created("conversations/conv-1/notes/n")
        )
        action = h.note()
        h.set_row(action, next_attempt_at=h.clock() + timedelta(minutes=1))
        h.drain()
        assert route.call_count == 0
        h.clock.advance(60)
        h.drain()
        assert h.state(action) == ("sent", 1, "n")

    def test_logs_carry_ids_not_bodies(self, h, gladly):
        """Log events name actions and counts; message bodies never appear."""
        gladly.post("/conversations/conv-1/notes").mock(
            return_value=created("conversations/conv-1/notes/n-1")
        )
        action = h.note("secret customer detail")
        with capture_logs() as logs:
            h.drain()
        sent = [e for e in logs if e["event"] == "outbox_sent"]
        assert sent == [
            {
                "event": "outbox_sent",
                "log_level": "info",
                "action_id": action,
                "kind": "note",
                "conversation_id": "conv-1",
                "gladly_item_id": "n-1",
                "attempts": 1,
            }
        ]
        assert logs[-1]["event"] == "drain_finished" and logs[-1]["sent"] == 1
        assert "secret customer detail" not in repr(logs)


class TestOrder:
    def test_actions_of_a_conversation_go_out_in_queue_order(self, h, gladly):
        """Per conversation, the order queued is the order sent; other conversations go alongside."""
        counter = iter(range(100))
        notes = gladly.post("/conversations/conv-1/notes").mock(
            side_effect=lambda request: created(f"conversations/conv-1/notes/n{next(counter)}")
        )
        chat = gladly.post("/conversation-items/chat-2/reply").mock(
            return_value=created("conversation-items/c")
        )
        ids = [h.note(f"note {i}") for i in range(5)]
        h.reply("chat reply", conversation_id="conv-2")
        summary = h.drain()
        assert [sent_json(notes, i)["content"]["body"] for i in range(5)] == [f"note {i}" for i in range(5)]
        sent_ids = [h.row(i)["gladly_item_id"] for i in ids]
        assert sent_ids == [f"n{i}" for i in range(5)]
        assert chat.call_count == 1
        assert summary.sent == 6

    def test_unknown_row_holds_back_its_conversation(self, h, gladly):
        """After an unknown outcome, later actions of that conversation wait; others proceed."""
        notes = gladly.post("/conversations/conv-1/notes").mock(side_effect=httpx.ReadTimeout("timeout"))
        chat = gladly.post("/conversation-items/chat-2/reply").mock(
            return_value=created("conversation-items/c")
        )
        first, second = h.note("one"), h.note("two")
        other = h.reply("hi", conversation_id="conv-2")
        h.drain()
        assert (h.state(first)[0], h.state(second)[0], h.state(other)[0]) == ("unknown", "pending", "sent")
        assert (notes.call_count, chat.call_count) == (1, 1)


class TestReconciliation:
    def _timed_out_reply(self, h, gladly, body="Thanks, it ships today."):
        route = gladly.post("/conversation-items/in-1/reply").mock(
            side_effect=[httpx.ReadTimeout("timeout"), created("conversation-items/resent")]
        )
        action = h.reply(body)
        h.drain()
        assert h.state(action) == ("unknown", 1, None)
        return action, route, h.row(action)["last_attempt_at"]

    def test_unknown_found_in_items_is_sent_without_a_second_post(self, h, gladly):
        """The next drain finds our item in the conversation and marks it sent; nothing is resent."""
        action, route, attempted = self._timed_out_reply(h, gladly)
        items = gladly.get("/conversations/conv-1/items").respond(
            json=[
                email_item(
                    "in-1", "Where is my order?", attempted - timedelta(hours=1), initiator=("CUSTOMER", "c")
                ),
                email_item("applied-1", "Thanks, it ships today.", attempted + timedelta(seconds=3)),
            ]
        )
        h.clock.advance(30)
        with capture_logs() as logs:
            summary = h.drain()
        assert h.state(action) == ("sent", 1, "applied-1")
        assert route.call_count == 1
        assert items.call_count == 1
        assert gladly.routes["agents"].call_count == 1
        assert summary.reconciled == 1 and summary.sent == 0
        assert "outbox_reconciled" in [e["event"] for e in logs]

    def test_unknown_not_found_waits_for_the_settle_period(self, h, gladly):
        """Not in Gladly yet: every drain looks again (one GET) and sends nothing until
        outbox.unknown_settle has passed since the attempt; the row holds back its conversation."""
        action, route, _ = self._timed_out_reply(h, gladly)
        later = h.note("after the reply")
        items = gladly.get("/conversations/conv-1/items").respond(json=[])
        notes = gladly.post("/conversations/conv-1/notes").mock(return_value=created("x/notes/n1"))
        for _ in range(3):
            h.clock.advance(60)
            summary = h.drain()
            assert (summary.settling, summary.sent) == (1, 0)
        assert h.state(action) == ("unknown", 1, None)
        assert "outbox.unknown_settle" in h.row(action)["last_error"]
        assert (route.call_count, items.call_count, notes.call_count) == (1, 3, 0)
        assert h.state(later)[0] == "pending"

    def test_unknown_not_found_after_the_settle_period_is_sent_again_once(self, h, gladly):
        """Still not in Gladly once the settle period has passed: sent again, as a new attempt."""
        action, route, _ = self._timed_out_reply(h, gladly)
        gladly.get("/conversations/conv-1/items").respond(json=[])
        h.clock.advance(SETTLE.total_seconds())
        h.drain()
        assert h.state(action) == ("sent", 2, "resent")
        assert route.call_count == 2
        h.drain()
        assert route.call_count == 2

    def test_item_appearing_within_the_settle_period_is_sent_once(self, h, gladly):
        """Gladly applies the request minutes after our timeout: found by a later drain, never resent."""
        action, route, attempted = self._timed_out_reply(h, gladly)
        items = gladly.get("/conversations/conv-1/items")
        items.respond(json=[])
        h.clock.advance(120)
        h.drain()
        late = email_item("late-1", "Thanks, it ships today.", attempted + timedelta(minutes=3))
        items.respond(json=[late])
        h.clock.advance(120)
        summary = h.drain()
        assert h.state(action) == ("sent", 1, "late-1")
        assert (summary.reconciled, route.call_count) == (1, 1)

    @pytest.mark.parametrize(
        "item",
        [
            lambda at: email_item("x", "Thanks, it ships today.", at, initiator=("AGENT", "agent-7")),
            lambda at: email_item("x", "Thanks, it ships today.", at - timedelta(minutes=2, seconds=1)),
            lambda at: email_item("x", "Thanks, it ships tomorrow.", at),
            lambda at: note_item("x", "Thanks, it ships today.", at),
            lambda at: email_item("x", "Thanks, it ships today.", at, initiator=("CUSTOMER", "cust-1")),
            lambda at: {**email_item("x", "Thanks, it ships today.", at), "conversationId": "conv-9"},
            lambda at: email_item("x", "Thanks, it ships today.", at, initiator=("API", "api")),
        ],
        ids=["other-agent", "too-early", "other-text", "a-note", "customer", "other-conversation", "api"],
    )
    def test_near_misses_do_not_count_as_sent(self, h, gladly, item):
        """Only an item initiated by our API user's agent id, of the right type, text and time
        matches (another integration's API item does not); anything else means resend once settled."""
        action, route, attempted = self._timed_out_reply(h, gladly)
        gladly.get("/conversations/conv-1/items").respond(json=[item(attempted)])
        h.clock.advance(SETTLE.total_seconds())
        h.drain()
        assert h.state(action) == ("sent", 2, "resent")

    @pytest.mark.parametrize(
        "item",
        [
            lambda at: email_item("y", "Thanks, it ships today.", at - timedelta(seconds=110)),
            lambda at: email_item("y", "  Thanks,\n it ships   today. ", at),
        ],
        ids=["clock-skew", "whitespace"],
    )
    def test_matches_within_the_rules(self, h, gladly, item):
        """Clock skew up to 2 min and whitespace differences still match."""
        action, route, attempted = self._timed_out_reply(h, gladly)
        gladly.get("/conversations/conv-1/items").respond(json=[item(attempted)])
        h.drain()
        assert h.state(action) == ("sent", 1, "y")
        assert route.call_count == 1

    def test_html_email_reconciles_on_its_plain_text(self, h, gladly):
        """An --html email is found by the bodyPlain text its item shows."""
        route = gladly.post("/conversation-items/in-1/reply").mock(side_effect=httpx.ReadTimeout("timeout"))
        action = h.reply("<p>Hi <b>Ann</b></p><p>Done.</p>", html=True)
        h.drain()
        attempted = h.row(action)["last_attempt_at"]
        gladly.get("/conversations/conv-1/items").respond(
            json=[email_item("z", "Hi Ann\n\nDone.", attempted)]
        )
        h.drain()
        assert h.state(action) == ("sent", 1, "z")
        assert route.call_count == 1

    def test_claimed_item_is_not_matched_twice(self, h, gladly):
        """Two identical notes: the item the first one owns cannot settle the second."""
        route = gladly.post("/conversations/conv-1/notes").mock(
            side_effect=[
                created("conversations/conv-1/notes/note-a"),
                httpx.ReadTimeout("t"),
                created("conversations/conv-1/notes/note-b"),
            ]
        )
        first, second = h.note("Thanks"), h.note("Thanks")
        h.drain()
        assert h.state(first) == ("sent", 1, "note-a")
        assert h.state(second)[0] == "unknown"
        attempted = h.row(second)["last_attempt_at"]
        gladly.get("/conversations/conv-1/items").respond(json=[note_item("note-a", "Thanks", attempted)])
        h.clock.advance(SETTLE.total_seconds())
        h.drain()
        assert h.state(second) == ("sent", 2, "note-b")
        assert route.call_count == 3

    def test_crash_while_sending_is_reconciled(self, h, gladly):
        """A row left sending by a crash becomes unknown and is reconciled, not blindly resent."""
        route = gladly.post("/conversations/conv-1/notes").mock(
            return_value=created("conversations/conv-1/notes/dup")
        )
        action = h.note("Escalating to billing")
        h.q.mark_sending(action, h.clock())  # the request then reached Gladly; the process died
        gladly.get("/conversations/conv-1/items").respond(
            json=[note_item("n-crash", "Escalating to billing", h.clock() + timedelta(seconds=1))]
        )
        h.clock.advance(60)
        with capture_logs() as logs:
            summary = h.drain()
        assert h.state(action) == ("sent", 1, "n-crash")
        assert route.call_count == 0
        assert summary.reconciled == 1
        assert "outbox_recovered_sending" in [e["event"] for e in logs]

    def test_max_attempts_then_failed(self, h, gladly):
        """Attempts that may have reached Gladly stop at max_attempts: then failed, never an extra POST."""
        h.max_attempts = 2
        route = gladly.post("/conversation-items/in-1/reply").mock(side_effect=httpx.ReadTimeout("timeout"))
        gladly.get("/conversations/conv-1/items").respond(json=[])
        action = h.reply()
        h.drain()
        h.clock.advance(SETTLE.total_seconds())
        h.drain()
        assert h.state(action) == ("unknown", 2, None)
        h.clock.advance(SETTLE.total_seconds())
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["attempts"]) == ("failed", 2)
        assert row["last_error"].startswith("gave up after 2 attempts")
        assert route.call_count == 2
        assert summary.failed == 1

    def test_unknown_but_found_at_the_last_attempt_is_sent(self, h, gladly):
        """Reaching max_attempts does not stop reconciliation from finding the item."""
        h.max_attempts = 1
        action, route, attempted = self._timed_out_reply(h, gladly)
        gladly.get("/conversations/conv-1/items").respond(
            json=[email_item("ok", "Thanks, it ships today.", attempted)]
        )
        h.drain()
        assert h.state(action) == ("sent", 1, "ok")

    def test_capped_list_is_settled_through_events(self, h, gladly):
        """A capped item list (1000): the note is found through NOTE_CREATED events and a GET of the item."""
        gladly.post("/conversations/conv-1/notes").mock(side_effect=httpx.ReadTimeout("timeout"))
        action = h.note("Refund approved")
        h.drain()
        attempted = h.row(action)["last_attempt_at"]
        gladly.get("/conversations/conv-1/items").respond(
            json=[note_item("old", "Refund approved", attempted - timedelta(days=3))],
            headers={"Gladly-Limited-Data": "true"},
        )
        events = gladly.get("/events").respond(
            text="\n".join(
                json.dumps(e)
                for e in [
                    {
                        "id": "e1",
                        "type": "CONVERSATION/NOTE_CREATED",
                        "timestamp": gladly_time(attempted),
                        "content": {"conversationId": "conv-9", "noteId": "elsewhere"},
                    },
                    {
                        "id": "e2",
                        "type": "CONVERSATION/NOTE_CREATED",
                        "timestamp": gladly_time(attempted),
                        "content": {"conversationId": "conv-1", "noteId": "hidden-note"},
                    },
                ]
            )
        )
        fetched = gladly.get("/conversation-items/hidden-note").respond(
            json=note_item("hidden-note", "Refund approved", attempted + timedelta(seconds=1))
        )
        h.drain()
        assert h.state(action) == ("sent", 1, "hidden-note")
        params = events.calls.last.request.url.params
        assert params.get_list("entities") == ["CONVERSATION"]
        assert params["startAt"] == gladly_time(attempted - timedelta(minutes=2))
        assert fetched.call_count == 1

    def test_capped_list_without_evidence_stays_unknown(self, h, gladly):
        """Capped list and no matching event: stays unknown, says it cannot be verified, sends nothing."""
        route = gladly.post("/conversations/conv-1/notes").mock(side_effect=httpx.ReadTimeout("timeout"))
        action = h.note("Refund approved")
        h.drain()
        gladly.get("/conversations/conv-1/items").respond(json=[], headers={"Gladly-Limited-Data": "true"})
        gladly.get("/events").respond(text="")
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["attempts"]) == ("unknown", 1)
        assert "cannot be verified" in row["last_error"]
        assert route.call_count == 1
        assert summary.unknown == 1

    def test_reconcile_read_failure_leaves_it_unknown(self, h, gladly):
        """If the items cannot be read now, the row stays unknown and nothing is sent."""
        action, route, _ = self._timed_out_reply(h, gladly)
        gladly.get("/conversations/conv-1/items").respond(503)
        h.drain()
        assert h.state(action) == ("unknown", 1, None)
        assert route.call_count == 1


class TestEscalation:
    def _routes(self, gladly, *, status="OPEN", patch_side_effect=None):
        gets = gladly.get("/conversations/conv-1").mock(
            side_effect=[
                httpx.Response(200, json=conversation(status=status)),
                httpx.Response(200, json=conversation(inbox_id=ESCALATION, agent_id=None)),
            ]
        )
        patch = gladly.patch("/conversations/conv-1")
        if patch_side_effect is None:
            patch.respond(204)
        else:
            patch.mock(side_effect=patch_side_effect)
        note = gladly.post("/conversations/conv-1/notes").mock(
            return_value=created("conversations/conv-1/notes/esc-note")
        )
        return gets, patch, note

    def test_note_then_move_then_verify(self, h, gladly):
        """The note goes first, then one PATCH with the inbox only (no agentId), verified by GET."""
        gets, patch, note = self._routes(gladly)
        action = h.escalate(note="Angry customer, please call")
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["note_item_id"], row["gladly_item_id"], row["attempts"]) == (
            "sent",
            "esc-note",
            None,
            1,
        )
        assert sent_json(note) == {"content": {"body": "Angry customer, please call"}}
        assert [sent_json(patch, i) for i in range(patch.call_count)] == [
            {"assignee": {"inboxId": ESCALATION}}
        ]
        assert "agentId" not in patch.calls.last.request.content.decode()
        assert gets.call_count == 2
        assert summary.sent == 1

    def test_without_note_only_moves(self, h, gladly):
        """No note: no POST at all."""
        gets, patch, note = self._routes(gladly)
        action = h.escalate()
        h.drain()
        assert h.state(action) == ("sent", 1, None)
        assert (note.call_count, patch.call_count) == (0, 1)

    def test_closed_conversation_is_reopened_in_the_same_patch(self, h, gladly):
        """A CLOSED conversation: the PATCH carries status OPEN with the new assignee."""
        gets, patch, note = self._routes(gladly, status="CLOSED")
        action = h.escalate()
        h.drain()
        assert h.state(action)[0] == "sent"
        assert sent_json(patch) == {"assignee": {"inboxId": ESCALATION}, "status": {"value": "OPEN"}}

    def test_invalid_state_reopens_then_moves_in_two_patches(self, h, gladly):
        """Gladly's 400 invalid_state: reopen, then reassign, in two PATCHes."""
        gets, patch, note = self._routes(
            gladly,
            status="CLOSED",
            patch_side_effect=[
                rejected(400, "invalid_state", "closed conversation cannot be reassigned"),
                httpx.Response(204),
                httpx.Response(204),
            ],
        )
        action = h.escalate()
        h.drain()
        assert h.state(action)[0] == "sent"
        assert [sent_json(patch, i) for i in range(3)] == [
            {"assignee": {"inboxId": ESCALATION}, "status": {"value": "OPEN"}},
            {"status": {"value": "OPEN"}},
            {"assignee": {"inboxId": ESCALATION}},
        ]
        assert all(b"agentId" not in call.request.content for call in patch.calls)

    def test_retry_resumes_at_the_move_without_resending_the_note(self, h, gladly):
        """The note's id is stored once sent; after a failed move the next drain only moves."""
        gets, patch, note = self._routes(
            gladly, patch_side_effect=[httpx.Response(503)] * 7 + [httpx.Response(204)]
        )
        gets.side_effect = None
        gets.respond(json=conversation())
        action = h.escalate(note="Please take over")
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["note_item_id"], row["attempts"]) == ("pending", "esc-note", 1)
        assert summary.retried == 1
        gets.respond(json=conversation(inbox_id=ESCALATION))
        h.clock.now = row["next_attempt_at"]
        h.drain()
        assert h.state(action) == ("sent", 2, None)
        assert note.call_count == 1

    def test_unconfirmed_move_is_unknown_then_redone(self, h, gladly):
        """A GET that does not show the target inbox leaves the row unknown; the next drain moves again."""
        gets, patch, note = self._routes(gladly)
        gets.side_effect = [httpx.Response(200, json=conversation())] * 2 + [
            httpx.Response(200, json=conversation()),
            httpx.Response(200, json=conversation(inbox_id=ESCALATION)),
        ]
        action = h.escalate(note="n")
        h.drain()
        row = h.row(action)
        assert (row["status"], row["note_item_id"]) == ("unknown", "esc-note")
        assert "not inbox-escalation" in row["last_error"]
        h.drain()
        assert h.state(action) == ("sent", 2, None)
        assert (note.call_count, patch.call_count) == (1, 2)

    def test_note_with_unknown_outcome_is_reconciled_then_moved(self, h, gladly):
        """A note that timed out and did land is not sent again; the move follows."""
        gets, patch, note = self._routes(gladly)
        note.side_effect = httpx.ReadTimeout("timeout")
        action = h.escalate(note="Handing over")
        h.drain()
        assert h.state(action)[0] == "unknown"
        attempted = h.row(action)["last_attempt_at"]
        gladly.get("/conversations/conv-1/items").respond(
            json=[note_item("landed", "Handing over", attempted)]
        )
        summary = h.drain()
        row = h.row(action)
        assert (row["status"], row["note_item_id"], row["attempts"]) == ("sent", "landed", 2)
        assert note.call_count == 1
        assert summary.reconciled == 1 and summary.sent == 1

    def test_unknown_conversation_fails(self, h, gladly):
        """Gladly's 404 for the conversation: failed with its code and detail."""
        gladly.get("/conversations/conv-1").mock(
            return_value=rejected(404, "not_exist", "conversation does not exist")
        )
        action = h.escalate()
        h.drain()
        row = h.row(action)
        assert (row["status"], row["last_error"]) == ("failed", "not_exist: conversation does not exist")
