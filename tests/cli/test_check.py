"""``gladly-sync check``: each check passing and failing against a mocked Gladly (respx)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
import respx
from gladly_sync.sync.cli.check import CheckResult, reply_target, run_checks
from gladly_sync.sync.client import GladlyClient

from gladly_sync.errors import AuthenticationFailed, NetworkError, PermissionDenied, UsageError
from tests.cli import API, TOKEN, make_settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def customer_item(item_id: str, content_type: str = "EMAIL", initiator: str = "CUSTOMER") -> dict:
    return {
        "id": item_id,
        "conversationId": "conv-1",
        "timestamp": "2025-03-01T10:00:00Z",
        "initiator": {"type": initiator, "id": "c-1"},
        "content": {"type": content_type, "content": "hello"},
    }


@pytest.fixture
def gladly():
    with respx.mock(base_url=API, assert_all_called=False) as router:
        router.get("/organization").respond(200, json={"id": "org-1", "name": "Acme Support"})
        router.get("/agents").respond(
            200,
            json=[
                {"id": "ag-0", "name": "Amy", "emailAddress": "amy@acme.test"},
                {"id": "ag-api", "name": "API User", "emailAddress": "API@acme.test"},
            ],
        )
        router.get("/inboxes").respond(
            200, json=[{"id": "in-1", "name": "Support"}, {"id": "esc", "name": "Esc"}]
        )
        router.get("/inboxes/in-1").respond(200, json={"id": "in-1", "name": "Support", "disabled": False})
        router.get("/inboxes/esc").respond(200, json={"id": "esc", "name": "Escalations", "disabled": False})
        router.get("/inboxes/in-gone").respond(
            404, json={"errors": [{"code": "not_exist", "detail": "inbox does not exist"}]}
        )
        router.get("/customer-profiles", params={"email": "pat@example.com"}).respond(
            200, json=[{"id": "cust-1"}]
        )
        router.get("/customer-profiles", params={"email": "nobody@example.com"}).respond(200, json=[])
        router.get("/conversations/conv-1").respond(
            200, json={"id": "conv-1", "customerId": "cust-1", "inboxId": "in-1", "status": "OPEN"}
        )
        router.get("/conversations/conv-1/items").respond(
            200,
            json=[
                customer_item("item-1", "CHAT_MESSAGE"),
                customer_item("item-2", "EMAIL"),
                customer_item("item-3", "EMAIL", initiator="AGENT"),
                customer_item("item-4", "VOICEMAIL"),
            ],
        )
        router.get("/conversations/conv-x").respond(
            404, json={"errors": {"code": "not_exist", "detail": "conversation does not exist"}}
        )
        router.get("/conversations/conv-x/items").respond(404, json={"errors": [{"code": "not_exist"}]})
        router.post("/conversation-items/item-2/reply").respond(
            201, headers={"Location": "/api/v1/conversation-items/new-item-9"}
        )
        yield router


def check(settings, **options) -> list[CheckResult]:
    with GladlyClient(settings.gladly, sleep=lambda _: None, max_retries=0) as client:
        return run_checks(settings, client, clock=lambda: NOW, **options)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


class TestPassing:
    def test_every_check_passes_with_its_evidence(self, tmp_path, gladly):
        """All checks pass in order, each with evidence: URL, org name, agent id, inbox names."""
        settings = make_settings(tmp_path, gladly={"sandbox": True})
        results = check(
            settings, customer_email="pat@example.com", conversation_id="conv-1", send_test_reply="conv-1"
        )
        assert [r.name for r in results] == [
            "environment",
            "credentials",
            "api user",
            "inboxes",
            "ingest inbox in-1",
            "escalation inbox",
            "customer",
            "conversation",
            "test reply",
        ]
        assert all(r.ok for r in results), results
        found = by_name(results)
        assert (
            f"API {API}" in found["environment"].evidence
            and "custom base_url" in found["environment"].evidence
        )
        assert "'Acme Support'" in found["credentials"].evidence
        assert "ag-api" in found["api user"].evidence
        assert "'Support'" in found["ingest inbox in-1"].evidence
        assert "'Escalations'" in found["escalation inbox"].evidence
        assert "cust-1" in found["customer"].evidence
        assert "4 items" in found["conversation"].evidence
        assert "new-item-9" in found["test reply"].evidence

    def test_test_reply_goes_to_the_newest_customer_message_with_channel_content(self, tmp_path, gladly):
        """The reply targets the newest replyable customer item (not an agent's, not voice), as email."""
        settings = make_settings(tmp_path, gladly={"sandbox": True})
        check(settings, send_test_reply="conv-1")
        [call] = [c for c in gladly.calls if c.request.method == "POST"]
        assert call.request.url.path == "/api/v1/conversation-items/item-2/reply"
        content = json.loads(call.request.content)["content"]
        assert content["type"] == "EMAIL"
        assert content["bodyPlain"].startswith("gladly-sync check: test reply")
        assert call.request.headers["Authorization"].startswith("Basic ")

    @pytest.mark.parametrize(
        ("gladly_settings", "expected"),
        [
            (
                {"base_url": None, "sandbox": False},
                "production (.gladly.com) for organization acme; API https://acme.gladly.com/api/v1",
            ),
            (
                {"base_url": None, "sandbox": True},
                "sandbox (.gladly.qa) for organization acme; API https://acme.gladly.qa/api/v1",
            ),
        ],
    )
    def test_environment_names_production_or_sandbox(self, tmp_path, gladly_settings, expected):
        """The environment line names production or sandbox and the URL used."""
        settings = make_settings(tmp_path, gladly=gladly_settings)
        with respx.mock(assert_all_called=False) as router:
            router.route().respond(401)
            results = check(settings)
        assert results[0] == CheckResult("environment", True, expected)

    def test_all_inboxes_when_ingest_is_empty(self, tmp_path, gladly):
        """With inboxes.ingest empty every inbox is listed as ingested; no escalation inbox is fine."""
        settings = make_settings(tmp_path, inboxes={"ingest": [], "escalation": None})
        found = by_name(check(settings))
        inboxes = found["inboxes"]
        assert inboxes.ok and "2 inboxes in the organization, all ingested" in inboxes.evidence
        assert found["inboxes"].details == ("esc  'Esc'  (ingested)", "in-1  'Support'  (ingested)")
        assert found["escalation inbox"].ok and "--inbox" in found["escalation inbox"].evidence

    def test_every_inbox_is_listed_with_id_and_name(self, tmp_path, gladly):
        """check lists every inbox, id and name, marking the ingested and the escalation ones."""
        gladly.get("/inboxes").respond(
            200,
            json=[
                {"id": "in-1", "name": "Support"},
                {"id": "esc", "name": "Esc"},
                {"id": "in-9", "name": "Billing", "disabled": True},
            ],
        )
        settings = make_settings(tmp_path)
        found = by_name(check(settings))
        assert "3 inboxes in the organization, 1 listed in inboxes.ingest" in found["inboxes"].evidence
        assert found["inboxes"].details == (
            "in-9  'Billing'  (disabled in Gladly)",
            "esc  'Esc'  (escalation)",
            "in-1  'Support'  (ingested)",
        )
        assert found["inboxes"].to_dict()["details"] == list(found["inboxes"].details)


class TestFailing:
    @pytest.mark.parametrize(
        ("status", "error", "text"),
        [
            (401, AuthenticationFailed, "authentication failed for api@acme.test"),
            (403, PermissionDenied, "API User"),
        ],
    )
    def test_bad_credentials_stop_the_checks(self, tmp_path, gladly, status, error, text):
        """401/403 on GET /organization fails credentials and nothing else is asked."""
        gladly.get("/organization").respond(status)
        results = check(make_settings(tmp_path))
        assert [r.name for r in results] == ["environment", "credentials"]
        assert not results[-1].ok and isinstance(results[-1].error, error)
        assert text in results[-1].evidence and TOKEN not in results[-1].evidence
        assert [c.request.url.path for c in gladly.calls] == ["/api/v1/organization"]

    def test_unreachable_gladly_stops_after_credentials(self, tmp_path, gladly):
        """A transport failure on the credentials check stops the checks too (nothing else can pass)."""
        gladly.get("/organization").mock(side_effect=httpx.ConnectError("refused"))
        results = check(make_settings(tmp_path))
        assert [r.name for r in results] == ["environment", "credentials"]
        assert isinstance(results[-1].error, NetworkError)
        assert "gladly.base_url" in results[-1].evidence

    def test_permission_error_later_stops_too(self, tmp_path, gladly):
        """A 403 on a later call (GET /agents) also stops the checks."""
        gladly.get("/agents").respond(403)
        results = check(make_settings(tmp_path))
        assert [r.name for r in results] == ["environment", "credentials", "api user"]
        assert isinstance(results[-1].error, PermissionDenied)

    def test_api_user_not_among_agents(self, tmp_path, gladly):
        """No agent with the configured email fails that check; the others still run."""
        gladly.get("/agents").respond(200, json=[{"id": "ag-0", "emailAddress": "amy@acme.test"}])
        found = by_name(check(make_settings(tmp_path)))
        assert not found["api user"].ok and "no agent with email api@acme.test" in found["api user"].evidence
        assert found["ingest inbox in-1"].ok

    @pytest.mark.parametrize("option", ["conversation_id", "send_test_reply"])
    def test_unknown_conversation_asks_for_exit_2(self, tmp_path, gladly, option):
        """An unknown conversation fails its check with exit 2, like an unknown id anywhere."""
        settings = make_settings(tmp_path, gladly={"sandbox": True})
        failed = [r for r in check(settings, **{option: "conv-x"}) if not r.ok]
        assert [(r.exit_code, "conv-x not found" in r.evidence) for r in failed] == [(2, True)]

    def test_missing_inbox_id_is_named(self, tmp_path, gladly):
        """A configured inbox id Gladly does not know fails, naming the id and the key to fix."""
        settings = make_settings(tmp_path, inboxes={"ingest": ["in-1", "in-gone"], "escalation": "esc"})
        found = by_name(check(settings))
        assert found["ingest inbox in-1"].ok
        missing = found["ingest inbox in-gone"]
        assert not missing.ok and "inbox in-gone not found" in missing.evidence
        assert "inboxes.ingest" in missing.evidence
        assert found["escalation inbox"].ok

    def test_missing_escalation_inbox(self, tmp_path, gladly):
        """An unknown escalation inbox fails and names inboxes.escalation."""
        settings = make_settings(tmp_path, inboxes={"escalation": "in-gone"})
        found = by_name(check(settings))
        assert not found["escalation inbox"].ok and "inboxes.escalation" in found["escalation inbox"].evidence

    def test_unknown_customer(self, tmp_path, gladly):
        """No profile with the email fails the customer check."""
        found = by_name(check(make_settings(tmp_path), customer_email="nobody@example.com"))
        assert not found["customer"].ok and "no customer profile" in found["customer"].evidence

    def test_unknown_conversation(self, tmp_path, gladly):
        """A conversation Gladly does not know fails that check."""
        found = by_name(check(make_settings(tmp_path), conversation_id="conv-x"))
        assert not found["conversation"].ok and "conv-x not found" in found["conversation"].evidence

    def test_production_test_reply_refused_before_any_request(self, tmp_path, gladly):
        """--send-test-reply on production without --yes-production is a usage error; nothing is sent."""
        settings = make_settings(tmp_path, gladly={"sandbox": False})
        with pytest.raises(UsageError, match="--yes-production"):
            check(settings, send_test_reply="conv-1")
        assert gladly.calls.call_count == 0

    def test_production_test_reply_with_yes_production(self, tmp_path, gladly):
        """--yes-production allows the test reply on production."""
        settings = make_settings(tmp_path, gladly={"sandbox": False})
        found = by_name(check(settings, send_test_reply="conv-1", yes_production=True))
        assert found["test reply"].ok

    def test_no_replyable_message(self, tmp_path, gladly):
        """A conversation with only voice and agent items has nothing to reply to; nothing is sent."""
        gladly.get("/conversations/conv-1/items").respond(
            200, json=[customer_item("v", "VOICEMAIL"), customer_item("a", "EMAIL", initiator="AGENT")]
        )
        found = by_name(check(make_settings(tmp_path, gladly={"sandbox": True}), send_test_reply="conv-1"))
        assert not found["test reply"].ok and "no customer message" in found["test reply"].evidence
        assert not [c for c in gladly.calls if c.request.method == "POST"]


class TestReplyTarget:
    @pytest.mark.parametrize(
        ("items", "expected"),
        [
            ([customer_item("a", "SMS"), customer_item("b", "PHONE_CALL")], "a"),
            ([customer_item("a", "EMAIL"), customer_item("b", "WHATSAPP")], "b"),
            ([customer_item("a", "EMAIL", initiator="AGENT")], None),
            ([], None),
        ],
    )
    def test_newest_replyable_customer_item(self, items, expected):
        """The newest CUSTOMER item of a replyable type; voice and agent items never."""
        target = reply_target(items)
        assert (target["id"] if target else None) == expected
