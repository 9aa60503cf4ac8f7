"""Fidelity: every response the simulator gives for the endpoints the product uses validates
against Gladly's OpenAPI response schemas, and the product's request bodies against its request
schemas. Only the documented quirks are exempt (see conftest.without_quirks)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gladly_sync.simulator import Simulator

REPLIES = [{"type": "EMAIL", "body": "<p>Hi!</p>", "bodyPlain": "Hi!"},
           {"type": "CHAT_MESSAGE", "messageType": "TEXT", "body": "Hi from chat!"},
           {"type": "SMS", "body": "Hi from SMS!"}, {"type": "WHATSAPP", "body": "Hi!"},
           {"type": "FACEBOOK_MESSAGE", "body": "Hi!"}, {"type": "INSTAGRAM_DIRECT", "body": "Hi!"}]
CHANNEL_INBOX = {"EMAIL": "Email Support", "CHAT_MESSAGE": "Chat Support", "SMS": "SMS",
                 "WHATSAPP": "SMS", "FACEBOOK_MESSAGE": "Chat Support",
                 "INSTAGRAM_DIRECT": "Chat Support"}
PATCHES = [{"status": {"value": "CLOSED", "force": True}},
           {"assignee": {"inboxId": "{escalations}"}, "status": {"value": "OPEN"}},
           {"assignee": {"inboxId": "{chat}"}}]
EXPORT_FILES = {"agents.jsonl": 0, "conversation_items.jsonl": 1, "customers.jsonl": 2,
                "topics.jsonl": 3}


@pytest.fixture(scope="module")
def busy() -> Iterator[tuple[Simulator, httpx.Client]]:
    """A simulator with seeded history plus everything the product does to it over HTTP."""
    with Simulator(seed=3, customers=30, conversations=80) as sim:
        world = sim.world
        with httpx.Client(base_url=sim.base_url + "/api/v1", timeout=10, verify=False,
                          auth=(sim.api_email, sim.api_token)) as http:
            for number, content in enumerate(REPLIES):
                customer_id = world.new_customer(email=f"schema{number}@example.com",
                                                 phone=f"+1415555{7000 + number}")
                conversation_id = world.new_conversation(
                    customer_id, world.inbox_id(CHANNEL_INBOX[content["type"]]),
                    channel=content["type"], text="Help please")
                item_id = world.items(conversation_id)[0]["id"]
                assert http.post(f"/conversation-items/{item_id}/reply",
                                 json={"content": content}).status_code == 201
                assert http.post(f"/conversations/{conversation_id}/notes",
                                 json={"content": {"body": "<b>noted</b>"}}).status_code == 201
                escalations = world.inbox_id("Escalations")
                for body in PATCHES:
                    text = json.dumps(body).replace("{escalations}", escalations).replace(
                        "{chat}", world.inbox_id("Chat Support"))
                    http.patch(f"/conversations/{conversation_id}", content=text)
                http.post(f"/conversation-items/{item_id}/redact")
            calls = [i for i in world.snapshot()["items"].values()
                     if i["content"]["type"] in ("PHONE_CALL", "VOICEMAIL")]
            http.post(f"/conversation-items/{calls[-1]['id']}/redact")
            source, dest = world.new_customer(email="m1@example.com"), world.customers()[0]["id"]
            world.merge_customers(source, dest)
            gift = world.conversations(status="OPEN")[0]["id"]
            world.set_conversation_attribute(gift, "giftMessage", "Happy birthday\u2028Love, Sam")
            now = world.now()
            world.create_export_job(now - timedelta(hours=2), now + timedelta(seconds=1))
            yield sim, http


class TestReferenceResponses:
    @pytest.mark.parametrize(("path", "key"), [
        ("/organization", None), ("/agents", None), ("/agents/{agentId}", "agents"),
        ("/inboxes", None), ("/inboxes/{inboxId}", "inboxes"), ("/topics", None),
        ("/topics/{topicId}", "topics"), ("/export/schedules", None), ("/export/jobs", None),
    ])
    def test_reference_data_validates(self, openapi, busy, path: str, key: str | None) -> None:
        """Organization, agents, inboxes, topics, schedules and jobs match their schemas."""
        sim, http = busy
        ids = list(getattr(sim.world, key)) if key else [None]
        for value in ids:
            url = path.replace(path[path.find("{"):path.find("}") + 1], value) if value else path
            response = http.get(url)
            assert response.status_code == 200
            openapi.assert_valid(openapi.response_pointer(path, "get"), response.json())

    def test_export_job_validates(self, openapi, busy) -> None:
        """Each listed job also validates when fetched alone."""
        _, http = busy
        for job in http.get("/export/jobs").json():
            openapi.assert_valid(openapi.response_pointer("/export/jobs/{jobId}", "get"),
                                 http.get(f"/export/jobs/{job['id']}").json())


class TestCustomerResponses:
    def test_profiles_and_their_conversations_validate(self, openapi, busy) -> None:
        """Every profile, every find result and every conversation list matches its schema."""
        sim, http = busy
        for profile in sim.world.customers():
            openapi.assert_valid(openapi.response_pointer("/customer-profiles/{customerId}", "get"),
                                 http.get(f"/customer-profiles/{profile['id']}").json())
            email = profile["emails"][0]["original"]
            openapi.assert_valid(openapi.response_pointer("/customer-profiles", "get"),
                                 http.get("/customer-profiles", params={"email": email}).json())
            response = http.get(f"/customers/{profile['id']}/conversations")
            openapi.assert_valid(openapi.response_pointer("/customers/{customerId}/conversations",
                                                          "get"), response.json())

    def test_merged_profile_301_validates(self, openapi, busy) -> None:
        """The 301 body of a merged-away id matches the documented moved error."""
        sim, http = busy
        [source] = [e["content"]["sourceCustomerId"] for e in sim.world.events()
                    if e["type"] == "CUSTOMER/MERGED"]
        response = http.get(f"/customer-profiles/{source}")
        assert response.status_code == 301
        openapi.assert_valid(openapi.response_pointer("/customer-profiles/{customerId}", "get", 301),
                             response.json())

    def test_unknown_profile_404_has_the_documented_single_object_form(self, openapi,
                                                                       busy) -> None:
        """Gladly's spec shows this 404 with `errors` as one object although its schema says
        array; the simulator serves the example's form (so clients parse both)."""
        _, http = busy
        example = openapi.document["paths"]["/api/v1/customer-profiles/{customerId}"]["get"][
            "responses"]["404"]["content"]["application/json"]["example"]
        body = http.get("/customer-profiles/AAAAAAAAAAAAAAAAAAAAAA").json()
        assert set(body["errors"]) == set(example["errors"]) == {"code", "detail"}


