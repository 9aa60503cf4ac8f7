"""Gladly JSON → row dicts: pure transforms checked with literal objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest
from gladly_sync.storage.rows import (
    agent_row,
    conversation_row,
    customer_row,
    event_row,
    export_customer_row,
    inbox_row,
    items_select_sql,
    parse_timestamp,
    topic_row,
    transform_items,
)

from .conftest import T0, T1

PROFILE = {
    "id": "OOrlNMXeS72gs_WEX2TtMg",
    "name": "Martha J Williams",
    "address": "563 Rigoberto Station Apt. 197",
    "emails": [
        {
            "original": "Martha.Williams@gmail.com",
            "normalized": "martha.williams@gmail.com",
            "primary": False,
        },
        {"original": "mjw@work.com", "normalized": "mjw@work.com", "primary": True},
    ],
    "phones": [{"original": "7244895501", "normalized": "+17244895501", "primary": False, "type": "MOBILE"}],
    "externalCustomerId": "a21c",
    "externalCustomerIds": {"ABC12345": "54321"},
    "customAttributes": {"membershipTier": "gold"},
    "createdAt": "2019-02-21T07:15:18.07272933Z",
    "updatedAt": "2019-02-21T19:50:23.486566336Z",
}


class TestParseTimestamp:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2016-04-11T14:09:23Z", datetime(2016, 4, 11, 14, 9, 23, tzinfo=UTC)),
            ("2019-07-03T04:30:12.07Z", datetime(2019, 7, 3, 4, 30, 12, 70000, tzinfo=UTC)),
            ("2016-04-11T14:09:23.000Z", datetime(2016, 4, 11, 14, 9, 23, tzinfo=UTC)),
            ("2019-02-21T07:15:18.07272933Z", datetime(2019, 2, 21, 7, 15, 18, 72729, tzinfo=UTC)),
            ("2019-02-21T19:50:23.486566336Z", datetime(2019, 2, 21, 19, 50, 23, 486566, tzinfo=UTC)),
            ("2020-04-13T19:27:34-09:00", datetime(2020, 4, 14, 4, 27, 34, tzinfo=UTC)),
            ("2020-04-13T19:27:34.5+0200", datetime(2020, 4, 13, 17, 27, 34, 500000, tzinfo=UTC)),
            ("2020-04-13T19:27:34", datetime(2020, 4, 13, 19, 27, 34, tzinfo=UTC)),
        ],
    )
    def test_rfc3339_with_any_fraction_is_aware_utc(self, text, expected):
        """0–9 fractional digits and any offset parse to an aware UTC datetime."""
        parsed = parse_timestamp(text)
        assert parsed == expected
        assert parsed.utcoffset().total_seconds() == 0

    @pytest.mark.parametrize("text", [None, ""])
    def test_missing_is_none(self, text):
        """No timestamp gives None."""
        assert parse_timestamp(text) is None

    @pytest.mark.parametrize("text", ["yesterday", "2020-13-45", "1700000000"])
    def test_garbage_raises(self, text):
        """A string that is not a timestamp raises ValueError."""
        with pytest.raises(ValueError):
            parse_timestamp(text)


class TestCustomerRow:
    def test_api_profile(self):
        """The primary entry's original becomes primary_email; the API objects and raw are kept as sent."""
        row = customer_row(PROFILE, synced_at=T1, source_at=T0)
        assert row == {
            "id": "OOrlNMXeS72gs_WEX2TtMg",
            "name": "Martha J Williams",
            "primary_email": "mjw@work.com",
            "primary_phone": "7244895501",
            "emails": PROFILE["emails"],
            "phones": PROFILE["phones"],
            "external_customer_id": "a21c",
            "custom_attributes": {"membershipTier": "gold"},
            "created_at": datetime(2019, 2, 21, 7, 15, 18, 72729, tzinfo=UTC),
            "updated_at": datetime(2019, 2, 21, 19, 50, 23, 486566, tzinfo=UTC),
            "merged_into": None,
            "deleted_at": None,
            "raw": PROFILE,
            "synced_at": T1,
            "source_at": T0,
        }
        assert row["raw"] is PROFILE

    def test_no_contacts_and_bad_times(self):
        """No emails or phones gives NULL primaries; an unparseable time is NULL (raw keeps it)."""
        profile = {"id": "c1", "createdAt": "garbage"}
        row = customer_row(profile, synced_at=T1, source_at=T0)
        assert (row["primary_email"], row["primary_phone"], row["emails"], row["created_at"]) == (
            None,
            None,
            None,
            None,
        )


