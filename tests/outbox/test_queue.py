"""The outbox queue: what enqueue accepts and refuses, queue order, and the row's state machine."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from gladly_sync.errors import EnqueueRejected, NotFound, UsageError
from tests.outbox import T0, Queue, add_conversation, add_item, open_db, open_outbox


@pytest.fixture
def db(tmp_path):
    db = open_db(tmp_path)
    with db.transaction() as con:
        add_conversation(con, "conv-email")
        add_item(con, "in-1", "conv-email", content_type="EMAIL", at=T0)
        add_conversation(con, "conv-chat")
        add_item(con, "chat-1", "conv-chat", content_type="CHAT_MESSAGE", at=T0)
        add_conversation(con, "conv-quiet")  # no items at all
    return db


@pytest.fixture
def con(tmp_path, db):
    """The queue, driven through the real enqueue path (see tests.outbox.Queue)."""
    return Queue(db, open_outbox(tmp_path, db))


def _statuses(con):
    return [(row["id"], row["status"]) for row in con.list_actions()]


class TestEnqueueReply:
    def test_reply_targets_newest_customer_message(self, con):
        """The target is the newest customer message; its item id and channel are fixed at enqueue."""
        con.add_item("in-2", "conv-email", content_type="EMAIL", at=T0 + timedelta(minutes=5))
        con.add_item("agent-1", "conv-email", initiator_type="AGENT", at=T0 + timedelta(minutes=9))
        result = con.enqueue_reply("conv-email", "Thanks!", now=T0)
        assert result.deduplicated is False
        row = result.row
        assert (row["kind"], row["reply_to_item_id"], row["channel"]) == ("reply", "in-2", "EMAIL")
        assert (row["status"], row["attempts"], row["body"], row["body_is_html"]) == (
            "pending",
            0,
            "Thanks!",
            False,
        )
        assert row["created_at"] == T0
        assert con.get_action(row["id"]) == row

    def test_voice_items_are_skipped(self, con):
        """A newer phone call or voicemail is not a reply target; the newest text message is."""
        con.add_item("call-1", "conv-chat", content_type="PHONE_CALL", at=T0 + timedelta(minutes=1))
        con.add_item("vm-1", "conv-chat", content_type="VOICEMAIL", at=T0 + timedelta(minutes=2))
        row = con.enqueue_reply("conv-chat", "Hello", now=T0).row
        assert (row["reply_to_item_id"], row["channel"]) == ("chat-1", "CHAT_MESSAGE")

    def test_deleted_items_are_skipped(self, con):
        """A deleted item is not a reply target."""
        con.add_item("in-9", "conv-email", at=T0 + timedelta(minutes=1), deleted_at=T0)
        assert con.enqueue_reply("conv-email", "Hi", now=T0).row["reply_to_item_id"] == "in-1"

    @pytest.mark.parametrize(
        "channel", ["EMAIL", "CHAT_MESSAGE", "SMS", "WHATSAPP", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT"]
    )
    def test_every_message_channel_is_replyable(self, con, channel):
        """Each replyable channel becomes the row's channel."""
        con.add_item(f"{channel}-1", "conv-quiet", content_type=channel)
        row = con.enqueue_reply("conv-quiet", "Hi", now=T0).row
        assert (row["reply_to_item_id"], row["channel"]) == (f"{channel}-1", channel)

    def test_html_flag_is_kept_for_email(self, con):
        """--html on an email reply is stored as body_is_html."""
        assert (
            con.enqueue_reply("conv-email", "<p>Hi</p>", html=True, now=T0).row["body_is_html"]
            is True
        )

    @pytest.mark.parametrize(
        ("conversation_id", "body", "kwargs", "message"),
        [
            ("nope", "Hi", {}, r"conversation 'nope' is not in the local store.*gladly-sync sync"),
            ("conv-email", "", {}, r"reply body is empty.*--body"),
            ("conv-email", "  \n\t ", {}, r"reply body is empty"),
            ("conv-chat", "x" * 2049, {}, r"2049 characters; a CHAT_MESSAGE reply may have at most 2048"),
            ("conv-email", "x" * 100_001, {}, r"100001 characters; a EMAIL reply may have at most 100000"),
            ("conv-quiet", "Hi", {}, r"conv-quiet has no customer message to reply to.*internal note"),
            ("conv-chat", "<b>Hi</b>", {"html": True}, r"--html applies to email replies only"),
        ],
    )
    def test_invalid_replies_are_refused_and_nothing_is_queued(
        self, con, conversation_id, body, kwargs, message
    ):
        """Each validation failure names the problem and what to do; the outbox stays empty."""
        with pytest.raises(EnqueueRejected, match=message):
            con.enqueue_reply(conversation_id, body, now=T0, **kwargs)
        assert con.list_actions() == []

    def test_limits_are_inclusive(self, con):
        """2048 characters fit a chat reply; 100,000 fit an email."""
        con.enqueue_reply("conv-chat", "x" * 2048, now=T0)
        con.enqueue_reply("conv-email", "x" * 100_000, now=T0)
        assert len(con.list_actions()) == 2

    def test_only_customer_voice_messages_is_refused(self, con):
        """A conversation with only voice items and agent messages has nothing to reply to."""
        con.add_item("call-1", "conv-quiet", content_type="PHONE_CALL")
        con.add_item("agent-1", "conv-quiet", content_type="EMAIL", initiator_type="AGENT")
        with pytest.raises(EnqueueRejected, match="voice items cannot be replied to"):
            con.enqueue_reply("conv-quiet", "Hi", now=T0)

    def test_deleted_conversation_is_refused(self, con):
        """A conversation Gladly deleted (merged away) takes no actions."""
        con.add_conversation("conv-gone", deleted_at=T0)
        with pytest.raises(EnqueueRejected, match="no longer exists"):
            con.enqueue_note("conv-gone", "hi", now=T0)


