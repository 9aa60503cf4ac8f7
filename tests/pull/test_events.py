"""The pure part of the pull: which events make which conversations and customers dirty."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gladly_sync.sync.pull.changes import Merge, collect_changes, event_conversation_ids, event_inbox_hint
from gladly_sync.sync.pull.coverage import add_gap, subtract_windows
from gladly_sync.sync.pull.resolve import Scope


def event(event_id: str, kind: str, at: str = "2024-05-01T12:00:00Z", **content) -> dict:
    return {"id": event_id, "type": kind, "timestamp": at, "initiator": {"type": "AGENT"}, "content": content}


ASSIGNED_I = {"assignee": {"inboxId": "i"}}


def t(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, 1, hour, minute, tzinfo=UTC)


class TestDirtySets:
    def test_conversation_events_make_their_conversation_dirty_once(self):
        """Every conversation id an event names is dirty, in first-seen order, without repeats."""
        changes = collect_changes(
            [
                event("e1", "CONTACT/MESSAGE_RECEIVED", conversationId="c1", customerId="u1"),
                event("e2", "CONVERSATION/NOTE_CREATED", conversationId="c2", customerId="u2"),
                event("e3", "CONVERSATION/CLOSED", conversationId="c1", customerId="u1"),
            ],
            known_ids=[],
        )
        assert changes.conversations == ["c1", "c2"]
        assert [e["id"] for e in changes.events] == ["e1", "e2", "e3"]
        assert changes.profiles == [] and changes.merges == [] and changes.deleted_profiles == []

    def test_known_event_ids_make_nothing_dirty(self):
        """An event id already stored or remembered as skipped does not make anything dirty again."""
        changes = collect_changes(
            [
                event("e1", "CONTACT/MESSAGE_RECEIVED", conversationId="c1"),
                event("e2", "CUSTOMER_PROFILE/UPDATED", customerId="u1"),
                event("e3", "CONVERSATION/CLOSED", conversationId="c2"),
            ],
            known_ids={"e1", "e2"},
        )
        assert changes.conversations == ["c2"]
        assert changes.profiles == []
        assert [e["id"] for e in changes.events] == ["e3"]

    def test_an_event_repeated_in_one_poll_counts_once(self):
        """The overlap can deliver the same event twice; the second copy is ignored."""
        first = event("e1", "CONTACT/MESSAGE_RECEIVED", conversationId="c1")
        changes = collect_changes([first, dict(first)], known_ids=())
        assert [e["id"] for e in changes.events] == ["e1"]

    def test_profile_events_name_customers_and_deletion_wins(self):
        """CREATED/UPDATED make a customer dirty; DELETED makes it an erasure and never a fetch."""
        changes = collect_changes(
            [
                event("e1", "CUSTOMER_PROFILE/UPDATED", customerId="u1"),
                event("e2", "CUSTOMER_PROFILE/CREATED", customerId="u2"),
                event("e3", "CUSTOMER_PROFILE/UPDATED", customerId="u3"),
                event("e4", "CUSTOMER_PROFILE/DELETED", customerId="u3"),
                event("e5", "CUSTOMER_PROFILE/UPDATED", customerId="u1"),
            ],
            known_ids=(),
        )
        assert changes.profiles == ["u1", "u2"]
        assert changes.deleted_profiles == ["u3"]
        assert changes.conversations == []

    def test_a_merge_names_both_customers_and_both_conversations(self):
        """CUSTOMER/MERGED is a merge source → destination and dirties both conversation ids."""
        merged = event(
            "e1",
            "CUSTOMER/MERGED",
            at="2024-05-01T12:00:00.5Z",
            sourceCustomerId="old",
            destinationCustomerId="new",
            sourceConversationId="c-old",
            destinationConversationId="c-new",
        )
        changes = collect_changes([merged], known_ids=())
        at = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
        assert changes.merges == [Merge("old", "new", at, "e1")]
        assert changes.conversations == ["c-old", "c-new"]
        assert changes.customer_ids() == ["old", "new"]

    def test_a_merge_without_conversations_still_merges(self):
        """The conversation ids of a merge are optional in practice; the customers still merge."""
        changes = collect_changes(
            [event("e1", "CUSTOMER/MERGED", sourceCustomerId="a", destinationCustomerId="b")], known_ids=()
        )
        assert [(m.source_customer_id, m.destination_customer_id) for m in changes.merges] == [("a", "b")]
        assert changes.conversations == []

    def test_events_without_content_are_tolerated(self):
        """Unknown event types and missing content make nothing dirty but are still new events."""
        changes = collect_changes(
            [{"id": "e1", "type": "SOMETHING/NEW", "timestamp": "2024-05-01T12:00:00Z"}], known_ids=()
        )
        assert changes.conversations == [] and [e["id"] for e in changes.events] == ["e1"]


class TestInboxHints:
    @pytest.mark.parametrize(
        ("ev", "hint"),
        [
            (event("e", "CONTACT/MESSAGE_RECEIVED", conversationId="c", context=ASSIGNED_I), "i"),
            (
                event(
                    "e",
                    "CONVERSATION_ASSIGNEE/UPDATED",
                    conversationId="c",
                    assignee={"inboxId": "new"},
                    context={"assignee": {"inboxId": "old"}},
                ),
                "new",
            ),
            (
                event("e", "CONVERSATION_ASSIGNEE/UPDATED", conversationId="c", context=ASSIGNED_I),
                None,
            ),
            (event("e", "CONVERSATION/NOTE_CREATED", conversationId="c"), None),
        ],
    )
    def test_hint_of_one_event(self, ev, hint):
        """An assignee update's hint is its new assignee; other events' is their context's assignee."""
        assert event_inbox_hint(ev) == hint

    def test_newest_hint_wins_even_from_a_known_event(self):
        """The hint comes from the newest event carrying one, whether or not its id is known."""
        changes = collect_changes(
            [
                event(
                    "e1",
                    "CONTACT/MESSAGE_RECEIVED",
                    at="2024-05-01T12:00:00Z",
                    conversationId="c",
                    context={"assignee": {"inboxId": "i1"}},
                ),
                event(
                    "e3",
                    "CONVERSATION_ASSIGNEE/UPDATED",
                    at="2024-05-01T12:00:02Z",
                    conversationId="c",
                    assignee={"inboxId": "i3"},
                    context={"assignee": {"inboxId": "i1"}},
                ),
                # A late event: listed after, but older than e3.
                event(
                    "e2",
                    "CONTACT/MESSAGE_SENT",
                    at="2024-05-01T12:00:01Z",
                    conversationId="c",
                    context={"assignee": {"inboxId": "i1"}},
                ),
                event("e4", "CONVERSATION/NOTE_CREATED", at="2024-05-01T12:00:03Z", conversationId="c"),
            ],
            known_ids={"e3"},
        )
        assert changes.inbox_hints == {"c": "i3"}
        assert changes.conversations == ["c"]


