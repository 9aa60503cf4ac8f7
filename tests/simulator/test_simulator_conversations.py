"""Conversations over HTTP: reading items, PATCH rules, notes, replies and redactions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from gladly_sync.simulator import Simulator

UNKNOWN = "AAAAAAAAAAAAAAAAAAAAAA"


def first_error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["errors"][0]


class TestReadConversation:
    def test_conversation_and_items(self, sim: Simulator, client: httpx.Client) -> None:
        """GET returns the conversation and its items ascending by timestamp."""
        conversation = sim.world.conversations()[0]
        assert client.get(f"/conversations/{conversation['id']}").json() == conversation
        response = client.get(f"/conversations/{conversation['id']}/items")
        assert [i["id"] for i in response.json()] == [i["id"] for i in
                                                      sim.world.items(conversation["id"])]
        assert "Gladly-Limited-Data" not in response.headers

    @pytest.mark.parametrize("path", [f"/conversations/{UNKNOWN}", f"/conversations/{UNKNOWN}/items",
                                      f"/conversation-items/{UNKNOWN}"])
    def test_unknown_ids_are_404(self, client: httpx.Client, path: str) -> None:
        """Unknown conversations and items answer 404 not_exist."""
        response = client.get(path)
        assert response.status_code == 404 and first_error(response)["code"] == "not_exist"

    def test_items_are_capped_at_a_thousand(self, sim: Simulator, client: httpx.Client,
                                            new_conversation) -> None:
        """A conversation with 1001 items lists the oldest 1000 with Gladly-Limited-Data."""
        conversation_id, _ = new_conversation()
        for _ in range(1000):
            sim.world.new_message(conversation_id, text="again")
        response = client.get(f"/conversations/{conversation_id}/items")
        assert len(response.json()) == 1000
        assert response.json()[0]["id"] == sim.world.items(conversation_id)[0]["id"]
        assert response.headers["Gladly-Limited-Data"] == "true"

    def test_session_filter(self, sim: Simulator, client: httpx.Client, new_conversation) -> None:
        """?sessionId= keeps only that chat session's items."""
        conversation_id, item_id = new_conversation("CHAT_MESSAGE", "Chat Support")
        session = sim.world.item(item_id)["sessionId"]
        sim.world.add_note(conversation_id, "no session on notes")
        found = client.get(f"/conversations/{conversation_id}/items",
                           params={"sessionId": session}).json()
        assert [i["id"] for i in found] == [item_id]

    def test_foreign_item_quirk(self, sim: Simulator, client: httpx.Client) -> None:
        """One seeded list holds an item of another conversation of the same customer."""
        [(listed_in, foreign_ids)] = sim.world.snapshot()["foreign_items"].items()
        items = client.get(f"/conversations/{listed_in}/items").json()
        foreign = [i for i in items if i["conversationId"] != listed_in]
        assert [i["id"] for i in foreign] == foreign_ids
        owner = sim.world.conversation(foreign[0]["conversationId"])
        assert owner["customerId"] == sim.world.conversation(listed_in)["customerId"]