class TestConversationResponses:
    def test_every_conversation_and_item_validates(self, openapi, busy, quirkless) -> None:
        """All conversations, items lists and single items validate, quirks aside; the quirks
        seen are exactly the documented ones."""
        sim, http = busy
        item_pointer = openapi.response_pointer("/conversation-items/{itemId}", "get")
        quirks: Counter[str] = Counter()
        foreign = 0
        for conversation in sim.world.conversations():
            cid = conversation["id"]
            openapi.assert_valid(openapi.response_pointer("/conversations/{conversationId}", "get"),
                                 http.get(f"/conversations/{cid}").json())
            items = http.get(f"/conversations/{cid}/items").json()
            fixed = []
            for item in items:
                repaired, found = quirkless(item)
                quirks.update(found)
                foreign += item["conversationId"] != cid   # quirk: another conversation's item
                fixed.append(repaired)
            openapi.assert_valid(openapi.response_pointer("/conversations/{conversationId}/items",
                                                          "get"), fixed)
            for item in items:
                single = http.get(f"/conversation-items/{item['id']}").json()
                openapi.assert_valid(item_pointer, quirkless(single)[0])
        assert set(quirks) == {"chat_without_message_type", "string_recording_duration"}
        assert foreign == 1

    def test_quirks_break_the_schema_only_where_documented(self, openapi, busy) -> None:
        """Unrepaired, exactly the quirky items fail validation."""
        sim, _ = busy
        pointer = openapi.response_pointer("/conversation-items/{itemId}", "get")
        failing = [i for i in sim.world.snapshot()["items"].values() if openapi.errors(pointer, i)]
        assert len(failing) == 3
        assert all(("messageType" not in i["content"]) or
                   isinstance(i["content"].get("recordingDuration"), str) for i in failing)

    def test_notes_validate(self, openapi, busy) -> None:
        """GET of a created note matches the note schema."""
        sim, http = busy
        pointer = openapi.response_pointer("/conversations/{conversationId}/notes/{noteId}", "get")
        notes = [i for i in sim.world.snapshot()["items"].values()
                 if i["content"]["type"] == "CONVERSATION_NOTE"]
        for note in notes[-6:]:
            response = http.get(f"/conversations/{note['conversationId']}/notes/{note['id']}")
            openapi.assert_valid(pointer, response.json())


class TestErrorResponses:
    @pytest.mark.parametrize(("method", "path", "template", "body"), [
        ("PATCH", "/conversations/{conversation}", "/conversations/{conversationId}",
         {"assignee": {}, "status": {}}),
        ("PATCH", "/conversations/AAAAAAAAAAAAAAAAAAAAAA", "/conversations/{conversationId}",
         {"status": {"value": "OPEN"}}),
        ("POST", "/conversation-items/{item}/reply", "/conversation-items/{itemId}/reply",
         {"content": {"body": "x"}}),
        ("POST", "/conversation-items/{item}/reply", "/conversation-items/{itemId}/reply",
         {"content": {"type": "SMS", "body": "x" * 3000}}),
        ("POST", "/conversations/{conversation}/notes", "/conversations/{conversationId}/notes",
         {"content": {}}),
        ("GET", "/customer-profiles?email=a@x&phoneNumber=1", "/customer-profiles", None),
        ("GET", "/events?startAt=2001-01-01T00:00:00Z&entities=CONTACT", "/events", None),
        ("GET", "/export/jobs/AAAAAAAAAAAAAAAAAAAAAA", "/export/jobs/{jobId}", None),
        ("GET", "/topics/AAAAAAAAAAAAAAAAAAAAAA", "/topics/{topicId}", None),
    ])
    def test_error_bodies_validate(self, openapi, busy, method: str, path: str, template: str,
                                   body: Any) -> None:
        """4xx bodies match the operation's documented error schema."""
        sim, http = busy
        conversation = sim.world.conversations(status="OPEN")[0]["id"]
        item = sim.world.items(conversation)[0]["id"]
        url = path.replace("{conversation}", conversation).replace("{item}", item)
        response = http.request(method, url, json=body)
        assert response.status_code in (400, 404)
        pointer = openapi.response_pointer(template, method, response.status_code)
        openapi.assert_valid(pointer, response.json())