class TestEnqueueNote:
    def test_note_is_queued(self, con):
        """A note needs only a known conversation, even one with no items."""
        row = con.enqueue_note("conv-quiet", "Customer is VIP", now=T0).row
        assert (row["kind"], row["body"], row["channel"], row["reply_to_item_id"]) == (
            "note",
            "Customer is VIP",
            None,
            None,
        )

    @pytest.mark.parametrize(
        ("conversation_id", "body", "message"),
        [
            ("nope", "hi", "not in the local store"),
            ("conv-email", " ", "note body is empty"),
            ("conv-email", "x" * 10_001, "10001 characters; at most 10000"),
        ],
    )
    def test_invalid_notes_are_refused(self, con, conversation_id, body, message):
        """Unknown conversation, blank body and an over-long body are refused; nothing is queued."""
        with pytest.raises(EnqueueRejected, match=message):
            con.enqueue_note(conversation_id, body, now=T0)
        assert con.list_actions() == []


class TestEnqueueEscalation:
    def test_escalation_uses_configured_inbox(self, con):
        """Without --inbox the configured escalation inbox is the target; the note rides along in body."""
        row = con.enqueue_escalation( "conv-email", note="Angry customer", default_inbox="esc", now=T0
        ).row
        assert (row["kind"], row["target_inbox_id"], row["body"]) == ("escalation", "esc", "Angry customer")

    def test_given_inbox_wins(self, con):
        """--inbox overrides the configured inbox; no note is fine."""
        row = con.enqueue_escalation("conv-email", inbox_id="tier2", default_inbox="esc", now=T0).row
        assert (row["target_inbox_id"], row["body"]) == ("tier2", None)

    def test_no_inbox_is_refused(self, con):
        """No configured inbox and none given: refused with the two ways out."""
        with pytest.raises(EnqueueRejected, match=r"set inboxes.escalation in config.yaml or pass --inbox"):
            con.enqueue_escalation("conv-email", now=T0)
        assert con.list_actions() == []

    @pytest.mark.parametrize(
        ("note", "message"), [("  ", "escalation note is empty"), ("x" * 10_001, "10001")]
    )
    def test_bad_note_is_refused(self, con, note, message):
        """A given note must have text and fit the note limit."""
        with pytest.raises(EnqueueRejected, match=message):
            con.enqueue_escalation("conv-email", note=note, default_inbox="esc", now=T0)

    def test_unknown_conversation_is_refused(self, con):
        """Escalations need a known conversation too."""
        with pytest.raises(EnqueueRejected, match="gladly-sync sync"):
            con.enqueue_escalation("nope", default_inbox="esc", now=T0)