class TestPatchConversation:
    @pytest.mark.parametrize(("body", "attr", "code"), [
        ({"assignee": {"agentId": "x"}}, "assignee.inboxId", "blank"),
        ({"assignee": {"inboxId": ""}}, "assignee.inboxId", "blank"),
        ({"status": {}}, "status.value", "blank"),
        ({"status": {"value": "WAITING"}}, "status.value", "invalid"),
        ({"assignee": {"inboxId": UNKNOWN}}, "assignee.inboxId", "invalid"),
    ])
    def test_malformed_updates_are_refused(self, client: httpx.Client, new_conversation,
                                           body: dict[str, Any], attr: str, code: str) -> None:
        """Incomplete assignee/status, a WAITING status or an unknown inbox are 400s."""
        conversation_id, _ = new_conversation()
        response = client.patch(f"/conversations/{conversation_id}", json=body)
        assert response.status_code == 400
        assert first_error(response)["attr"] == attr and first_error(response)["code"] == code

    def test_move_to_another_inbox(self, sim: Simulator, client: httpx.Client, new_conversation,
                                   events_of) -> None:
        """assignee.inboxId alone moves the conversation, unassigned, with one event; a
        repeat is a 204 no-op with no new event."""
        conversation_id, _ = new_conversation()
        escalations = sim.world.inbox_id("Escalations")
        for _ in range(2):
            response = client.patch(f"/conversations/{conversation_id}",
                                    json={"assignee": {"inboxId": escalations}})
            assert response.status_code == 204 and response.content == b""
        conversation = client.get(f"/conversations/{conversation_id}").json()
        assert conversation["inboxId"] == escalations and "agentId" not in conversation
        [event] = events_of(sim, "CONVERSATION_ASSIGNEE/UPDATED", conversationId=conversation_id)
        assert event["content"]["reason"] == "MANUAL"
        assert event["initiator"] == {"id": sim.world.api_agent_id, "type": "AGENT"}

    def test_null_agent_means_unassigned(self, sim: Simulator, client: httpx.Client,
                                         new_conversation) -> None:
        """`"agentId": null` (as Gladly's webhook example sends) is accepted as unassigned."""
        conversation_id, _ = new_conversation()
        sim.world.agent_reply(conversation_id, "hello")
        body = {"assignee": {"inboxId": sim.world.inbox_id("SMS"), "agentId": None}}
        assert client.patch(f"/conversations/{conversation_id}", json=body).status_code == 204
        assert "agentId" not in sim.world.conversation(conversation_id)

    def test_closed_conversation_cannot_be_reassigned(self, sim: Simulator, client: httpx.Client,
                                                      new_conversation) -> None:
        """Reassigning a CLOSED conversation without status OPEN is 400 invalid_state."""
        conversation_id, _ = new_conversation()
        sim.world.close(conversation_id)
        response = client.patch(f"/conversations/{conversation_id}",
                                json={"assignee": {"inboxId": sim.world.inbox_id("Escalations")}})
        assert response.status_code == 400
        assert first_error(response) == {"code": "invalid_state",
                                         "detail": "closed conversation cannot be reassigned"}
        assert sim.world.conversation(conversation_id)["status"] == "CLOSED"

    def test_reopen_and_reassign_in_one_request(self, sim: Simulator, client: httpx.Client,
                                                new_conversation, events_of) -> None:
        """status OPEN with an assignee reopens, then reassigns, a CLOSED conversation."""
        conversation_id, _ = new_conversation()
        sim.world.close(conversation_id)
        escalations = sim.world.inbox_id("Escalations")
        response = client.patch(f"/conversations/{conversation_id}", json={
            "assignee": {"inboxId": escalations}, "status": {"value": "OPEN"}})
        assert response.status_code == 204
        conversation = sim.world.conversation(conversation_id)
        assert conversation["status"] == "OPEN" and conversation["inboxId"] == escalations
        assert events_of(sim, "CONVERSATION/REOPENED", conversationId=conversation_id)
        assert events_of(sim, "CONVERSATION_ASSIGNEE/UPDATED", conversationId=conversation_id)

    def test_identical_close_of_closed_conversation_is_a_no_op(
            self, sim: Simulator, client: httpx.Client, new_conversation) -> None:
        """Sending the current assignee with status CLOSED to a closed conversation is a 204."""
        conversation_id, _ = new_conversation()
        sim.world.close(conversation_id)
        before = len(sim.world.events())
        conversation = sim.world.conversation(conversation_id)
        response = client.patch(f"/conversations/{conversation_id}", json={
            "assignee": {"inboxId": conversation["inboxId"]}, "status": {"value": "CLOSED"}})
        assert response.status_code == 204 and len(sim.world.events()) == before

    def test_closing_while_customer_waits_needs_force(self, sim: Simulator, client: httpx.Client,
                                                      new_conversation, events_of) -> None:
        """Closing over an unanswered customer message needs `force`; with it, it closes."""
        conversation_id, _ = new_conversation()
        path = f"/conversations/{conversation_id}"
        refused = client.patch(path, json={"status": {"value": "CLOSED"}})
        assert refused.status_code == 400 and first_error(refused)["code"] == "invalid_state"
        assert client.patch(path, json={"status": {"value": "CLOSED", "force": True}}).status_code == 204
        assert "closedAt" in sim.world.conversation(conversation_id)
        assert events_of(sim, "CONVERSATION/CLOSED", conversationId=conversation_id)

    def test_unknown_conversation_is_404(self, client: httpx.Client) -> None:
        """PATCH of an unknown conversation answers 404 not_exist."""
        response = client.patch(f"/conversations/{UNKNOWN}", json={"status": {"value": "OPEN"}})
        assert response.status_code == 404 and first_error(response)["code"] == "not_exist"


