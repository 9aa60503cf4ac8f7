"""Read models: conversation context (Applied's read path) and the status report."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from gladly_sync.storage import read, upserts
from gladly_sync.storage.rows import agent_row, conversation_row, customer_row, inbox_row

from gladly_sync.errors import NotFound

from .conftest import T0, T1, T2


def seed(con) -> None:
    upserts.replace_inboxes(con, [inbox_row({"id": "in1", "name": "Support"}, synced_at=T0)])
    upserts.replace_agents(
        con, [agent_row({"id": "a1", "name": "Amy", "emailAddress": "amy@x"}, synced_at=T0)]
    )
    upserts.upsert_customers(
        con,
        [
            customer_row(
                {
                    "id": "c1",
                    "name": "Ann",
                    "emails": [{"original": "ann@x.com"}],
                    "phones": [{"original": "+1555"}],
                    "customAttributes": {"tier": "gold"},
                },
                synced_at=T0,
                source_at=T0,
            )
        ],
    )
    upserts.upsert_conversations(
        con,
        [
            conversation_row(
                {
                    "id": "v1",
                    "customerId": "c1",
                    "inboxId": "in1",
                    "agentId": "a1",
                    "status": "OPEN",
                    "topicIds": ["t1"],
                    "customAttributes": [{"id": "x", "value": "1"}],
                    "createdAt": "2024-04-01T00:00:00Z",
                },
                synced_at=T1,
                source_at=T1,
            )
        ],
    )
    upserts.upsert_items(
        con,
        [
            {
                "id": "i2",
                "conversationId": "v1",
                "customerId": "c1",
                "timestamp": "2024-04-01T10:05:00Z",
                "initiator": {"id": "a1", "type": "AGENT"},
                "responder": {"id": "c1", "type": "CUSTOMER"},
                "content": {"type": "EMAIL", "subject": "Re: order", "content": "On its way"},
            },
            {
                "id": "i1",
                "conversationId": "v1",
                "customerId": "c1",
                "timestamp": "2024-04-01T10:00:00Z",
                "initiator": {"id": "c1", "type": "CUSTOMER"},
                "content": {"type": "EMAIL", "subject": "Order", "content": "Where is it?"},
            },
            {
                "id": "i3",
                "conversationId": "v1",
                "customerId": "c1",
                "timestamp": "2024-04-01T10:06:00Z",
                "initiator": {"id": "c1", "type": "CUSTOMER"},
                "content": {"type": "SMS", "content": "my card is 4111"},
            },
        ],
        source_at=T1,
        synced_at=T1,
    )
    redacted = {
        "id": "i3",
        "conversationId": "v1",
        "customerId": "c1",
        "timestamp": "2024-04-01T10:06:00Z",
        "initiator": {"id": "c1", "type": "CUSTOMER"},
        "content": {"type": "SMS", "content": ""},
    }
    upserts.upsert_items(con, [redacted], source_at=T1, synced_at=T1)  # listed again, emptied


class TestConversationContext:
    def test_context_as_json(self, con):
        """The conversation, its customer and its items in time order (the outbox actions come from
        the outbox database: tests/storage/test_store.py)."""
        seed(con)
        context = read.conversation_context(con, "v1")
        assert context == {
            "conversation": {
                "id": "v1",
                "status": "OPEN",
                "customer_id": "c1",
                "inbox_id": "in1",
                "inbox_name": "Support",
                "agent_id": "a1",
                "agent_name": "Amy",
                "topic_ids": ["t1"],
                "custom_attributes": [{"id": "x", "value": "1"}],
                "created_at": "2024-04-01T00:00:00Z",
                "closed_at": None,
                "deleted_at": None,
                "synced_at": "2024-05-02T12:00:00Z",
            },
            "customer": {"id": "c1", "name": "Ann", "primary_email": "ann@x.com", "primary_phone": "+1555"},
            "items": [
                {
                    "id": "i1",
                    "timestamp": "2024-04-01T10:00:00Z",
                    "content_type": "EMAIL",
                    "text": "Order\n\nWhere is it?",
                    "redacted": False,
                    "initiator": {"type": "CUSTOMER", "id": "c1"},
                    "responder": None,
                },
                {
                    "id": "i2",
                    "timestamp": "2024-04-01T10:05:00Z",
                    "content_type": "EMAIL",
                    "text": "Re: order\n\nOn its way",
                    "redacted": False,
                    "initiator": {"type": "AGENT", "id": "a1"},
                    "responder": {"type": "CUSTOMER", "id": "c1"},
                },
                {
                    "id": "i3",
                    "timestamp": "2024-04-01T10:06:00Z",
                    "content_type": "SMS",
                    "text": None,
                    "redacted": True,
                    "initiator": {"type": "CUSTOMER", "id": "c1"},
                    "responder": None,
                },
            ],
            "outbox": [],  # the caller adds them from the outbox database
        }
        assert json.loads(json.dumps(context)) == context

    def test_deleted_items_are_left_out(self, con):
        """Items marked deleted are not part of the context."""
        seed(con)
        upserts.upsert_items(con, [], source_at=T2, synced_at=T2, complete_conversation_id="v1")
        assert read.conversation_context(con, "v1")["items"] == []

    def test_unknown_conversation(self, con):
        """An unknown conversation raises NotFound naming it."""
        with pytest.raises(NotFound, match="nope"):
            read.conversation_context(con, "nope")

    def test_timeline_view(self, con):
        """conversation_timeline joins items with conversation, customer, inbox, agent names; time order."""
        seed(con)
        rows = con.execute(
            "SELECT item_id, agent_name, customer_name, inbox_name, status, text FROM conversation_timeline"
        ).fetchall()
        assert rows == [
            ("i1", None, "Ann", "Support", "OPEN", "Order\n\nWhere is it?"),
            ("i2", "Amy", "Ann", "Support", "OPEN", "Re: order\n\nOn its way"),
            ("i3", None, "Ann", "Support", "OPEN", None),
        ]
        assert con.execute(
            "SELECT conversation_id, agent_name, last_item_at FROM open_conversations"
        ).fetchall() == [
            ("v1", "Amy", con.execute("SELECT max(timestamp) FROM conversation_items").fetchone()[0])
        ]


class TestStatusReport:
    def test_report(self, con):
        """Cursors with age, last run per job, counts, outbox by status, coverage and gaps, as JSON."""
        seed(con)
        upserts.save_cursor(con, "events", "2024-05-03T11:00:00Z", T2 - timedelta(minutes=30))
        missed = [["2024-05-01T12:00:02+00:00", "2024-05-03T12:00:00+00:00"]]
        upserts.save_cursor(con, read.GAPS_STREAM, json.dumps(missed), T2)
        for run_id, job, start, status in [
            ("r1", "sync", T0, "ok"),
            ("r2", "sync", T0 + timedelta(hours=1), "failed"),
            ("r3", "drain", T1, "ok"),
        ]:
            upserts.start_run(con, run_id, job, start, 1)
            upserts.finish_run(
                con,
                run_id,
                status=status,
                finished_at=start + timedelta(seconds=2),
                requests=3,
                rate_limited=0,
                rows={"events": 1},
                error=None if status == "ok" else "boom",
            )
        upserts.record_export_job(
            con,
            {
                "id": "j1",
                "updatedAt": "2024-05-02T01:00:00Z",
                "parameters": {"startAt": "2024-04-30T00:00:00Z", "endAt": "2024-05-01T00:00:00Z"},
            },
            3,
            1,
            T1,
        )
        report = read.status_report(con, T2, {"failed": 1, "pending": 1, "sent": 1, "sending": 0})
        assert json.loads(json.dumps(report)) == report
        assert report["cursors"] == {
            "events": {
                "cursor": "2024-05-03T11:00:00Z",
                "updated_at": "2024-05-03T11:30:00Z",
                "age_seconds": 1800.0,
            }
        }
        assert {job: run["run_id"] for job, run in report["last_runs"].items()} == {
            "drain": "r3",
            "sync": "r2",
        }
        assert report["last_runs"]["sync"]["error"] == "boom"
        assert report["rows"]["conversation_items"] == 3 and report["rows"]["customers"] == 1
        assert report["outbox"] == {"failed": 1, "pending": 1, "sent": 1}
        assert report["rows"]["outbox"] == 3
        assert report["earliest_item_at"] == "2024-04-01T10:00:00Z"
        assert report["export_jobs"] == {
            "processed": 1,
            "start_at": "2024-04-30T00:00:00Z",
            "end_at": "2024-05-01T00:00:00Z",
            "last_processed_at": "2024-05-02T12:00:00Z",
        }
        assert report["gaps"] == [
            {"start": "2024-05-01T12:00:02Z", "end": "2024-05-03T12:00:00Z", "hours": 48.0}
        ]

    def test_cursor_age_counts_from_its_last_advance(self, con):
        """A cursor advanced a moment ago is young, however far its value trails (by design)."""
        upserts.save_cursor(con, "events", "2024-05-03T09:00:00Z", T2 - timedelta(seconds=5))
        assert read.status_report(con, T2)["cursors"]["events"]["age_seconds"] == 5.0

    def test_gaps_are_what_the_events_poll_missed(self, con):
        """Gaps come from what the events pass recorded as missed, not from the time between runs."""
        polls = [T0, T0 + timedelta(hours=30), T0 + timedelta(hours=80)]
        for n, start in enumerate(polls):
            upserts.start_run(con, f"r{n}", "sync", start, 1)
            upserts.finish_run(
                con, f"r{n}", status="ok", finished_at=start, requests=1, rate_limited=0, rows={}, error=None
            )
        assert read.known_gaps(con) == []
        missed = [["2024-05-01T12:00:00+00:00", "2024-05-02T18:00:00+00:00"]]
        upserts.save_cursor(con, read.GAPS_STREAM, json.dumps(missed), T1)
        assert read.known_gaps(con) == [
            {"start": "2024-05-01T12:00:00Z", "end": "2024-05-02T18:00:00Z", "hours": 30.0}
        ]
        assert "gaps" not in read.status_report(con, T2)["cursors"]

    def test_empty_store(self, con):
        """A fresh store reports zeros and nothing else."""
        report = read.status_report(con, T0)
        assert (report["cursors"], report["last_runs"], report["outbox"], report["gaps"]) == ({}, {}, {}, [])
        assert report["earliest_item_at"] is None and set(report["rows"].values()) == {0}
