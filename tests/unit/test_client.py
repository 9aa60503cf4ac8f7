"""The Gladly client: what it sends, how it maps every failure, and when it retries."""

from __future__ import annotations

import base64
import json
import random
import threading
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import respx
from gladly_sync.sync.client import GladlyClient, ItemsPage, Moved
from gladly_sync.sync.pacer import Backoff, Pacer

from gladly_sync.config import GladlySettings
from gladly_sync.errors import (
    AuthenticationFailed,
    DeadlineExceeded,
    GladlyError,
    GladlyNotFound,
    MalformedResponse,
    NetworkError,
    NeverSent,
    PermissionDenied,
    RateLimited,
    Rejected,
    ServerError,
    UnknownOutcome,
)
from tests.clocks import MonotonicClock

TOKEN = "tok-3f9a-SECRET-7c1e"
SETTINGS = GladlySettings(
    organization="acme",
    sandbox=False,
    email="api@acme.com",
    api_token=TOKEN,
    base_url=None,
    requests_per_second=10,
    timeout_seconds=7,
)
API = "https://acme.gladly.com/api/v1"


@pytest.fixture
def clock():
    return MonotonicClock(1000.0)


@pytest.fixture
def gladly():
    with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


def make_client(clock: MonotonicClock, settings: GladlySettings = SETTINGS, **options) -> GladlyClient:
    options.setdefault("backoff", Backoff(rng=random.Random(7)))
    return GladlyClient.from_settings(settings, clock=clock, sleep=clock.sleep, **options)


@pytest.fixture
def client(clock):
    with make_client(clock) as gladly_client:
        yield gladly_client


# The three retry classes, each exercised through a real operation.
OPERATIONS = {
    "GET": ("get", "/conversations/c1", lambda c: c.get_conversation("c1"), {"id": "c1"}),
    "PATCH": (
        "patch",
        "/conversations/c1",
        lambda c: c.update_conversation("c1", {"status": {"value": "OPEN"}}),
        None,
    ),
    "POST": ("post", "/conversations/c1/notes", lambda c: c.add_note("c1", "hi"), None),
}


def route_for(gladly, method: str):
    verb, path, _, _ = OPERATIONS[method]
    return getattr(gladly, verb)(path)


def success_for(method: str) -> httpx.Response:
    if method == "GET":
        return httpx.Response(200, json={"id": "c1"})
    if method == "PATCH":
        return httpx.Response(204)
    return httpx.Response(201, headers={"Location": "/api/v1/conversations/c1/notes/n1"})


def call(client: GladlyClient, method: str):
    return OPERATIONS[method][2](client)