class TestExportCustomerRow:
    def test_flat_strings_become_objects(self):
        """Export strings become {"original": s}; the first is primary; raw is the export line."""
        obj = {
            "id": "c1",
            "name": "Ann",
            "address": "1 Main St",
            "emailAddresses": ["ann@x.com", "ann@y.com"],
            "phoneNumbers": ["+14155550100"],
            "externalCustomerIds": {"shop": "9"},
        }
        assert export_customer_row(obj, synced_at=T1, source_at=T0) == {
            "id": "c1",
            "name": "Ann",
            "primary_email": "ann@x.com",
            "primary_phone": "+14155550100",
            "emails": [{"original": "ann@x.com"}, {"original": "ann@y.com"}],
            "phones": [{"original": "+14155550100"}],
            "external_customer_id": None,
            "raw": obj,
            "synced_at": T1,
            "source_at": T0,
        }

    def test_carries_no_fields_the_export_lacks(self):
        """customAttributes, createdAt and updatedAt are absent, so they can never be overwritten."""
        row = export_customer_row({"id": "c1"}, synced_at=T1, source_at=T0)
        assert not {"custom_attributes", "created_at", "updated_at", "merged_into", "deleted_at"} & set(row)


class TestConversationRow:
    def test_api_conversation(self):
        """Typed fields from the conversation; raw is the object as sent."""
        conv = {
            "id": "HXRqKC5GSV-jAlq0-sxYTA",
            "customerId": "o2sg",
            "agentId": "sHuX",
            "inboxId": "E1nA",
            "status": "CLOSED",
            "topicIds": ["_DZT"],
            "customAttributes": [{"id": "UCeB", "value": "1234556777"}],
            "createdAt": "2016-01-02T00:10:00Z",
            "closedAt": "2016-01-03T08:10:00Z",
        }
        assert conversation_row(conv, synced_at=T1, source_at=T0) == {
            "id": "HXRqKC5GSV-jAlq0-sxYTA",
            "customer_id": "o2sg",
            "inbox_id": "E1nA",
            "agent_id": "sHuX",
            "status": "CLOSED",
            "topic_ids": ["_DZT"],
            "custom_attributes": [{"id": "UCeB", "value": "1234556777"}],
            "created_at": datetime(2016, 1, 2, 0, 10, tzinfo=UTC),
            "closed_at": datetime(2016, 1, 3, 8, 10, tzinfo=UTC),
            "deleted_at": None,
            "raw": conv,
            "synced_at": T1,
            "source_at": T0,
        }


class TestReferenceRows:
    def test_inbox_agent_topic(self):
        """Reference objects keep their fields and raw."""
        inbox = {"id": "i1", "name": "Email Inbox", "disabled": False}
        agent = {"id": "a1", "name": "Amy Agent", "emailAddress": "amy@company.com"}
        topic = {"id": "t1", "name": "Damaged", "disabled": True, "parentId": "t0"}
        assert inbox_row(inbox, synced_at=T0) == {
            "id": "i1",
            "name": "Email Inbox",
            "disabled": False,
            "raw": inbox,
            "synced_at": T0,
        }
        assert agent_row(agent, synced_at=T0) == {
            "id": "a1",
            "name": "Amy Agent",
            "email_address": "amy@company.com",
            "raw": agent,
            "synced_at": T0,
        }
        assert topic_row(topic, synced_at=T0) == {
            "id": "t1",
            "name": "Damaged",
            "disabled": True,
            "parent_id": "t0",
            "raw": topic,
            "synced_at": T0,
        }