class TestNotes:
    @pytest.mark.parametrize("body", [{"content": {"body": "Checked <b>stock</b>"}},
                                      {"body": "Checked <b>stock</b>"}])
    def test_note_is_created(self, sim: Simulator, client: httpx.Client, new_conversation,
                             events_of, body: dict[str, Any]) -> None:
        """A note answers 201 with an empty body and a Location; the item is the API user's."""
        conversation_id, _ = new_conversation()
        response = client.post(f"/conversations/{conversation_id}/notes", json=body)
        assert response.status_code == 201 and response.content == b""
        note_id = response.headers["Location"].rsplit("/", 1)[1]
        assert response.headers["Location"] == f"/api/v1/conversations/{conversation_id}/notes/{note_id}"
        note = client.get(f"/conversations/{conversation_id}/notes/{note_id}").json()
        assert note["content"] == {"type": "CONVERSATION_NOTE", "body": "Checked <b>stock</b>"}
        assert note["initiator"] == {"type": "AGENT", "id": sim.world.api_agent_id}
        assert events_of(sim, "CONVERSATION/NOTE_CREATED", noteId=note_id)

    @pytest.mark.parametrize("body", [None, {}, {"content": {"body": "  "}}, {"content": "x"}])
    def test_blank_note_is_refused(self, client: httpx.Client, new_conversation,
                                   body: Any) -> None:
        """A missing or blank note body is 400 blank."""
        conversation_id, _ = new_conversation()
        response = client.post(f"/conversations/{conversation_id}/notes", json=body)
        assert response.status_code == 400 and first_error(response)["code"] == "blank"

    def test_note_on_unknown_conversation_is_404(self, client: httpx.Client) -> None:
        """Notes need an existing conversation."""
        response = client.post(f"/conversations/{UNKNOWN}/notes", json={"content": {"body": "x"}})
        assert response.status_code == 404


REPLY_CHANNELS = [("EMAIL", "Email Support"), ("CHAT_MESSAGE", "Chat Support"), ("SMS", "SMS"),
                  ("WHATSAPP", "SMS"), ("FACEBOOK_MESSAGE", "Chat Support"),
                  ("INSTAGRAM_DIRECT", "Chat Support")]


