"""Store: Applied's Python surface. Context from the store, actions into the outbox database;
enqueue validates against the read snapshot and never needs the API token or the store's lock."""

from __future__ import annotations

import time

import duckdb
import pytest
from gladly_sync.storage import Database, Store, upserts
from gladly_sync.storage.rows import conversation_row

from gladly_sync import storage
from gladly_sync.errors import EnqueueRejected, NotFound

from .conftest import T0
from .test_database import _holder, _release

EMAIL = {
    "id": "i1",
    "conversationId": "v1",
    "customerId": "c1",
    "timestamp": "2024-05-01T10:00:00Z",
    "initiator": {"type": "CUSTOMER", "id": "c1"},
    "content": {"type": "EMAIL", "subject": "Order", "content": "Where is it?"},
}


def add_conversation(db: Database, conversation_id: str, *, with_email: bool = True) -> None:
    with db.transaction() as con:
        upserts.upsert_conversations(
            con,
            [
                conversation_row(
                    {"id": conversation_id, "customerId": "c1", "inboxId": "in1", "status": "OPEN"},
                    synced_at=T0,
                    source_at=T0,
                )
            ],
        )
        if with_email:
            item = {**EMAIL, "id": f"{conversation_id}-i1", "conversationId": conversation_id}
            upserts.upsert_items(con, [item], source_at=T0, synced_at=T0)


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "data" / "gladly.duckdb"
    add_conversation(Database(path), "v1")
    return path


class TestStore:
    def test_package_exports(self):
        """storage exposes Store and Database."""
        assert storage.__all__ == ["Database", "Store"]

    def test_context_reads_the_store_and_the_outbox(self, path):
        """conversation_context: the conversation from the store (closed afterwards), its unsent
        actions from the outbox database."""
        store = Store(path)
        queued = store.enqueue_note("v1", "Customer is VIP").row
        context = store.conversation_context("v1")
        assert context["conversation"]["id"] == "v1"
        assert [(a["id"], a["kind"], a["status"], a["body"]) for a in context["outbox"]] == [
            (queued["id"], "note", "pending", "Customer is VIP")
        ]
        assert isinstance(context["outbox"][0]["created_at"], str)
        with pytest.raises(NotFound):
            store.conversation_context("v2")
        duckdb.connect(str(path)).close()

    def test_enqueues_land_in_the_outbox_database(self, path):
        """Reply, note and escalation rows go to gladly_outbox.sqlite beside the store, in order."""
        store = Store(path, escalation_inbox="esc", lock_wait_seconds=5)
        reply = store.enqueue_reply("v1", "Hi", dedupe_key="k1")
        store.enqueue_note("v1", "Note", dedupe_key="k2")
        escalation = store.enqueue_escalation("v1", note="Please help")
        assert (path.parent / "gladly_outbox.sqlite").exists()
        assert (reply.row["reply_to_item_id"], reply.row["channel"]) == ("v1-i1", "EMAIL")
        assert escalation.row["target_inbox_id"] == "esc"
        assert store.outbox_by_key("k1") == reply.row
        assert store.enqueue_reply("v1", "Hi", dedupe_key="k1").deduplicated is True
        with pytest.raises(EnqueueRejected, match=f"already used by outbox action {reply.row['id']}"):
            store.enqueue_reply("v1", "Hello", dedupe_key="k1")
        with duckdb.connect(str(path), read_only=True) as con:
            found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'outbox'")
            assert found.fetchone() == (0,)

    def test_from_config_needs_no_token(self, tmp_path, path, monkeypatch):
        """Store.from_config with no api_token in the file and GLADLY_API_TOKEN unset works."""
        monkeypatch.delenv("GLADLY_API_TOKEN", raising=False)
        config = tmp_path / "config.yaml"
        config.write_text(
            "gladly:\n  organization: acme\n  email: api@acme.com\n"
            "storage:\n  path: data/gladly.duckdb\n  snapshot_path: null\n"
            "  outbox_path: data/queue.sqlite\n"
        )
        store = Store.from_config(config)
        assert store.enqueue_note("v1", "no token needed").row["status"] == "pending"
        assert (tmp_path / "data" / "queue.sqlite").exists()

    def test_enqueue_validates_against_the_snapshot_without_the_store_lock(self, tmp_path, path):
        """With a snapshot, enqueue reads it: a writer holding the store does not delay it, and a
        conversation not yet published is refused as unknown."""
        snapshot = tmp_path / "data" / "gladly_read.duckdb"
        Database(path).publish_snapshot(snapshot)
        add_conversation(Database(path), "v-new")
        holder = _holder(path)  # another process holds the store (a sync writing)
        try:
            store = Store(path, lock_wait_seconds=3, snapshot_path=snapshot)
            started = time.monotonic()
            assert store.enqueue_reply("v1", "Hello").row["reply_to_item_id"] == "v1-i1"
            assert time.monotonic() - started < 2
            with pytest.raises(EnqueueRejected, match="'v-new' is not in the local store"):
                store.enqueue_note("v-new", "not published yet")
        finally:
            _release(holder)

    def test_a_newly_published_snapshot_is_read_at_the_next_enqueue(self, tmp_path, path):
        """The snapshot kept open between enqueues is swapped for the next published one."""
        snapshot = tmp_path / "data" / "gladly_read.duckdb"
        Database(path).publish_snapshot(snapshot)
        store = Store(path, snapshot_path=snapshot)
        assert store.enqueue_note("v1", "first").row["status"] == "pending"
        add_conversation(Database(path), "v-new")
        with pytest.raises(EnqueueRejected, match="not in the local store"):
            store.enqueue_note("v-new", "too early")
        Database(path).publish_snapshot(snapshot)
        assert store.enqueue_note("v-new", "now published").row["conversation_id"] == "v-new"