class TestEventRow:
    @pytest.mark.parametrize(
        ("event", "conversation_id", "customer_id"),
        [
            (
                {
                    "id": "e1",
                    "type": "CONTACT/MESSAGE_RECEIVED",
                    "timestamp": "2019-07-03T04:30:12.07Z",
                    "content": {"conversationId": "v1", "customerId": "c1", "messageId": "m1"},
                },
                "v1",
                "c1",
            ),
            (
                {
                    "id": "e1",
                    "type": "CUSTOMER/MERGED",
                    "timestamp": "2019-07-03T04:30:12.07Z",
                    "content": {
                        "sourceCustomerId": "old",
                        "destinationCustomerId": "new",
                        "sourceConversationId": "v-old",
                        "destinationConversationId": "v-new",
                    },
                },
                "v-new",
                "new",
            ),
            (
                {
                    "id": "e1",
                    "type": "CUSTOMER_PROFILE/DELETED",
                    "timestamp": "2019-07-03T04:30:12.07Z",
                    "content": {"customerId": "c1"},
                },
                None,
                "c1",
            ),
        ],
    )
    def test_ids_from_content(self, event, conversation_id, customer_id):
        """Ids come from content; CUSTOMER/MERGED points at the destination."""
        assert event_row(event) == {
            "id": "e1",
            "type": event["type"],
            "timestamp": datetime(2019, 7, 3, 4, 30, 12, 70000, tzinfo=UTC),
            "conversation_id": conversation_id,
            "customer_id": customer_id,
            "raw": event,
        }


def _item(content: dict, **envelope) -> dict:
    return {
        "id": "i1",
        "conversationId": "v1",
        "customerId": "c1",
        "timestamp": "2019-07-02T08:05:00.10Z",
        "initiator": {"id": "c1", "type": "CUSTOMER"},
        **envelope,
        "content": content,
    }