class TestDedupeKey:
    def test_same_key_same_action_returns_existing_row(self, con):
        """A second enqueue of the same action with the key returns the first row, marked
        deduplicated; one row exists."""
        first = con.enqueue_reply("conv-email", "Hi", dedupe_key="k1", now=T0)
        again = con.enqueue_reply("conv-email", "Hi", dedupe_key="k1", now=T0 + timedelta(1))
        assert again.deduplicated is True
        assert again.row == first.row
        assert len(con.list_actions()) == 1
        assert con.outbox_by_key("k1") == first.row

    def test_existing_row_is_returned_even_after_it_was_sent(self, con):
        """Deduplication returns the row in whatever state it is now."""
        first = con.enqueue_note("conv-email", "n", dedupe_key="k", now=T0).row
        con.mark_sending(first["id"], T0)
        con.mark_sent(first["id"], "item-9", T0)
        again = con.enqueue_note("conv-email", "n", dedupe_key="k", now=T0)
        assert (again.deduplicated, again.row["status"], again.row["gladly_item_id"]) == (
            True,
            "sent",
            "item-9",
        )

    @pytest.mark.parametrize(
        "enqueue",
        [
            lambda con: con.enqueue_note("conv-email", "Hi", dedupe_key="k1", now=T0),
            lambda con: con.enqueue_reply("conv-chat", "Hi", dedupe_key="k1", now=T0),
            lambda con: con.enqueue_reply("conv-email", "Hi (reworded)", dedupe_key="k1", now=T0),
        ],
        ids=["other-kind", "other-conversation", "other-body"],
    )
    def test_key_reused_for_another_action_is_refused(self, con, enqueue):
        """A key names one action: another kind, conversation or body is refused (exit 2), naming
        the row that has the key; nothing is queued."""
        first = con.enqueue_reply("conv-email", "Hi", dedupe_key="k1", now=T0).row
        with pytest.raises(EnqueueRejected, match=rf"'k1' is already used by outbox action {first['id']}"):
            enqueue(con)
        assert len(con.list_actions()) == 1

    def test_blank_key_is_refused(self, con):
        """An empty dedupe key would dedupe unrelated actions; refused."""
        with pytest.raises(EnqueueRejected, match="dedupe key is empty"):
            con.enqueue_note("conv-email", "Hi", dedupe_key=" ", now=T0)

    def test_unknown_key(self, con):
        """outbox_by_key answers None for a key nothing was queued with."""
        assert con.outbox_by_key("never") is None

    def test_racing_enqueues_leave_one_row(self, con):
        """Eight threads queueing the same new key at once: one row; every caller gets its id."""
        barrier = threading.Barrier(8)

        def enqueue(_):
            barrier.wait()
            return con.box.enqueue_note("conv-email", "n", dedupe_key="race")

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(enqueue, range(8)))
        assert len({r.row["id"] for r in results}) == 1
        assert sorted(r.deduplicated for r in results) == [False] + [True] * 7
        assert len(con.list_actions()) == 1


class TestDueActions:
    def _queue(self, con, conversation_id="conv-email", n=3):
        return [con.enqueue_note(conversation_id, f"n{i}", now=T0).row["id"] for i in range(n)]

    def test_rows_keep_queue_order(self, con):
        """seq grows with every enqueue; list_actions is in queue order."""
        ids = self._queue(con) + self._queue(con, "conv-chat", 2)
        rows = con.list_actions()
        assert [r["id"] for r in rows] == ids
        assert [r["seq"] for r in rows] == sorted({r["seq"] for r in rows})

    def test_one_head_per_conversation(self, con):
        """Only the oldest open row of each conversation is due."""
        email = self._queue(con)
        chat = self._queue(con, "conv-chat")
        assert [r["id"] for r in con.due_actions(T0)] == [email[0], chat[0]]
        assert [r["id"] for r in con.due_actions(T0, conversation_id="conv-chat")] == [chat[0]]

    @pytest.mark.parametrize(
        ("mark", "holds_back"),
        [
            (lambda con, i: con.mark_sending(i, T0), True),
            (lambda con, i: (con.mark_sending(i, T0), con.mark_unknown(i, "timeout")), True),
            (
                lambda con, i: con.mark_pending(i, T0 + timedelta(minutes=1), "429", counted=False),
                True,
            ),
            (lambda con, i: con.mark_failed(i, "invalid: closed"), False),
            (lambda con, i: con.cancel_action(i, T0), False),
            (lambda con, i: (con.mark_sending(i, T0), con.mark_sent(i, "it-1", T0)), False),
        ],
        ids=["sending", "unknown", "pending-later", "failed", "cancelled", "sent"],
    )
    def test_open_rows_hold_back_later_rows(self, con, mark, holds_back):
        """pending, sending and unknown rows hold back later rows of their conversation; failed,
        cancelled and sent ones do not."""
        first, second, _ = self._queue(con)
        mark(con, first)
        due = [r["id"] for r in con.due_actions(T0)]
        if holds_back:
            assert second not in due
        else:
            assert due == [second]

    def test_next_attempt_at_is_respected(self, con):
        """A deferred row is due once next_attempt_at has come."""
        (row_id,) = self._queue(con, n=1)
        con.mark_pending(row_id, T0 + timedelta(seconds=30), "429", counted=False)
        assert con.due_actions(T0 + timedelta(seconds=29)) == []
        assert [r["id"] for r in con.due_actions(T0 + timedelta(seconds=30))] == [row_id]

    def test_unknown_rows_come_first(self, con):
        """Rows to reconcile are listed before rows to send."""
        (email,) = self._queue(con, n=1)
        (chat,) = self._queue(con, "conv-chat", n=1)
        con.mark_sending(chat, T0)
        con.mark_unknown(chat, "timeout")
        assert [r["id"] for r in con.due_actions(T0)] == [chat, email]


