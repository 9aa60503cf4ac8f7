"""The outbox queue: what enqueue accepts and refuses, queue order, and the row's state machine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from gladly_sync.storage import outbox
from gladly_sync.storage.database import CATALOG

from gladly_sync.errors import EnqueueRejected, NotFound, UsageError
from tests.outbox import T0, add_conversation, add_item, open_db


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
def con(db):
    with db.transaction() as con:
        yield con


def _statuses(con):
    return [(row["id"], row["status"]) for row in outbox.list_actions(con)]


class TestEnqueueReply:
    def test_reply_targets_newest_customer_message(self, con):
        """The target is the newest customer message; its item id and channel are fixed at enqueue."""
        add_item(con, "in-2", "conv-email", content_type="EMAIL", at=T0 + timedelta(minutes=5))
        add_item(con, "agent-1", "conv-email", initiator_type="AGENT", at=T0 + timedelta(minutes=9))
        result = outbox.enqueue_reply(con, "conv-email", "Thanks!", now=T0)
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
        assert outbox.get_action(con, row["id"]) == row

    def test_voice_items_are_skipped(self, con):
        """A newer phone call or voicemail is not a reply target; the newest text message is."""
        add_item(con, "call-1", "conv-chat", content_type="PHONE_CALL", at=T0 + timedelta(minutes=1))
        add_item(con, "vm-1", "conv-chat", content_type="VOICEMAIL", at=T0 + timedelta(minutes=2))
        row = outbox.enqueue_reply(con, "conv-chat", "Hello", now=T0).row
        assert (row["reply_to_item_id"], row["channel"]) == ("chat-1", "CHAT_MESSAGE")

    def test_deleted_items_are_skipped(self, con):
        """A deleted item is not a reply target."""
        add_item(con, "in-9", "conv-email", at=T0 + timedelta(minutes=1), deleted_at=T0)
        assert outbox.enqueue_reply(con, "conv-email", "Hi", now=T0).row["reply_to_item_id"] == "in-1"

    @pytest.mark.parametrize(
        "channel", ["EMAIL", "CHAT_MESSAGE", "SMS", "WHATSAPP", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT"]
    )
    def test_every_message_channel_is_replyable(self, con, channel):
        """Each replyable channel becomes the row's channel."""
        add_item(con, f"{channel}-1", "conv-quiet", content_type=channel)
        row = outbox.enqueue_reply(con, "conv-quiet", "Hi", now=T0).row
        assert (row["reply_to_item_id"], row["channel"]) == (f"{channel}-1", channel)

    def test_html_flag_is_kept_for_email(self, con):
        """--html on an email reply is stored as body_is_html."""
        assert (
            outbox.enqueue_reply(con, "conv-email", "<p>Hi</p>", html=True, now=T0).row["body_is_html"]
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
            outbox.enqueue_reply(con, conversation_id, body, now=T0, **kwargs)
        assert outbox.list_actions(con) == []

    def test_limits_are_inclusive(self, con):
        """2048 characters fit a chat reply; 100,000 fit an email."""
        outbox.enqueue_reply(con, "conv-chat", "x" * 2048, now=T0)
        outbox.enqueue_reply(con, "conv-email", "x" * 100_000, now=T0)
        assert len(outbox.list_actions(con)) == 2

    def test_only_customer_voice_messages_is_refused(self, con):
        """A conversation with only voice items and agent messages has nothing to reply to."""
        add_item(con, "call-1", "conv-quiet", content_type="PHONE_CALL")
        add_item(con, "agent-1", "conv-quiet", content_type="EMAIL", initiator_type="AGENT")
        with pytest.raises(EnqueueRejected, match="voice items cannot be replied to"):
            outbox.enqueue_reply(con, "conv-quiet", "Hi", now=T0)

    def test_deleted_conversation_is_refused(self, con):
        """A conversation Gladly deleted (merged away) takes no actions."""
        add_conversation(con, "conv-gone", deleted_at=T0)
        with pytest.raises(EnqueueRejected, match="no longer exists"):
            outbox.enqueue_note(con, "conv-gone", "hi", now=T0)


class TestEnqueueNote:
    def test_note_is_queued(self, con):
        """A note needs only a known conversation, even one with no items."""
        row = outbox.enqueue_note(con, "conv-quiet", "Customer is VIP", now=T0).row
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
            outbox.enqueue_note(con, conversation_id, body, now=T0)
        assert outbox.list_actions(con) == []


class TestEnqueueEscalation:
    def test_escalation_uses_configured_inbox(self, con):
        """Without --inbox the configured escalation inbox is the target; the note rides along in body."""
        row = outbox.enqueue_escalation(
            con, "conv-email", note="Angry customer", default_inbox="esc", now=T0
        ).row
        assert (row["kind"], row["target_inbox_id"], row["body"]) == ("escalation", "esc", "Angry customer")

    def test_given_inbox_wins(self, con):
        """--inbox overrides the configured inbox; no note is fine."""
        row = outbox.enqueue_escalation(con, "conv-email", inbox_id="tier2", default_inbox="esc", now=T0).row
        assert (row["target_inbox_id"], row["body"]) == ("tier2", None)

    def test_no_inbox_is_refused(self, con):
        """No configured inbox and none given: refused with the two ways out."""
        with pytest.raises(EnqueueRejected, match=r"set inboxes.escalation in config.yaml or pass --inbox"):
            outbox.enqueue_escalation(con, "conv-email", now=T0)
        assert outbox.list_actions(con) == []

    @pytest.mark.parametrize(
        ("note", "message"), [("  ", "escalation note is empty"), ("x" * 10_001, "10001")]
    )
    def test_bad_note_is_refused(self, con, note, message):
        """A given note must have text and fit the note limit."""
        with pytest.raises(EnqueueRejected, match=message):
            outbox.enqueue_escalation(con, "conv-email", note=note, default_inbox="esc", now=T0)

    def test_unknown_conversation_is_refused(self, con):
        """Escalations need a known conversation too."""
        with pytest.raises(EnqueueRejected, match="gladly-sync sync"):
            outbox.enqueue_escalation(con, "nope", default_inbox="esc", now=T0)


class TestDedupeKey:
    def test_same_key_same_action_returns_existing_row(self, con):
        """A second enqueue with the key returns the first row, marked deduplicated; one row exists."""
        first = outbox.enqueue_reply(con, "conv-email", "Hi", dedupe_key="k1", now=T0)
        again = outbox.enqueue_reply(
            con, "conv-email", "Hi (reworded)", dedupe_key="k1", now=T0 + timedelta(1)
        )
        assert again.deduplicated is True
        assert again.row == first.row
        assert len(outbox.list_actions(con)) == 1
        assert outbox.outbox_by_key(con, "k1") == first.row

    def test_existing_row_is_returned_even_after_it_was_sent(self, con):
        """Deduplication returns the row in whatever state it is now."""
        first = outbox.enqueue_note(con, "conv-email", "n", dedupe_key="k", now=T0).row
        outbox.mark_sending(con, first["id"], T0)
        outbox.mark_sent(con, first["id"], "item-9", T0)
        again = outbox.enqueue_note(con, "conv-email", "n", dedupe_key="k", now=T0)
        assert (again.deduplicated, again.row["status"], again.row["gladly_item_id"]) == (
            True,
            "sent",
            "item-9",
        )

    @pytest.mark.parametrize(
        "enqueue",
        [
            lambda con: outbox.enqueue_note(con, "conv-email", "Hi", dedupe_key="k1", now=T0),
            lambda con: outbox.enqueue_reply(con, "conv-chat", "Hi", dedupe_key="k1", now=T0),
        ],
        ids=["other-kind", "other-conversation"],
    )
    def test_key_reused_for_another_action_is_refused(self, con, enqueue):
        """A key names one action: another kind or conversation is refused, naming the owner."""
        first = outbox.enqueue_reply(con, "conv-email", "Hi", dedupe_key="k1", now=T0).row
        with pytest.raises(EnqueueRejected, match=rf"'k1' is already used by outbox action {first['id']}"):
            enqueue(con)
        assert len(outbox.list_actions(con)) == 1

    def test_blank_key_is_refused(self, con):
        """An empty dedupe key would dedupe unrelated actions; refused."""
        with pytest.raises(EnqueueRejected, match="dedupe key is empty"):
            outbox.enqueue_note(con, "conv-email", "Hi", dedupe_key=" ", now=T0)

    def test_unknown_key(self, con):
        """outbox_by_key answers None for a key nothing was queued with."""
        assert outbox.outbox_by_key(con, "never") is None

    def test_racing_transactions_leave_one_row(self, db):
        """Two transactions queueing the same new key: the UNIQUE constraint lets one commit;
        the loser's enqueue, run again, returns the winner's row."""
        with db.connect() as base:
            first, second = base.cursor(), base.cursor()
            for cursor in (first, second):
                cursor.execute(f"USE {CATALOG}")
            first.execute("BEGIN")
            second.execute("BEGIN")
            winner = outbox.enqueue_note(first, "conv-email", "n", dedupe_key="race", now=T0).row
            outbox.enqueue_note(second, "conv-email", "n", dedupe_key="race", now=T0)
            first.execute("COMMIT")
            with pytest.raises(Exception, match="constraint"):
                second.execute("COMMIT")
        with db.transaction() as con:
            retried = outbox.enqueue_note(con, "conv-email", "n", dedupe_key="race", now=T0)
            assert (retried.deduplicated, retried.row["id"]) == (True, winner["id"])
            assert len(outbox.list_actions(con)) == 1


class TestDueActions:
    def _queue(self, con, conversation_id="conv-email", n=3):
        return [outbox.enqueue_note(con, conversation_id, f"n{i}", now=T0).row["id"] for i in range(n)]

    def test_rows_keep_queue_order(self, con):
        """seq grows with every enqueue; list_actions is in queue order."""
        ids = self._queue(con) + self._queue(con, "conv-chat", 2)
        rows = outbox.list_actions(con)
        assert [r["id"] for r in rows] == ids
        assert [r["seq"] for r in rows] == sorted({r["seq"] for r in rows})

    def test_one_head_per_conversation(self, con):
        """Only the oldest open row of each conversation is due."""
        email = self._queue(con)
        chat = self._queue(con, "conv-chat")
        assert [r["id"] for r in outbox.due_actions(con, T0)] == [email[0], chat[0]]
        assert [r["id"] for r in outbox.due_actions(con, T0, conversation_id="conv-chat")] == [chat[0]]

    @pytest.mark.parametrize(
        ("mark", "holds_back"),
        [
            (lambda con, i: outbox.mark_sending(con, i, T0), True),
            (lambda con, i: (outbox.mark_sending(con, i, T0), outbox.mark_unknown(con, i, "timeout")), True),
            (
                lambda con, i: outbox.mark_pending(con, i, T0 + timedelta(minutes=1), "429", counted=False),
                True,
            ),
            (lambda con, i: outbox.mark_failed(con, i, "invalid: closed"), False),
            (lambda con, i: outbox.cancel_action(con, i, T0), False),
            (lambda con, i: (outbox.mark_sending(con, i, T0), outbox.mark_sent(con, i, "it-1", T0)), False),
        ],
        ids=["sending", "unknown", "pending-later", "failed", "cancelled", "sent"],
    )
    def test_open_rows_hold_back_later_rows(self, con, mark, holds_back):
        """pending, sending and unknown rows hold back later rows of their conversation; failed,
        cancelled and sent ones do not."""
        first, second, _ = self._queue(con)
        mark(con, first)
        due = [r["id"] for r in outbox.due_actions(con, T0)]
        if holds_back:
            assert second not in due
        else:
            assert due == [second]

    def test_next_attempt_at_is_respected(self, con):
        """A deferred row is due once next_attempt_at has come."""
        (row_id,) = self._queue(con, n=1)
        outbox.mark_pending(con, row_id, T0 + timedelta(seconds=30), "429", counted=False)
        assert outbox.due_actions(con, T0 + timedelta(seconds=29)) == []
        assert [r["id"] for r in outbox.due_actions(con, T0 + timedelta(seconds=30))] == [row_id]

    def test_unknown_rows_come_first(self, con):
        """Rows to reconcile are listed before rows to send."""
        (email,) = self._queue(con, n=1)
        (chat,) = self._queue(con, "conv-chat", n=1)
        outbox.mark_sending(con, chat, T0)
        outbox.mark_unknown(con, chat, "timeout")
        assert [r["id"] for r in outbox.due_actions(con, T0)] == [chat, email]


class TestTransitions:
    def _row(self, con):
        return outbox.enqueue_reply(con, "conv-email", "Hi", now=T0).row["id"]

    def test_sending_counts_an_attempt_and_stamps_it(self, con):
        """mark_sending: status sending, last_attempt_at = now, attempts + 1."""
        row_id = self._row(con)
        row = outbox.mark_sending(con, row_id, T0 + timedelta(seconds=5))
        assert (row["status"], row["attempts"], row["last_attempt_at"]) == (
            "sending",
            1,
            T0 + timedelta(seconds=5),
        )

    def test_uncounted_pending_gives_the_attempt_back(self, con):
        """A 429 or a request that never left does not count toward max_attempts."""
        row_id = self._row(con)
        outbox.mark_sending(con, row_id, T0)
        row = outbox.mark_pending(con, row_id, T0 + timedelta(seconds=2), "429", counted=False)
        assert (row["status"], row["attempts"], row["next_attempt_at"], row["last_error"]) == (
            "pending",
            0,
            T0 + timedelta(seconds=2),
            "429",
        )

    def test_counted_pending_keeps_the_attempt(self, con):
        """A request that may have reached Gladly stays counted."""
        row_id = self._row(con)
        outbox.mark_sending(con, row_id, T0)
        assert outbox.mark_pending(con, row_id, T0, "502", counted=True)["attempts"] == 1

    def test_sent_records_item_and_time(self, con):
        """mark_sent stores Gladly's item id and sent_at, and clears the last error."""
        row_id = self._row(con)
        outbox.mark_sending(con, row_id, T0)
        outbox.mark_unknown(con, row_id, "timeout")
        row = outbox.mark_sent(con, row_id, "item-7", T0 + timedelta(minutes=1))
        assert (row["status"], row["gladly_item_id"], row["sent_at"], row["last_error"]) == (
            "sent",
            "item-7",
            T0 + timedelta(minutes=1),
            None,
        )

    def test_stale_sending_rows_become_unknown(self, con):
        """A drain that finds rows sending (a crash) makes them unknown, counted."""
        row_id = self._row(con)
        outbox.mark_sending(con, row_id, T0)
        assert outbox.recover_stale_sending(con, T0) == 1
        row = outbox.get_action(con, row_id)
        assert (row["status"], row["attempts"]) == ("unknown", 1)
        assert "stopped while sending" in row["last_error"]
        assert outbox.recover_stale_sending(con, T0) == 0

    def test_sending_claims_only_open_rows(self, con):
        """A cancelled row cannot be claimed for sending."""
        row_id = self._row(con)
        outbox.cancel_action(con, row_id, T0)
        assert outbox.mark_sending(con, row_id, T0) is None
        assert outbox.get_action(con, row_id)["status"] == "cancelled"

    def test_outcomes_do_not_overwrite_settled_rows(self, con):
        """A late outcome leaves a sent row alone."""
        row_id = self._row(con)
        outbox.mark_sending(con, row_id, T0)
        outbox.mark_sent(con, row_id, "item-1", T0)
        assert outbox.mark_unknown(con, row_id, "late") is None
        assert outbox.mark_failed(con, row_id, "late") is None
        assert outbox.get_action(con, row_id)["status"] == "sent"

    def test_claimed_ids_are_other_rows_items(self, con):
        """claimed_item_ids: item and note ids held by rows of the conversation."""
        a, b = self._row(con), self._row(con)
        esc = outbox.enqueue_escalation(con, "conv-email", note="n", default_inbox="esc", now=T0).row["id"]
        outbox.mark_sent(con, a, "item-a", T0)
        outbox.record_note_sent(con, esc, "note-e")
        assert outbox.claimed_item_ids(con, "conv-email") == {"item-a", "note-e"}
        assert outbox.claimed_item_ids(con, "conv-email", exclude_id=a) == {"note-e"}
        assert outbox.claimed_item_ids(con, "conv-chat") == set()
        assert b

    def test_counts_cover_every_status(self, con):
        """outbox_counts lists every status, zero when empty."""
        self._row(con)
        assert outbox.outbox_counts(con) == {
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
            outbox.get_action(con, "missing")

    def test_bad_status_filter(self, con):
        """list_actions refuses a status that does not exist."""
        with pytest.raises(UsageError, match="unknown outbox status 'done'"):
            outbox.list_actions(con, "done")


class TestRetryAndCancel:
    def _row(self, con, status):
        row_id = outbox.enqueue_note(con, "conv-email", "n", now=T0).row["id"]
        if status in ("sending", "unknown", "sent", "failed"):
            outbox.mark_sending(con, row_id, T0)
        if status == "unknown":
            outbox.mark_unknown(con, row_id, "timeout")
        if status == "sent":
            outbox.mark_sent(con, row_id, "item-1", T0)
        if status == "failed":
            outbox.mark_failed(con, row_id, "invalid: nope")
        if status == "cancelled":
            outbox.cancel_action(con, row_id, T0)
        return row_id

    def test_retry_failed_is_a_deliberate_resend(self, con):
        """retry on a failed row: pending again, attempts reset, due now."""
        row_id = self._row(con, "failed")
        row = outbox.retry_action(con, row_id, T0)
        assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, None)

    def test_retry_unknown_still_reconciles_first(self, con):
        """retry on an unknown row keeps it unknown (so it is reconciled first) and makes it due."""
        row_id = self._row(con, "unknown")
        outbox.mark_unknown(con, row_id, "cannot verify", next_attempt_at=T0 + timedelta(hours=1))
        row = outbox.retry_action(con, row_id, T0)
        assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("unknown", 1, None)

    def test_retry_pending_makes_it_due_now(self, con):
        """retry on a deferred pending row clears its wait."""
        row_id = self._row(con, "pending")
        outbox.mark_pending(con, row_id, T0 + timedelta(hours=1), "429", counted=False)
        assert outbox.retry_action(con, row_id, T0)["next_attempt_at"] is None

    @pytest.mark.parametrize(
        ("status", "message"),
        [("sent", "already sent"), ("cancelled", "was cancelled"), ("sending", "being sent right now")],
    )
    def test_retry_refused(self, con, status, message):
        """retry is refused for sent, cancelled and sending rows (exit 2), and changes nothing."""
        row_id = self._row(con, status)
        before = outbox.get_action(con, row_id)
        with pytest.raises(UsageError, match=message):
            outbox.retry_action(con, row_id, T0)
        assert outbox.get_action(con, row_id) == before

    @pytest.mark.parametrize("status", ["pending", "unknown", "failed"])
    def test_cancel(self, con, status):
        """pending, unknown and failed rows can be cancelled."""
        row_id = self._row(con, status)
        assert outbox.cancel_action(con, row_id, T0)["status"] == "cancelled"

    @pytest.mark.parametrize(
        ("status", "message"), [("sending", "being sent right now"), ("sent", "already sent")]
    )
    def test_cancel_refused(self, con, status, message):
        """cancel is refused for a sending or sent row."""
        row_id = self._row(con, status)
        with pytest.raises(UsageError, match=message):
            outbox.cancel_action(con, row_id, T0)
        assert outbox.get_action(con, row_id)["status"] == status

    def test_cancel_twice_is_harmless(self, con):
        """Cancelling a cancelled row returns it unchanged."""
        row_id = self._row(con, "cancelled")
        assert outbox.cancel_action(con, row_id, T0)["status"] == "cancelled"

    def test_missing_row(self, con):
        """retry and cancel of an unknown id are NotFound."""
        with pytest.raises(NotFound):
            outbox.retry_action(con, "missing", T0)
        with pytest.raises(NotFound):
            outbox.cancel_action(con, "missing", T0)