def all_messages(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


class TestConnection:
    def test_sends_basic_auth_and_user_agent(self, gladly, client):
        """Every request carries Basic email:token and a gladly-sync User-Agent."""
        route = gladly.get("/organization").respond(200, json={"id": "org"})
        assert client.get_organization() == {"id": "org"}
        request = route.calls.last.request
        expected = base64.b64encode(f"api@acme.com:{TOKEN}".encode()).decode()
        assert request.headers["Authorization"] == f"Basic {expected}"
        assert request.headers["User-Agent"].startswith("gladly-sync/")

    @pytest.mark.parametrize(
        ("sandbox", "base_url", "url"),
        [
            (False, None, "https://acme.gladly.com/api/v1/organization"),
            (True, None, "https://acme.gladly.qa/api/v1/organization"),
            (False, "http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v1/organization"),
            (True, "http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/v1/organization"),
        ],
    )
    def test_url_is_derived_once_with_api_v1(self, clock, sandbox, base_url, url):
        """Production .gladly.com, sandbox .gladly.qa, or base_url; /api/v1 appended exactly once."""
        settings = GladlySettings("acme", sandbox, "api@acme.com", TOKEN, base_url, 10, 7)
        with respx.mock(assert_all_called=False) as mock:
            route = mock.get(url).respond(200, json={})
            with make_client(clock, settings) as gladly_client:
                gladly_client.get_organization()
        assert str(route.calls.last.request.url) == url

    def test_timeout_is_per_operation_and_redirects_are_not_followed(self):
        """httpx.Timeout(timeout_seconds) applies to each connect/read/write/pool; no redirect is followed."""
        http = GladlyClient.build_http(SETTINGS)
        with http:
            assert http.timeout == httpx.Timeout(7)
            assert http.follow_redirects is False

    def test_ids_cannot_change_the_path(self, gladly, client):
        """Ids are escaped as one path segment."""
        route = gladly.get("/conversations/a%2F..%2Fb").respond(200, json={"id": "x"})
        client.get_conversation("a/../b")
        assert route.call_count == 1

    def test_token_is_not_in_the_client_repr(self, client):
        """The token appears in no repr of the settings or the client."""
        assert TOKEN not in repr(SETTINGS)
        assert TOKEN not in repr(client)


class TestErrorMapping:
    STATUS_CASES = [
        # status, GET, PATCH, creating POST
        (301, MalformedResponse, MalformedResponse, MalformedResponse),
        (400, Rejected, Rejected, Rejected),
        (401, AuthenticationFailed, AuthenticationFailed, AuthenticationFailed),
        (403, PermissionDenied, PermissionDenied, PermissionDenied),
        (404, GladlyNotFound, GladlyNotFound, GladlyNotFound),
        (409, Rejected, Rejected, Rejected),
        (429, RateLimited, RateLimited, RateLimited),
        (500, ServerError, ServerError, UnknownOutcome),
        (503, ServerError, ServerError, UnknownOutcome),
    ]
    TRANSPORT_CASES = [
        (httpx.ConnectError, NeverSent, NeverSent, NeverSent),
        (httpx.ConnectTimeout, NeverSent, NeverSent, NeverSent),
        (httpx.PoolTimeout, NeverSent, NeverSent, NeverSent),
        (httpx.ReadTimeout, NetworkError, NetworkError, UnknownOutcome),
        (httpx.WriteTimeout, NetworkError, NetworkError, UnknownOutcome),
        (httpx.RemoteProtocolError, NetworkError, NetworkError, UnknownOutcome),
    ]

    @pytest.mark.parametrize("method", ["GET", "PATCH", "POST"])
    @pytest.mark.parametrize("case", STATUS_CASES, ids=lambda case: str(case[0]))
    def test_status_is_mapped(self, gladly, clock, method, case):
        """Each status maps to one error class; a creating POST's 5xx is an unknown outcome."""
        status, *expected = case
        error_class = expected[["GET", "PATCH", "POST"].index(method)]
        headers = {"Location": "/elsewhere"} if status == 301 else {}
        route = route_for(gladly, method).respond(status, json={"errors": [{"code": "x"}]}, headers=headers)
        with make_client(clock, max_retries=0) as gladly_client, pytest.raises(GladlyError) as raised:
            call(gladly_client, method)
        assert type(raised.value) is error_class
        assert raised.value.status == status
        assert raised.value.method == method
        assert route.call_count == 1
        assert TOKEN not in all_messages(raised.value)

    @pytest.mark.parametrize("method", ["GET", "PATCH", "POST"])
    @pytest.mark.parametrize("case", TRANSPORT_CASES, ids=lambda case: case[0].__name__)
    def test_transport_failure_is_mapped(self, gladly, clock, method, case):
        """Connect-type failures are NeverSent; others NetworkError, or UnknownOutcome for a creating POST."""
        failure, *expected = case
        error_class = expected[["GET", "PATCH", "POST"].index(method)]
        route_for(gladly, method).mock(side_effect=failure("boom"))
        with make_client(clock, max_retries=0) as gladly_client, pytest.raises(GladlyError) as raised:
            call(gladly_client, method)
        assert type(raised.value) is error_class
        cause = raised.value.__cause__
        while cause is not None and not isinstance(cause, httpx.TransportError):
            cause = cause.__cause__
        assert isinstance(cause, failure)  # raised ... from the httpx exception
        assert TOKEN not in all_messages(raised.value)

    def test_401_names_the_email_and_host(self, gladly, client):
        """A 401 says whose credentials failed where, and what to check."""
        gladly.get("/organization").respond(401)
        with pytest.raises(AuthenticationFailed) as raised:
            client.get_organization()
        assert str(raised.value) == (
            "authentication failed for api@acme.com at https://acme.gladly.com: "
            "check that the API token belongs to this email"
        )
        assert raised.value.exit_code == 3

    def test_403_names_the_missing_permission(self, gladly, client):
        """A 403 says the user lacks the API User permission."""
        gladly.get("/organization").respond(403)
        with pytest.raises(PermissionDenied) as raised:
            client.get_organization()
        assert str(raised.value) == (
            "api@acme.com lacks the API User permission at https://acme.gladly.com (Gladly answered 403)"
        )

    @pytest.mark.parametrize(
        "body",
        [
            {
                "errors": [
                    {"attr": "assignee.inboxId", "code": "blank", "detail": "cannot be blank"},
                    {"code": "x"},
                ]
            },
            {"errors": {"attr": "assignee.inboxId", "code": "blank", "detail": "cannot be blank"}},
        ],
        ids=["list", "single-object"],
    )
    def test_both_error_body_forms_give_code_detail_attr(self, gladly, client, body):
        """Gladly's first error's code, detail and attr are carried, from either body form."""
        gladly.patch("/conversations/c1").respond(400, json=body)
        with pytest.raises(Rejected) as raised:
            client.update_conversation("c1", {"assignee": {}})
        error = raised.value
        assert (error.status, error.code, error.detail, error.attr) == (
            400,
            "blank",
            "cannot be blank",
            "assignee.inboxId",
        )
        assert "blank" in str(error) and "cannot be blank" in str(error)

    def test_404_is_a_rejection_with_gladlys_code(self, gladly, client):
        """A 404 is GladlyNotFound (a Rejected) with Gladly's code and detail."""
        gladly.get("/conversations/gone").respond(
            404, json={"errors": {"code": "not_exist", "detail": "conversation does not exist"}}
        )
        with pytest.raises(GladlyNotFound) as raised:
            client.get_conversation("gone")
        assert isinstance(raised.value, Rejected)
        assert (raised.value.code, raised.value.detail) == ("not_exist", "conversation does not exist")

    def test_non_json_error_body_is_still_a_rejection(self, gladly, client):
        """A 4xx with an HTML body is Rejected without code or detail."""
        gladly.get("/conversations/c1").respond(
            400, text="<html>Bad Request</html>", content_type="text/html"
        )
        with pytest.raises(Rejected) as raised:
            client.get_conversation("c1")
        assert (raised.value.code, raised.value.detail, raised.value.attr) == (None, None, None)
        assert "text/html" in str(raised.value)

    @pytest.mark.parametrize(
        ("settings", "hint"),
        [
            (
                SETTINGS,
                "check gladly.organization and gladly.sandbox (production .gladly.com vs sandbox .gladly.qa)",
            ),
            (
                GladlySettings("acme", False, "api@acme.com", TOKEN, "http://10.1.2.3:9", 10, 7),
                "gladly.base_url",
            ),
        ],
        ids=["gladly-host", "other-host"],
    )
    def test_connect_failure_names_the_host_and_what_to_check(self, clock, settings, hint):
        """A DNS/connect failure names the host; for Gladly hosts it points at organization and sandbox."""
        with respx.mock() as mock:
            mock.get(f"{settings.api_url}/organization").mock(
                side_effect=httpx.ConnectError("Name not known")
            )
            with (
                make_client(clock, settings, max_retries=0) as gladly_client,
                pytest.raises(NeverSent) as raised,
            ):
                gladly_client.get_organization()
        host = httpx.URL(settings.host_url).host
        assert host in str(raised.value)
        assert hint in str(raised.value)

    def test_error_url_leaves_out_the_query(self, gladly, client):
        """An error's url has no query, so an email looked up never lands in a log."""
        gladly.get("/customer-profiles").respond(400, json={"errors": [{"code": "invalid"}]})
        with pytest.raises(Rejected) as raised:
            client.find_customers(email="martha@example.com")
        assert raised.value.url == f"{API}/customer-profiles"
        assert "martha" not in str(raised.value)


class TestRetries:
    @pytest.mark.parametrize("method", ["GET", "PATCH"])
    @pytest.mark.parametrize(
        "failure",
        [
            httpx.Response(429),
            httpx.Response(500),
            httpx.Response(503),
            httpx.ConnectError("down"),
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("lost"),
        ],
        ids=["429", "500", "503", "ConnectError", "ReadTimeout", "RemoteProtocolError"],
    )
    def test_idempotent_requests_are_retried_then_succeed(self, gladly, client, clock, method, failure):
        """GET and PATCH are retried on 429, 5xx and transport errors, sleeping only on the fake clock."""
        route = route_for(gladly, method).mock(side_effect=[failure, failure, success_for(method)])
        assert call(client, method) == OPERATIONS[method][3]
        assert route.call_count == 3
        assert clock.sleeps  # backoff went through the injected sleep

    def test_idempotent_request_gives_up_after_max_retries(self, gladly, clock):
        """After max_retries retries the last mapped error is raised."""
        route = gladly.get("/conversations/c1").respond(503)
        with make_client(clock, max_retries=3) as gladly_client, pytest.raises(ServerError):
            gladly_client.get_conversation("c1")
        assert route.call_count == 4

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
    def test_refusals_are_not_retried(self, gladly, client, status):
        """A 4xx other than 429 is final."""
        route = gladly.get("/conversations/c1").respond(status)
        with pytest.raises(GladlyError):
            client.get_conversation("c1")
        assert route.call_count == 1

    @pytest.mark.parametrize(
        "failure",
        [
            httpx.Response(429),
            httpx.ConnectError("refused"),
            httpx.ConnectTimeout("no answer"),
            httpx.PoolTimeout("pool"),
        ],
        ids=["429", "ConnectError", "ConnectTimeout", "PoolTimeout"],
    )
    def test_creating_post_is_retried_when_nothing_was_created(self, gladly, client, failure):
        """A note is resent only after a 429 or a failure that proves it never left."""
        route = gladly.post("/conversations/c1/notes").mock(side_effect=[failure, success_for("POST")])
        assert client.add_note("c1", "hi") == "n1"
        assert route.call_count == 2

    @pytest.mark.parametrize(
        "failure",
        [
            httpx.ReadTimeout("slow"),
            httpx.WriteTimeout("stuck"),
            httpx.RemoteProtocolError("connection lost"),
            httpx.ReadError("reset"),
            httpx.Response(500),
            httpx.Response(502),
        ],
        ids=["ReadTimeout", "WriteTimeout", "RemoteProtocolError", "ReadError", "500", "502"],
    )
    @pytest.mark.parametrize("operation", ["note", "reply"])
    def test_creating_post_is_never_resent_after_an_ambiguous_failure(
        self, gladly, client, failure, operation
    ):
        """A reply or note that may have reached Gladly raises UnknownOutcome after exactly one request."""
        if operation == "note":
            route = gladly.post("/conversations/c1/notes").mock(side_effect=[failure, success_for("POST")])
            send = lambda: client.add_note("c1", "hi")  # noqa: E731
        else:
            route = gladly.post("/conversation-items/i1/reply").mock(
                side_effect=[failure, success_for("POST")]
            )
            send = lambda: client.reply("i1", {"type": "SMS", "body": "hi"})  # noqa: E731
        with pytest.raises(UnknownOutcome):
            send()
        assert route.call_count == 1

    def test_a_429_holds_back_the_method_in_the_pacer(self, gladly, clock):
        """The 429 backoff is spent as a pacer penalty, so other callers of the method wait too."""
        pacer = Pacer(10, clock=clock, sleep=clock.sleep)
        gladly.get("/agents").mock(side_effect=[httpx.Response(429), httpx.Response(200, json=[])])
        backoff = Backoff(base=2.0, cap=2.0, rng=random.Random(1))
        with make_client(clock, pacer=pacer, backoff=backoff) as gladly_client:
            start = clock()
            gladly_client.list_agents()
        assert clock() - start > 0.1  # waited for the penalty, not just one slot
        assert sum(clock.sleeps) == pytest.approx(clock() - start)

    def test_every_attempt_goes_through_the_pacer(self, gladly, clock):
        """Each attempt acquires a slot and reports Ratelimit-Remaining-Second to the pacer."""

        class RecordingPacer(Pacer):
            def __init__(self):
                super().__init__(10, clock=clock, sleep=clock.sleep)
                self.log: list[tuple] = []

            def acquire(self, method):
                self.log.append(("acquire", method))
                return super().acquire(method)

            def observe(self, method, remaining):
                self.log.append(("observe", method, remaining))
                super().observe(method, remaining)

        pacer = RecordingPacer()
        gladly.get("/topics").mock(
            side_effect=[
                httpx.Response(500, headers={"Ratelimit-Remaining-Second": "3"}),
                httpx.Response(200, json=[], headers={"Ratelimit-Remaining-Second": "0"}),
            ]
        )
        with make_client(clock, pacer=pacer) as gladly_client:
            gladly_client.list_topics()
        assert pacer.log == [
            ("acquire", "GET"),
            ("observe", "GET", 3),
            ("acquire", "GET"),
            ("observe", "GET", 0),
        ]


class TestCounters:
    def test_counts_every_request_sent_and_every_429(self, gladly, client):
        """requests counts 429 and 5xx answers too; rate_limited counts the 429s."""
        gladly.get("/inboxes").mock(
            side_effect=[
                httpx.Response(429),
                httpx.Response(500),
                httpx.Response(429),
                httpx.Response(200, json=[]),
            ]
        )
        client.list_inboxes()
        assert (client.requests, client.rate_limited) == (4, 2)

    def test_a_request_that_never_left_is_not_counted(self, gladly, client):
        """A connect failure sent nothing, so it is not a request; a read timeout was."""
        gladly.get("/inboxes").mock(
            side_effect=[
                httpx.ConnectError("refused"),
                httpx.ReadTimeout("slow"),
                httpx.Response(200, json=[]),
            ]
        )
        client.list_inboxes()
        assert client.requests == 2

    def test_counters_are_thread_safe(self, gladly, client):
        """Concurrent callers are all counted."""
        gladly.get("/agents").respond(200, json=[])
        threads = [threading.Thread(target=client.list_agents) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert client.requests == 16


class TestDeadline:
    def test_nothing_is_sent_past_the_deadline(self, gladly, client, clock):
        """Past the deadline a request raises DeadlineExceeded without being sent."""
        route = gladly.get("/agents").respond(200, json=[])
        client.set_deadline(clock() - 1)
        with pytest.raises(DeadlineExceeded):
            client.list_agents()
        assert route.call_count == 0

    def test_deadline_can_be_lifted(self, gladly, client, clock):
        """set_deadline(None) removes the deadline."""
        gladly.get("/agents").respond(200, json=[])
        client.set_deadline(clock() - 1)
        client.set_deadline(None)
        assert client.list_agents() == []

    def test_deadline_from_the_constructor(self, gladly, clock):
        """The deadline may be given when the client is built."""
        route = gladly.get("/agents").respond(200, json=[])
        with make_client(clock, deadline=clock() - 1) as gladly_client, pytest.raises(DeadlineExceeded):
            gladly_client.list_agents()
        assert route.call_count == 0

    def test_no_retry_waits_beyond_the_deadline(self, gladly, clock):
        """A retry whose backoff would end past the deadline gives up with DeadlineExceeded."""
        route = gladly.get("/agents").respond(503)
        backoff = Backoff(base=5, cap=5, rng=FixedRandom())
        with (
            make_client(clock, deadline=clock() + 1, backoff=backoff) as gladly_client,
            pytest.raises(DeadlineExceeded) as raised,
        ):
            gladly_client.list_agents()
        assert isinstance(raised.value.__cause__, ServerError)
        assert route.call_count == 1


class FixedRandom(random.Random):
    def uniform(self, a, b):
        return b


class TestOperations:
    def test_add_note_sends_content_body_and_returns_the_new_id(self, gladly, client):
        """A note is {"content": {"body": ...}} (Gladly's example); its id comes from Location."""
        route = gladly.post("/conversations/c1/notes").respond(
            201, headers={"Location": "/api/v1/conversations/c1/notes/note-77"}
        )
        assert client.add_note("c1", "Follow up <b>Monday</b>") == "note-77"
        assert json.loads(route.calls.last.request.content) == {
            "content": {"body": "Follow up <b>Monday</b>"}
        }

    def test_reply_sends_the_content_and_returns_the_new_item_id(self, gladly, client):
        """A reply is {"content": content}; the new item id is Location's last segment."""
        content = {"type": "EMAIL", "body": "<p>Hi!</p>", "bodyPlain": "Hi!"}
        route = gladly.post("/conversation-items/i1/reply").respond(
            201, headers={"Location": "https://acme.gladly.com/api/v1/conversation-items/item-9"}
        )
        assert client.reply("i1", content) == "item-9"
        assert json.loads(route.calls.last.request.content) == {"content": content}

    @pytest.mark.parametrize("headers", [{}, {"Location": "/"}], ids=["absent", "empty-path"])
    def test_created_without_location_is_malformed(self, gladly, client, headers):
        """A 201 without a usable Location is a MalformedResponse."""
        gladly.post("/conversations/c1/notes").respond(201, headers=headers)
        with pytest.raises(MalformedResponse):
            client.add_note("c1", "hi")

    def test_update_conversation_sends_the_patch(self, gladly, client):
        """The PATCH body is sent as given; a 204 returns None."""
        route = gladly.patch("/conversations/c1").respond(204)
        patch = {"assignee": {"inboxId": "inbox-2"}, "status": {"value": "OPEN"}}
        assert client.update_conversation("c1", patch) is None
        assert json.loads(route.calls.last.request.content) == patch

    def test_events_query_repeats_entities_and_uses_utc_milliseconds(self, gladly, client):
        """startAt/endAt are UTC with milliseconds and Z; entities is a repeated parameter."""
        route = gladly.get("/events").respond(200, text="")
        start = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
        end = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
        assert client.list_events(start, end, ["CONVERSATION", "CONTACT", "CUSTOMER"]) == []
        params = route.calls.last.request.url.params
        assert params["startAt"] == "2024-05-01T12:00:00.123Z"
        assert params["endAt"] == "2024-05-01T12:30:00.000Z"
        assert params.get_list("entities") == ["CONVERSATION", "CONTACT", "CUSTOMER"]

    def test_events_json_lines_are_parsed(self, gladly, client):
        """Each non-blank line is one event, in order."""
        events = [
            {
                "id": "e1",
                "type": "CONVERSATION/CREATED",
                "timestamp": "2024-05-01T12:00:00.07Z",
                "content": {},
            },
            {"id": "e2", "type": "CUSTOMER/MERGED", "timestamp": "2024-05-01T12:00:01Z", "extra": [1]},
        ]
        body = "\n".join(json.dumps(event) for event in events) + "\n\n"
        gladly.get("/events").respond(200, text=body, content_type="application/x-jsonlines")
        now = datetime(2024, 5, 1, 13, tzinfo=UTC)
        assert client.list_events(now - timedelta(hours=1), now, ["CONVERSATION"]) == events

    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ("{not json", "line 2 is not JSON"),
            ('["a list"]', "line 2 is not a JSON object"),
            ('{"type": "X", "timestamp": "2024-05-01T12:00:00Z"}', "line 2: the event has no id"),
            ('{"id": "e2", "type": "", "timestamp": null}', "line 2: the event has no type/timestamp"),
        ],
    )
    def test_a_malformed_event_line_fails_naming_the_line(self, gladly, client, line, expected):
        """A line that is not an event object with id, type and timestamp is a MalformedResponse."""
        good = json.dumps({"id": "e1", "type": "X", "timestamp": "2024-05-01T12:00:00Z"})
        gladly.get("/events").respond(200, text=f"{good}\n{line}\n")
        now = datetime(2024, 5, 1, 13, tzinfo=UTC)
        with pytest.raises(MalformedResponse) as raised:
            client.list_events(now - timedelta(hours=1), now, ["CONVERSATION"])
        assert expected in str(raised.value)

    @pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
    def test_events_split_on_newline_only(self, gladly, client, separator):
        """A line separator other than \\n inside an event string stays part of that event."""
        events = [
            {
                "id": "e1",
                "type": "CONVERSATION/CUSTOM_ATTRIBUTE_ADDED",
                "timestamp": "2024-05-01T12:00:00Z",
                "content": {"customAttributeValue": f"line one{separator}line two"},
            },
            {"id": "e2", "type": "CONVERSATION/CLOSED", "timestamp": "2024-05-01T12:00:01Z", "content": {}},
        ]
        body = "".join(json.dumps(event, ensure_ascii=False) + "\n" for event in events)
        gladly.get("/events").respond(
            200, content=body.encode("utf-8"), content_type="application/x-jsonlines"
        )
        now = datetime(2024, 5, 1, 13, tzinfo=UTC)
        assert client.list_events(now - timedelta(hours=1), now, ["CONVERSATION"]) == events

    def test_a_poll_without_end_reports_gladlys_date_header(self, gladly, client):
        """poll_events sends no endAt and returns Gladly's clock from the Date header as served_at."""
        route = gladly.get("/events").respond(200, text="", headers={"Date": "Wed, 01 May 2024 12:34:56 GMT"})
        page = client.poll_events(datetime(2024, 5, 1, 12, tzinfo=UTC), ["CONVERSATION"])
        assert "endAt" not in route.calls.last.request.url.params
        assert page.served_at == datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)

    @pytest.mark.parametrize("date", [None, "", "yesterday at noon"])
    def test_a_missing_or_garbled_date_header_gives_no_time(self, gladly, client, date):
        """Without a readable Date header served_at is None (the caller decides what to do)."""
        headers = {} if date is None else {"Date": date}
        gladly.get("/events").respond(200, text="", headers=headers)
        assert client.poll_events(datetime(2024, 5, 1, 12, tzinfo=UTC), ["CONVERSATION"]).served_at is None

    def test_events_need_aware_datetimes(self, client):
        """A naive datetime is a programming error, not a silent local-time guess."""
        with pytest.raises(ValueError):
            client.list_events(datetime(2024, 5, 1), datetime(2024, 5, 2), ["CONVERSATION"])

    def test_merged_customer_is_returned_as_moved(self, gladly, client):
        """A 301 whose body names the new id gives Moved(old, new), not an error."""
        gladly.get("/customer-profiles/old").respond(
            301,
            json={
                "errors": [
                    {
                        "attr": "customerId",
                        "code": "moved",
                        "detail": "customer id has changed",
                        "meta": {"old": "old", "new": "new"},
                    }
                ]
            },
            headers={"Location": "/api/v1/customer-profiles/new"},
        )
        assert client.get_customer("old") == Moved(old_id="old", new_id="new")

    @pytest.mark.parametrize("body", [{"errors": [{"code": "moved"}]}, {}, None])
    def test_moved_without_new_id_is_malformed(self, gladly, client, body):
        """A 301 that does not name the surviving customer is a MalformedResponse."""
        route = gladly.get("/customer-profiles/old")
        route.respond(301, json=body) if body is not None else route.respond(301, text="moved")
        with pytest.raises(MalformedResponse):
            client.get_customer("old")

    def test_customer_profile_is_returned(self, gladly, client):
        """A 200 gives the profile as Gladly sent it."""
        profile = {"id": "cu1", "name": "Martha", "emails": [{"original": "m@x.com"}]}
        gladly.get("/customer-profiles/cu1").respond(200, json=profile)
        assert client.get_customer("cu1") == profile

    @pytest.mark.parametrize(
        ("header", "limited"),
        [(None, False), ("false", False), ("False", False), ("true", True), ("1", True), ("", True)],
    )
    def test_items_limited_data_header(self, gladly, client, header, limited):
        """Any Gladly-Limited-Data value other than absent or 'false' means the list was cut off."""
        headers = {} if header is None else {"Gladly-Limited-Data": header}
        items = [{"id": "i1", "content": {"type": "SMS"}}]
        gladly.get("/conversations/c1/items").respond(200, json=items, headers=headers)
        assert client.list_conversation_items("c1") == ItemsPage(items=items, limited=limited)

    @pytest.mark.parametrize(
        ("call_it", "path"),
        [
            (lambda c: c.list_agents(), "/agents"),
            (lambda c: c.list_inboxes(), "/inboxes"),
            (lambda c: c.list_topics(), "/topics"),
            (lambda c: c.list_customer_conversations("cu1"), "/customers/cu1/conversations"),
            (lambda c: c.list_conversation_items("c1"), "/conversations/c1/items"),
            (lambda c: c.list_export_jobs(), "/export/jobs"),
        ],
    )
    @pytest.mark.parametrize(
        "body",
        ['{"id": "x"}', "[1, 2]", "not json", ""],
        ids=["object", "list-of-numbers", "not-json", "empty"],
    )
    def test_list_endpoints_need_a_list_of_objects(self, gladly, client, call_it, path, body):
        """Malformed JSON, or JSON of the wrong shape, is a MalformedResponse."""
        gladly.get(path).respond(200, text=body, content_type="application/json")
        with pytest.raises(MalformedResponse):
            call_it(client)

    @pytest.mark.parametrize(
        ("call_it", "path"),
        [
            (lambda c: c.get_organization(), "/organization"),
            (lambda c: c.get_inbox("in1"), "/inboxes/in1"),
            (lambda c: c.get_conversation("c1"), "/conversations/c1"),
            (lambda c: c.get_item("i1"), "/conversation-items/i1"),
            (lambda c: c.get_customer("cu1"), "/customer-profiles/cu1"),
            (lambda c: c.get_export_job("j1"), "/export/jobs/j1"),
        ],
    )
    @pytest.mark.parametrize("body", ["[]", "{bad", '"text"'], ids=["list", "bad-json", "string"])
    def test_object_endpoints_need_an_object(self, gladly, client, call_it, path, body):
        """An object endpoint that answers a list, a string or broken JSON is a MalformedResponse."""
        gladly.get(path).respond(200, text=body, content_type="application/json")
        with pytest.raises(MalformedResponse):
            call_it(client)

    def test_find_customers_by_email(self, gladly, client):
        """The email goes in the query; the profiles come back as a list."""
        route = gladly.get("/customer-profiles").respond(200, json=[{"id": "cu1"}])
        assert client.find_customers(email="m+1@x.com") == [{"id": "cu1"}]
        assert route.calls.last.request.url.params["email"] == "m+1@x.com"

    def test_export_jobs_query(self, gladly, client):
        """Export jobs are filtered by status and an updatedAt window."""
        route = gladly.get("/export/jobs").respond(200, json=[{"id": "j1"}])
        start = datetime(2024, 5, 1, tzinfo=UTC)
        assert client.list_export_jobs(start_at=start, end_at=start + timedelta(days=1)) == [{"id": "j1"}]
        assert dict(route.calls.last.request.url.params) == {
            "status": "COMPLETED",
            "startAt": "2024-05-01T00:00:00.000Z",
            "endAt": "2024-05-02T00:00:00.000Z",
        }