class TestTransitions:
    def _row(self, con):
        return con.enqueue_reply("conv-email", "Hi", now=T0).row["id"]

    def test_sending_counts_an_attempt_and_stamps_it(self, con):
        """mark_sending: status sending, last_attempt_at = now, attempts + 1."""
        row_id = self._row(con)
        row = con.mark_sending(row_id, T0 + timedelta(seconds=5))
        assert (row["status"], row["attempts"], row["last_attempt_at"]) == (
            "sending",
            1,
            T0 + timedelta(seconds=5),
        )

    def test_uncounted_pending_gives_the_attempt_back(self, con):
        """A 429 or a request that never left does not count toward max_attempts."""
        row_id = self._row(con)
        con.mark_sending(row_id, T0)
        row = con.mark_pending(row_id, T0 + timedelta(seconds=2), "429", counted=False)
        assert (row["status"], row["attempts"], row["next_attempt_at"], row["last_error"]) == (
            "pending",
            0,
            T0 + timedelta(seconds=2),
            "429",
        )

    def test_counted_pending_keeps_the_attempt(self, con):
        """A request that may have reached Gladly stays counted."""
        row_id = self._row(con)
        con.mark_sending(row_id, T0)
        assert con.mark_pending(row_id, T0, "502", counted=True)["attempts"] == 1

    def test_sent_records_item_and_time(self, con):
        """mark_sent stores Gladly's item id and sent_at, and clears the last error."""
        row_id = self._row(con)
        con.mark_sending(row_id, T0)
        con.mark_unknown(row_id, "timeout")
        row = con.mark_sent(row_id, "item-7", T0 + timedelta(minutes=1))
        assert (row["status"], row["gladly_item_id"], row["sent_at"], row["last_error"]) == (
            "sent",
            "item-7",
            T0 + timedelta(minutes=1),
            None,
        )

    def test_stale_sending_rows_become_unknown(self, con):
        """A drain that finds rows sending (a crash) longer than the request timeout makes them
        unknown, counted."""
        row_id = self._row(con)
        con.mark_sending(row_id, T0)
        later = T0 + timedelta(seconds=31)
        assert con.recover_stale_sending(later, older_than=timedelta(seconds=30)) == 1
        row = con.get_action(row_id)
        assert (row["status"], row["attempts"]) == ("unknown", 1)
        assert "stopped while sending" in row["last_error"]
        assert con.recover_stale_sending(later, older_than=timedelta(seconds=30)) == 0

    def test_a_concurrent_drains_sending_row_is_not_taken(self, con):
        """A sending row whose attempt is younger than the request timeout may be another drain's
        request in flight: left sending."""
        row_id = self._row(con)
        con.mark_sending(row_id, T0)
        assert con.recover_stale_sending(T0 + timedelta(seconds=29), older_than=timedelta(seconds=30)) == 0
        assert con.get_action(row_id)["status"] == "sending"

    def test_claim_is_compare_and_set(self, con):
        """Two drains that saw the same row: the first claim wins, the second gets None."""
        row_id = self._row(con)
        seen = con.get_action(row_id)
        assert con.mark_sending(row_id, T0, seen=seen)["status"] == "sending"
        con.mark_unknown(row_id, "timeout")
        assert con.mark_sending(row_id, T0 + timedelta(seconds=1), seen=seen) is None
        assert con.get_action(row_id)["attempts"] == 1

    def test_sending_claims_only_open_rows(self, con):
        """A cancelled row cannot be claimed for sending."""
        row_id = self._row(con)
        con.cancel_action(row_id, T0)
        assert con.mark_sending(row_id, T0) is None
        assert con.get_action(row_id)["status"] == "cancelled"

    def test_outcomes_do_not_overwrite_settled_rows(self, con):
        """A late outcome leaves a sent row alone."""
        row_id = self._row(con)
        con.mark_sending(row_id, T0)
        con.mark_sent(row_id, "item-1", T0)
        assert con.mark_unknown(row_id, "late") is None
        assert con.mark_failed(row_id, "late") is None
        assert con.get_action(row_id)["status"] == "sent"

    def test_claimed_ids_are_other_rows_items(self, con):
        """claimed_item_ids: item and note ids held by rows of the conversation."""
        a, b = self._row(con), self._row(con)
        esc = con.enqueue_escalation("conv-email", note="n", default_inbox="esc", now=T0).row["id"]
        con.mark_sent(a, "item-a", T0)
        con.record_note_sent(esc, "note-e")
        assert con.claimed_item_ids("conv-email") == {"item-a", "note-e"}
        assert con.claimed_item_ids("conv-email", exclude_id=a) == {"note-e"}
        assert con.claimed_item_ids("conv-chat") == set()
        assert b

    def test_counts_cover_every_status(self, con):
        """outbox_counts lists every status, zero when empty."""
        self._row(con)
        assert con.outbox_counts() == {
            "pending": 1,
            "sending": 0,
            "unknown": 0,
            "sent": 0,
            "failed": 0,
            "cancelled": 0,
        }

    def test_unknown_id(self, con):
        """Reading a missing row is NotFound."""
        with pytest.raises(NotFound, match="outbox list"):
            con.get_action("missing")

    def test_bad_status_filter(self, con):
        """list_actions refuses a status that does not exist."""
        with pytest.raises(UsageError, match="unknown outbox status 'done'"):
            con.list_actions("done")