class TestReplies:
    @pytest.mark.parametrize(("channel", "inbox"), REPLY_CHANNELS)
    def test_reply_in_the_items_channel(self, sim: Simulator, client: httpx.Client,
                                        new_conversation, events_of, channel: str,
                                        inbox: str) -> None:
        """A reply answers 201 + Location; the item is the API user's, to the customer, with
        a MESSAGE_SENT event, and an unassigned conversation is assigned to the API user."""
        conversation_id, item_id = new_conversation(channel, inbox)
        response = client.post(f"/conversation-items/{item_id}/reply",
                               json={"content": {"type": channel, "body": "On its way!"}})
        assert response.status_code == 201 and response.content == b""
        new_id = response.headers["Location"].removeprefix("/api/v1/conversation-items/")
        item = client.get(f"/conversation-items/{new_id}").json()
        customer_id = sim.world.conversation(conversation_id)["customerId"]
        assert item["initiator"] == {"type": "AGENT", "id": sim.world.api_agent_id}
        assert item["responder"] == {"type": "CUSTOMER", "id": customer_id}
        assert item["content"]["type"] == channel and item["content"]["content"] == "On its way!"
        assert sim.world.conversation(conversation_id)["agentId"] == sim.world.api_agent_id
        assert events_of(sim, "CONTACT/MESSAGE_SENT", messageId=new_id)

    @pytest.mark.parametrize(("content", "expected"), [
        ({"type": "EMAIL", "body": "<p>Hi &amp; welcome</p>", "bodyPlain": "Hi and welcome"},
         "Hi and welcome"),
        ({"type": "EMAIL", "body": "<p>Hi &amp; welcome</p><p>Bye</p>"}, "Hi & welcome\nBye"),
    ])
    def test_email_reply_keeps_plain_text_and_subject(self, sim: Simulator, client: httpx.Client,
                                                      new_conversation, content: dict[str, str],
                                                      expected: str) -> None:
        """An email reply stores bodyPlain (or the HTML as text) under a "Re:" subject."""
        conversation_id, item_id = new_conversation()
        client.post(f"/conversation-items/{item_id}/reply", json={"content": content})
        reply = sim.world.items(conversation_id)[-1]["content"]
        assert reply["content"] == expected and reply["subject"] == "Re: Parcel"
        assert reply["to"] == ["test.person1@example.com"]

    def test_reply_to_closed_conversation_is_refused(self, sim: Simulator, client: httpx.Client,
                                                     new_conversation) -> None:
        """Replying in a CLOSED conversation is 400 invalid and sends nothing."""
        conversation_id, item_id = new_conversation()
        sim.world.close(conversation_id)
        count = len(sim.world.items(conversation_id))
        response = client.post(f"/conversation-items/{item_id}/reply",
                               json={"content": {"type": "EMAIL", "body": "hi"}})
        assert response.status_code == 400
        assert first_error(response) == {"code": "invalid", "detail":
                                         "you cannot reply to items in closed conversations"}
        assert len(sim.world.items(conversation_id)) == count

    def test_reply_to_agent_message_is_refused(self, sim: Simulator, client: httpx.Client,
                                               new_conversation) -> None:
        """Only customer messages can be replied to."""
        conversation_id, _ = new_conversation()
        agent_item = sim.world.agent_reply(conversation_id, "hello")
        response = client.post(f"/conversation-items/{agent_item}/reply",
                               json={"content": {"type": "EMAIL", "body": "hi"}})
        assert first_error(response) == {"code": "invalid",
                                         "detail": "you can only reply to customer messages"}

    @pytest.mark.parametrize("voice_type", ["VOICEMAIL", "PHONE_CALL"])
    def test_reply_to_voice_is_refused(self, sim: Simulator, client: httpx.Client,
                                       voice_type: str) -> None:
        """Voice items cannot be replied to: `type [VOICEMAIL] is not supported`."""
        customer_id = sim.world.new_customer(email="voice@example.com", phone="+14155550123")
        conversation_id = sim.world.new_conversation(customer_id, sim.world.inbox_id("Voice"),
                                                     channel=voice_type)
        item = sim.world.items(conversation_id)[0]
        response = client.post(f"/conversation-items/{item['id']}/reply",
                               json={"content": {"type": "SMS", "body": "hi"}})
        assert response.status_code == 400
        assert first_error(response) == {"code": "invalid",
                                         "detail": f"type [{voice_type}] is not supported"}

    @pytest.mark.parametrize(("content", "code", "attr"), [
        (None, "blank", "content"),
        ({"body": "hi"}, "blank", "content.type"),
        ({"type": "SMS", "body": ""}, "blank", "content.body"),
        ({"type": "SMS", "body": "x" * 2049}, "too_long", "content.body"),
    ])
    def test_malformed_replies_are_refused(self, client: httpx.Client, new_conversation,
                                           content: Any, code: str, attr: str) -> None:
        """Missing content/type/body and non-email bodies over 2048 characters are 400s."""
        _, item_id = new_conversation("SMS", "SMS")
        response = client.post(f"/conversation-items/{item_id}/reply", json={"content": content})
        assert response.status_code == 400
        assert (first_error(response)["code"], first_error(response)["attr"]) == (code, attr)

    def test_long_email_reply_is_accepted(self, client: httpx.Client, new_conversation) -> None:
        """The 2048-character limit does not apply to email bodies."""
        _, item_id = new_conversation()
        response = client.post(f"/conversation-items/{item_id}/reply",
                               json={"content": {"type": "EMAIL", "body": "x" * 5000}})
        assert response.status_code == 201

    def test_reply_to_unknown_item_is_404(self, client: httpx.Client) -> None:
        """Replying to an unknown item answers 404."""
        response = client.post(f"/conversation-items/{UNKNOWN}/reply",
                               json={"content": {"type": "EMAIL", "body": "hi"}})
        assert response.status_code == 404


class TestRedaction:
    def test_message_content_is_emptied_without_an_event(self, sim: Simulator,
                                                         client: httpx.Client,
                                                         new_conversation) -> None:
        """Redacting empties text and subject, keeps the item, and emits no event."""
        _, item_id = new_conversation()
        before = len(sim.world.events())
        response = client.post(f"/conversation-items/{item_id}/redact")
        assert response.status_code == 201
        content = client.get(f"/conversation-items/{item_id}").json()["content"]
        assert content["content"] == "" and content["subject"] == ""
        assert len(sim.world.events()) == before

    def test_voice_recording_is_deleted(self, sim: Simulator, client: httpx.Client) -> None:
        """Redacting a call drops its recording URL and marks the recording DELETED."""
        call = next(i for i in sim.world.snapshot()["items"].values()
                    if i["content"]["type"] == "PHONE_CALL")
        client.post(f"/conversation-items/{call['id']}/redact")
        content = sim.world.item(call["id"])["content"]
        assert content["recordingStatus"] == "DELETED" and "recordingUrl" not in content

    def test_unknown_item_is_404(self, client: httpx.Client) -> None:
        """Redacting an unknown item answers 404."""
        assert client.post(f"/conversation-items/{UNKNOWN}/redact").status_code == 404