class TestItemTransform:
    """The one SQL transform both the API and the export path use."""

    @pytest.mark.parametrize(
        ("content", "text"),
        [
            ({"type": "CHAT_MESSAGE", "messageType": "TEXT", "content": "Hi!"}, "Hi!"),
            ({"type": "CHAT_MESSAGE", "sessionId": "s9", "content": "no messageType"}, "no messageType"),
            ({"type": "SMS", "from": "+1", "to": "+2", "content": "sms text"}, "sms text"),
            ({"type": "WHATSAPP", "content": "wa"}, "wa"),
            ({"type": "INSTAGRAM_DIRECT", "content": "ig"}, "ig"),
            ({"type": "TWITTER", "content": "tw"}, "tw"),
            ({"type": "FACEBOOK_MESSAGE", "pageId": "p", "userId": "u", "content": "fb"}, "fb"),
            (
                {
                    "type": "EMAIL",
                    "from": "a@x",
                    "to": ["b@x"],
                    "subject": "Upgrade",
                    "content": "Body\nline",
                },
                "Upgrade\n\nBody\nline",
            ),
            ({"type": "EMAIL", "subject": "", "content": "body only"}, "body only"),
            ({"type": "EMAIL", "subject": "subject only"}, "subject only"),
            (
                {
                    "type": "CONVERSATION_NOTE",
                    "body": "<p>Call <b>Monday</b> &amp; Tue</p><p>a&lt;b&gt;c</p>",
                },
                "Call Monday & Tue\na<b>c",
            ),
            (
                {
                    "type": "CONVERSATION_NOTE",
                    "body": "one<br>two<br/>three<BR />&quot;q&quot; &#39;s&#39;&nbsp;x",
                },
                "one\ntwo\nthree\n\"q\" 's' x",
            ),
            ({"type": "CONVERSATION_NOTE", "body": "plain note"}, "plain note"),
            (
                {"type": "VOICE_AI_MESSAGE", "body": "Thanks for calling.", "status": "PLAYED"},
                "Thanks for calling.",
            ),
            (
                {
                    "type": "CUSTOMER_ACTIVITY",
                    "title": "Order shipped",
                    "body": "Tracking 123",
                    "activityType": "EMAIL",
                },
                "Order shipped\n\nTracking 123",
            ),
            (
                {
                    "type": "PHONE_CALL",
                    "recordingStatus": "AVAILABLE",
                    "recordingUrl": "/r",
                    "recordingDuration": "100",
                    "recordingSummary": {
                        "status": "COMPLETED",
                        "summary": "Asked about refund",
                        "language": "en",
                    },
                },
                "Asked about refund",
            ),
            ({"type": "PHONE_CALL", "recordingStatus": "AVAILABLE", "recordingDuration": 11}, None),
            (
                {
                    "type": "VOICEMAIL",
                    "recordingStatus": "AVAILABLE",
                    "recordingUrl": "/r",
                    "recordingDuration": 13,
                },
                None,
            ),
            ({"type": "CONVERSATION_STATUS_CHANGE", "status": "CLOSED"}, None),
            ({"type": "TOPIC_CHANGE", "addedTopicIds": ["t1"]}, None),
            ({"type": "CUSTOM_CHANNEL_MESSAGE", "content": {"nested": True}}, None),
            ({"type": "SOMETHING_NEW", "content": "unknown types keep no text"}, None),
        ],
    )
    def test_text_per_content_type(self, content, text):
        """Each content type yields its readable text; unknown types are stored with text NULL."""
        item = _item(content)
        [row] = transform_items([item])
        assert row == {
            "id": "i1",
            "conversation_id": "v1",
            "customer_id": "c1",
            "session_id": content.get("sessionId"),
            "timestamp": datetime(2019, 7, 2, 8, 5, 0, 100000, tzinfo=UTC),
            "content_type": content["type"],
            "initiator_type": "CUSTOMER",
            "initiator_id": "c1",
            "responder_type": None,
            "responder_id": None,
            "text": text,
            "content": content,
            "redacted": False,
            "raw": item,
        }

    def test_envelope_fields(self):
        """sessionId, responder and a 9-digit timestamp come from the envelope."""
        item = _item(
            {"type": "VOICE_AI_MESSAGE", "body": "hi"},
            sessionId="s1",
            timestamp="2019-02-21T07:15:18.07272933Z",
            responder={"id": "a1", "type": "AGENT"},
        )
        [row] = transform_items([item])
        assert (row["session_id"], row["timestamp"], row["responder_type"], row["responder_id"]) == (
            "s1",
            datetime(2019, 2, 21, 7, 15, 18, 72729, tzinfo=UTC),
            "AGENT",
            "a1",
        )

    def test_quirks_are_stored(self):
        """Gladly's own example quirks still give a row: broken initiator keys, string durations,
        a missing conversationId, an unparseable timestamp."""
        broken = {
            "id": "zwo9",
            "customerId": "o2sg",
            "timestamp": "not a time",
            "initiator": {'id"': "zGaH", 'type"': "AGENT"},
            "content": {"type": "PHONE_CALL", "recordingDuration": "100", "recordingStatus": "AVAILABLE"},
        }
        [row] = transform_items([broken])
        assert {
            k: row[k] for k in ("id", "conversation_id", "timestamp", "initiator_type", "initiator_id")
        } == {
            "id": "zwo9",
            "conversation_id": None,
            "timestamp": None,
            "initiator_type": None,
            "initiator_id": None,
        }
        assert row["raw"] == broken

    def test_raw_keeps_every_key_and_value(self):
        """raw is the item exactly as sent: unknown keys, unicode and key order survive."""
        item = {
            "zeta": 1,
            "id": "i1",
            "content": {"type": "CHAT_MESSAGE", "content": "héllo ✓"},
            "extra": [1, None],
        }
        [row] = transform_items([item])
        assert row["raw"] == item
        assert list(row["raw"]) == ["zeta", "id", "content", "extra"]

    @pytest.mark.parametrize(
        ("content", "redacted"),
        [
            ({"type": "PHONE_CALL", "recordingStatus": "DELETED"}, True),
            ({"type": "VOICEMAIL", "recordingStatus": "DELETED", "recordingUrl": ""}, True),
            ({"type": "VOICEMAIL", "recordingStatus": "DELETED", "recordingUrl": "/r"}, False),
            ({"type": "PHONE_CALL", "recordingStatus": "ERROR"}, False),
            ({"type": "CHAT_MESSAGE", "content": ""}, False),
            ({"type": "CHAT_MESSAGE"}, False),
            ({"type": "SMS", "content": ""}, False),
            ({"type": "WHATSAPP", "content": "", "attachments": []}, False),
            ({"type": "EMAIL", "subject": "", "content": ""}, False),
            ({"type": "CONVERSATION_NOTE", "body": ""}, False),
            ({"type": "CONVERSATION_STATUS_CHANGE", "status": "OPEN"}, False),
            ({"type": "SOMETHING_NEW"}, False),
        ],
    )
    def test_only_gladlys_own_signal_makes_an_item_redacted(self, content, redacted):
        """A deleted recording is redacted; an item with empty content is not, by itself (the writer
        marks it redacted when a stored body comes back emptied)."""
        [row] = transform_items([_item(content)])
        assert row["redacted"] is redacted
        if redacted:
            assert row["text"] is None

    @pytest.mark.parametrize(
        ("content", "emptied"),
        [
            ({"type": "CHAT_MESSAGE", "content": ""}, True),
            ({"type": "CHAT_MESSAGE"}, True),
            ({"type": "CHAT_MESSAGE", "content": "", "attachments": [{"id": "a"}]}, False),
            ({"type": "CHAT_MESSAGE", "content": "", "messageData": {"selection": "1"}}, False),
            ({"type": "SMS", "content": ""}, True),
            ({"type": "WHATSAPP", "content": "", "attachments": []}, True),
            ({"type": "TWITTER", "content": ""}, True),
            ({"type": "FACEBOOK_MESSAGE", "content": ""}, True),
            ({"type": "INSTAGRAM_DIRECT"}, True),
            ({"type": "EMAIL", "subject": "", "content": ""}, True),
            ({"type": "EMAIL", "subject": "kept", "content": ""}, False),
            ({"type": "EMAIL", "content": "", "attachments": [{"id": "a"}]}, False),
            ({"type": "PHONE_CALL", "recordingStatus": "DELETED"}, False),
            ({"type": "CONVERSATION_NOTE", "body": ""}, False),
            ({"type": "SOMETHING_NEW"}, False),
        ],
    )
    def test_a_message_without_text_or_attachments_is_emptied(self, content, emptied):
        """The SQL marks a message with no text and no attachments as emptied (a redaction candidate)."""
        con = duckdb.connect()
        try:
            con.execute(
                "CREATE TEMP TABLE src AS SELECT ? AS raw, 0::BIGINT AS ord", [json.dumps(_item(content))]
            )
            [(found,)] = con.execute(f"SELECT emptied FROM ({items_select_sql('src')})").fetchall()
        finally:
            con.close()
        assert found is emptied

    def test_order_and_duplicates_are_kept(self):
        """transform_items maps item for item, in order (de-duplication is the writer's job)."""
        items = [_item({"type": "SMS", "content": str(n)}, id=f"i{n % 2}") for n in range(3)]
        assert [(r["id"], r["text"]) for r in transform_items(items)] == [
            ("i0", "0"),
            ("i1", "1"),
            ("i0", "2"),
        ]