class TestRetryAndCancel:
    def _row(self, con, status):
        row_id = con.enqueue_note("conv-email", "n", now=T0).row["id"]
        if status in ("sending", "unknown", "sent", "failed"):
            con.mark_sending(row_id, T0)
        if status == "unknown":
            con.mark_unknown(row_id, "timeout")
        if status == "sent":
            con.mark_sent(row_id, "item-1", T0)
        if status == "failed":
            con.mark_failed(row_id, "invalid: nope")
        if status == "cancelled":
            con.cancel_action(row_id, T0)
        return row_id

    def test_retry_failed_is_a_deliberate_resend(self, con):
        """retry on a failed row: pending again, attempts reset, due now."""
        row_id = self._row(con, "failed")
        row = con.retry_action(row_id, T0)
        assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, None)

    def test_retry_unknown_still_reconciles_first(self, con):
        """retry on an unknown row keeps it unknown (so it is reconciled first) and makes it due."""
        row_id = self._row(con, "unknown")
        con.mark_unknown(row_id, "cannot verify", next_attempt_at=T0 + timedelta(hours=1))
        row = con.retry_action(row_id, T0)
        assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("unknown", 1, None)

    def test_retry_pending_makes_it_due_now(self, con):
        """retry on a deferred pending row clears its wait."""
        row_id = self._row(con, "pending")
        con.mark_pending(row_id, T0 + timedelta(hours=1), "429", counted=False)
        assert con.retry_action(row_id, T0)["next_attempt_at"] is None

    @pytest.mark.parametrize(
        ("status", "message"),
        [("sent", "already sent"), ("cancelled", "was cancelled"), ("sending", "being sent right now")],
    )
    def test_retry_refused(self, con, status, message):
        """retry is refused for sent, cancelled and sending rows (exit 2), and changes nothing."""
        row_id = self._row(con, status)
        before = con.get_action(row_id)
        with pytest.raises(UsageError, match=message):
            con.retry_action(row_id, T0)
        assert con.get_action(row_id) == before

    @pytest.mark.parametrize("status", ["pending", "unknown", "failed"])
    def test_cancel(self, con, status):
        """pending, unknown and failed rows can be cancelled."""
        row_id = self._row(con, status)
        assert con.cancel_action(row_id, T0)["status"] == "cancelled"

    @pytest.mark.parametrize(
        ("status", "message"), [("sending", "being sent right now"), ("sent", "already sent")]
    )
    def test_cancel_refused(self, con, status, message):
        """cancel is refused for a sending or sent row."""
        row_id = self._row(con, status)
        with pytest.raises(UsageError, match=message):
            con.cancel_action(row_id, T0)
        assert con.get_action(row_id)["status"] == status

    def test_cancel_twice_is_harmless(self, con):
        """Cancelling a cancelled row returns it unchanged."""
        row_id = self._row(con, "cancelled")
        assert con.cancel_action(row_id, T0)["status"] == "cancelled"

    def test_missing_row(self, con):
        """retry and cancel of an unknown id are NotFound."""
        with pytest.raises(NotFound):
            con.retry_action("missing", T0)
        with pytest.raises(NotFound):
            con.cancel_action("missing", T0)