class TestStreamResponses:
    def test_events_validate_line_by_line(self, openapi, busy) -> None:
        """Each JSON line of /events matches one of the documented event schemas."""
        sim, http = busy
        start = datetime.now(UTC) - timedelta(hours=23)
        response = http.get("/events", params={
            "startAt": start.isoformat(),
            "entities": ["CONVERSATION", "CONTACT", "CUSTOMER", "CUSTOMER_PROFILE"]})
        pointer = openapi.response_pointer("/events", "get", media="application/x-jsonlines")
        events = [json.loads(line) for line in response.text.split("\n") if line]
        for event in events:
            openapi.assert_valid(pointer, event)
        assert {"CONVERSATION/CREATED", "CONVERSATION/CLOSED", "CONVERSATION/REOPENED",
                "CONVERSATION/CUSTOM_ATTRIBUTE_ADDED",
                "CONVERSATION/NOTE_CREATED", "CONVERSATION_ASSIGNEE/UPDATED",
                "CONTACT/MESSAGE_RECEIVED", "CONTACT/MESSAGE_SENT", "CUSTOMER/MERGED",
                "CUSTOMER_PROFILE/CREATED"} <= {e["type"] for e in events}

    @pytest.mark.parametrize("filename", list(EXPORT_FILES))
    def test_export_files_validate_line_by_line(self, openapi, busy, quirkless,
                                                filename: str) -> None:
        """Export files are declared as arrays but served as ndjson: each line validates as an
        element of the file's declared array."""
        sim, http = busy
        pointer = openapi.response_pointer("/export/jobs/{jobId}/files/{filename}", "get",
                                           media="application/x-ndjson")
        branch = f"{pointer}/oneOf/{EXPORT_FILES[filename]}"
        checked = 0
        for job in http.get("/export/jobs").json():
            response = http.get(f"/export/jobs/{job['id']}/files/{filename}")
            rows = [quirkless(json.loads(line))[0] if filename == "conversation_items.jsonl"
                    else json.loads(line) for line in response.text.splitlines()]
            for row in rows:
                openapi.assert_valid(branch, [row])
            checked += len(rows)
        assert checked

    def test_bulk_export_lines_validate(self, openapi, busy) -> None:
        """Synthetic bulk items have the same shape as real ones."""
        sim, http = busy
        job = sim.world.create_bulk_export_job(items=600, conversations=5)
        pointer = openapi.response_pointer("/export/jobs/{jobId}/files/{filename}", "get",
                                           media="application/x-ndjson")
        text = http.get(f"/export/jobs/{job['id']}/files/conversation_items.jsonl").text
        rows = [json.loads(line) for line in text.splitlines()]
        openapi.assert_valid(f"{pointer}/oneOf/1", rows)
        assert {r["content"]["type"] for r in rows} == {"EMAIL", "CHAT_MESSAGE", "SMS",
                                                         "CONVERSATION_NOTE"}


class TestRequestBodies:
    @pytest.mark.parametrize("content", REPLIES)
    def test_reply_bodies_validate(self, openapi, content: dict[str, Any]) -> None:
        """The reply bodies the simulator accepts are valid Gladly reply requests."""
        openapi.assert_valid(openapi.request_pointer("/conversation-items/{itemId}/reply", "post"),
                             {"content": content})

    def test_note_body_validates(self, openapi) -> None:
        """The note body in the example's form (`content.body`) satisfies the request schema."""
        openapi.assert_valid(openapi.request_pointer("/conversations/{conversationId}/notes", "post"),
                             {"content": {"body": "Customer asked about <b>loyalty</b>"}})

    @pytest.mark.parametrize("body", PATCHES)
    def test_patch_bodies_validate(self, openapi, body: dict[str, Any]) -> None:
        """Escalation, reopen-and-reassign and close bodies are valid updates."""
        text = json.dumps(body).replace("{escalations}", "E1nArq1uQAees_DogHB0MA").replace(
            "{chat}", "vZgCEQlDR6aQz_0HeWZ9_Q")
        openapi.assert_valid(openapi.request_pointer("/conversations/{conversationId}", "patch"),
                             json.loads(text))