class BrokenStream(httpx.SyncByteStream):
    """A body that breaks after its first chunk, as a dropped connection does."""

    def __iter__(self):
        yield b'{"id": "partial"}\n'
        raise httpx.ReadError("connection reset")


class Sink:
    """A download sink that keeps what each attempt wrote."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, bytearray]] = []

    def restart(self, content_type: str) -> None:
        self.attempts.append((content_type, bytearray()))

    def write(self, chunk: bytes) -> None:
        self.attempts[-1][1].extend(chunk)


class TestDownload:
    PATH = "/export/jobs/j1/files/conversation_items.jsonl"
    BODY = b"".join(json.dumps({"id": f"i{n}"}).encode() + b"\n" for n in range(5000))

    def test_file_is_streamed_into_the_sink(self, gladly, client):
        """The body reaches the sink whole, with the Content-Type Gladly sent."""
        gladly.get(self.PATH).respond(200, content=self.BODY, content_type="application/x-ndjson")
        sink = Sink()
        assert client.download_export_file("j1", "conversation_items.jsonl", sink) is True
        assert [(t, bytes(b)) for t, b in sink.attempts] == [("application/x-ndjson", self.BODY)]

    def test_missing_file_returns_false(self, gladly, client):
        """A 404 means Gladly no longer holds the file: False, and nothing written."""
        gladly.get(self.PATH).respond(404, json={"errors": [{"code": "not_exist"}]})
        sink = Sink()
        assert client.download_export_file("j1", "conversation_items.jsonl", sink) is False
        assert sink.attempts == []

    @pytest.mark.parametrize(
        "failure",
        [httpx.Response(503), httpx.Response(200, stream=BrokenStream()), httpx.ReadTimeout("slow")],
        ids=["503", "broken-mid-body", "ReadTimeout"],
    )
    def test_transient_failure_restarts_from_scratch(self, gladly, client, failure):
        """A transient failure, even mid-body, is retried like a GET; the last attempt is whole."""
        route = gladly.get(self.PATH).mock(side_effect=[failure, httpx.Response(200, content=self.BODY)])
        sink = Sink()
        assert client.download_export_file("j1", "conversation_items.jsonl", sink) is True
        assert bytes(sink.attempts[-1][1]) == self.BODY
        assert route.call_count == 2

    def test_a_failed_download_raises(self, gladly, client):
        """When the download finally fails, the error is raised and the sink got nothing."""
        gladly.get(self.PATH).respond(401)
        sink = Sink()
        with pytest.raises(AuthenticationFailed):
            client.download_export_file("j1", "conversation_items.jsonl", sink)
        assert sink.attempts == []
