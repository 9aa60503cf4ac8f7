"""Store: Applied's Python surface opens the file per call and delegates to the outbox module."""

from __future__ import annotations

import sys
import types

import duckdb
import pytest
from gladly_sync.storage import Database, Store, upserts
from gladly_sync.storage.rows import conversation_row

from gladly_sync import storage
from gladly_sync.errors import NotFound

from .conftest import T0


@pytest.fixture
def fake_outbox(monkeypatch):
    """A stand-in for storage/outbox.py that records each call and the connection's state."""
    calls = []
    module = types.ModuleType("gladly_sync.storage.outbox")

    def recorder(name):
        def call(con, *args, **kwargs):
            assert con.execute("SELECT count(*) FROM conversations").fetchone() is not None
            calls.append((name, args, {k: v for k, v in kwargs.items() if k != "now"}))
            assert kwargs.get("now") is None or kwargs["now"].tzinfo is not None
            if name == "outbox_by_key":
                return {"id": "o1", "dedupe_key": args[0]}
            con.execute("INSERT INTO sync_state VALUES (?, 'queued', now())", [name])
            return {"queued": name}

        return call

    for name in ("enqueue_reply", "enqueue_note", "enqueue_escalation", "outbox_by_key"):
        setattr(module, name, recorder(name))
    monkeypatch.setitem(sys.modules, "gladly_sync.storage.outbox", module)
    monkeypatch.setattr(storage, "outbox", module, raising=False)
    return calls


class TestStore:
    def test_package_exports(self):
        """storage exposes Store and Database."""
        assert storage.__all__ == ["Database", "Store"]

    def test_context_reads_the_store(self, tmp_path):
        """conversation_context opens the file, reads and closes it (another process may then open it)."""
        path = tmp_path / "g.duckdb"
        with Database(path).transaction() as con:
            upserts.upsert_conversations(
                con,
                [
                    conversation_row(
                        {"id": "v1", "customerId": "c1", "inboxId": "in1", "status": "OPEN"},
                        synced_at=T0,
                        source_at=T0,
                    )
                ],
            )
        store = Store(path)
        assert store.conversation_context("v1")["conversation"]["id"] == "v1"
        with pytest.raises(NotFound):
            store.conversation_context("v2")
        duckdb.connect(str(path)).close()

    def test_enqueues_delegate_in_a_committed_transaction(self, tmp_path, fake_outbox):
        """Each enqueue calls the outbox function with the escalation inbox default and commits."""
        store = Store(tmp_path / "g.duckdb", escalation_inbox="esc", lock_wait_seconds=5)
        assert store.enqueue_reply("v1", "Hi", dedupe_key="k1", html=True) == {"queued": "enqueue_reply"}
        store.enqueue_note("v1", "Note", dedupe_key="k2")
        store.enqueue_escalation("v1", note="Please help")
        assert store.outbox_by_key("k1") == {"id": "o1", "dedupe_key": "k1"}
        assert fake_outbox == [
            ("enqueue_reply", ("v1", "Hi"), {"html": True, "dedupe_key": "k1"}),
            ("enqueue_note", ("v1", "Note"), {"dedupe_key": "k2"}),
            (
                "enqueue_escalation",
                ("v1",),
                {"note": "Please help", "inbox_id": None, "default_inbox": "esc", "dedupe_key": None},
            ),
            ("outbox_by_key", ("k1",), {}),
        ]
        with store.db.connect() as con:
            streams = con.execute("SELECT stream FROM sync_state ORDER BY 1").fetchall()
        assert streams == [("enqueue_escalation",), ("enqueue_note",), ("enqueue_reply",)]
        assert store.db.lock_wait_seconds == 5