class TestScope:
    @pytest.mark.parametrize(
        ("ingest", "inbox", "stored", "admitted"),
        [
            ((), "any", False, True),
            (("a",), "a", False, True),
            (("a",), "b", True, False),
            (("a",), "esc", True, True),
            (("a",), "esc", False, False),
            (("a",), None, True, False),
        ],
    )
    def test_admits(self, ingest, inbox, stored, admitted):
        """Listed inboxes are in scope; the escalation inbox only for conversations already stored."""
        assert Scope(frozenset(ingest), "esc").admits(inbox, stored=stored) is admitted

    def test_merge_conversation_ids(self):
        assert event_conversation_ids(
            event("e", "CUSTOMER/MERGED", sourceConversationId="x", destinationConversationId="x")
        ) == ["x"]


class TestGaps:
    def test_windows_cut_gaps(self):
        """An export job's window removes the part of a gap it covers."""
        left = subtract_windows([(t(0), t(10))], [(t(2), t(4)), (t(8), t(12))])
        assert left == [(t(0), t(2)), (t(4), t(8))]

    def test_a_covering_window_removes_the_gap(self):
        assert subtract_windows([(t(1), t(2))], [(t(0), t(3))]) == []

    def test_gaps_join_when_they_overlap(self):
        assert add_gap([(t(0), t(2))], t(1), t(5)) == [(t(0), t(5))]
        assert add_gap([(t(0), t(1))], t(3), t(5)) == [(t(0), t(1)), (t(3), t(5))]
