"""Outbox row → request body, and the text normalisation reconciliation relies on."""

from __future__ import annotations

import pytest
from gladly_sync.sync.outbox.payloads import (
    escalation_patch,
    html_to_text,
    normalise_text,
    note_body,
    reply_content,
    reply_text,
)


def _reply(channel: str, body: str, html: bool = False) -> dict:
    return {"kind": "reply", "channel": channel, "body": body, "body_is_html": html}


class TestReplyContent:
    def test_plain_email_becomes_escaped_html_with_line_breaks(self):
        """Plain text email: HTML-escaped, newlines as <br>, and the text itself as bodyPlain."""
        row = _reply("EMAIL", "Hi Ann,\n\nYour order <#42> ships today & arrives Monday.\nBob")
        assert reply_content(row) == {
            "type": "EMAIL",
            "body": "Hi Ann,<br><br>Your order &lt;#42&gt; ships today &amp; arrives Monday.<br>Bob",
            "bodyPlain": "Hi Ann,\n\nYour order <#42> ships today & arrives Monday.\nBob",
        }

    def test_html_email_is_sent_as_is_with_stripped_plain_text(self):
        """--html: the body goes out as HTML and bodyPlain is its text without tags."""
        row = _reply("EMAIL", "<p>Hi <b>Ann</b>,</p><p>Fish &amp; chips<br>Bob</p>", html=True)
        assert reply_content(row) == {
            "type": "EMAIL",
            "body": "<p>Hi <b>Ann</b>,</p><p>Fish &amp; chips<br>Bob</p>",
            "bodyPlain": "Hi Ann,\n\nFish & chips\nBob",
        }

    def test_chat_is_a_text_message(self):
        """A chat reply is a TEXT chat message."""
        assert reply_content(_reply("CHAT_MESSAGE", "On it!")) == {
            "type": "CHAT_MESSAGE",
            "messageType": "TEXT",
            "body": "On it!",
        }

    @pytest.mark.parametrize("channel", ["SMS", "WHATSAPP", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT"])
    def test_message_channels_send_plain_body(self, channel):
        """SMS, WhatsApp, Facebook and Instagram replies carry the plain body under their own type."""
        assert reply_content(_reply(channel, "See you <3")) == {"type": channel, "body": "See you <3"}

    def test_voice_channel_is_refused(self):
        """No reply content exists for a channel Gladly cannot reply on."""
        with pytest.raises(ValueError, match="PHONE_CALL"):
            reply_content(_reply("PHONE_CALL", "hello"))

    @pytest.mark.parametrize(
        ("row", "text"),
        [
            (_reply("EMAIL", "a\nb"), "a\nb"),
            (_reply("EMAIL", "<p>a</p><p>b</p>", html=True), "a\n\nb"),
            (_reply("SMS", "hi"), "hi"),
        ],
    )
    def test_reply_text_is_what_the_item_shows(self, row, text):
        """The text a sent reply's item carries: bodyPlain for email, else the body."""
        assert reply_text(row) == text


class TestNoteBody:
    def test_note_is_sent_as_written_trimmed(self):
        """Notes keep Gladly's rich-content HTML; only surrounding whitespace goes."""
        assert note_body("  Call back <b>Monday</b>\n") == "Call back <b>Monday</b>"


class TestEscalationPatch:
    def test_open_conversation_moves_without_agent(self):
        """The patch names the inbox only: agentId is omitted, never null."""
        patch = escalation_patch({"id": "c1", "status": "OPEN", "agentId": "a1", "inboxId": "i0"}, "esc")
        assert patch == {"assignee": {"inboxId": "esc"}}
        assert "agentId" not in patch["assignee"]

    def test_closed_conversation_is_reopened_in_the_same_patch(self):
        """A CLOSED conversation gets status OPEN in the same request."""
        patch = escalation_patch({"id": "c1", "status": "CLOSED", "inboxId": "i0"}, "esc")
        assert patch == {"assignee": {"inboxId": "esc"}, "status": {"value": "OPEN"}}

    def test_waiting_conversation_keeps_its_status(self):
        """Only CLOSED conversations are reopened."""
        assert escalation_patch({"status": "WAITING"}, "esc") == {"assignee": {"inboxId": "esc"}}


class TestNormaliseText:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("Hi Ann,<br><br>Fish &amp; chips", "Hi Ann,\n\nFish & chips"),
            ("<p>Hello</p><p>world</p>", "Hello\nworld"),
            ("<b>Fol</b>low up", "Follow up"),
            ("  spaced\t\tout  \n", "spaced out"),
            ("non&nbsp;breaking", "non breaking"),
            ("caf\u0065\u0301", "caf\u00e9"),
            ("a < b and c > d", "a < b and c > d"),
        ],
    )
    def test_equal_texts_normalise_equal(self, a, b):
        """HTML, entities, Unicode composition and whitespace do not make texts differ."""
        assert normalise_text(a) == normalise_text(b)

    def test_different_words_stay_different(self):
        """Normalising never makes different messages equal."""
        assert normalise_text("Refund approved") != normalise_text("Refund denied")

    def test_empty(self):
        """None and empty text normalise to the empty string."""
        assert normalise_text(None) == normalise_text("") == ""

    def test_html_to_text_keeps_paragraphs(self):
        """Block tags become line breaks; at most one blank line in a row."""
        assert html_to_text("<div>a</div><br><br><br><div>b</div>") == "a\n\nb"
