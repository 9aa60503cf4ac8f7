"""The outbox database: SQLite in WAL mode beside the store, seq from a sequence under concurrent
enqueuers, the one-time import of an older store's outbox, and the copy the snapshot carries."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta

import duckdb
import pytest
from duckdb_engine import Dialect
from gladly_sync.storage.database import Database
from gladly_sync.storage.outbox.bridge import outbox_for_store
from gladly_sync.storage.outbox.schema import OUTBOX
from gladly_sync.storage.tables import ANALYST_TABLES
from sqlalchemy.schema import CreateTable

from tests.outbox import T0, Queue, add_conversation, add_item, open_db, open_outbox, store_arguments


def old_layout_store(tmp_path):
    """A store written by the first release: its outbox table holds pending, sent and unknown rows."""
    db = open_db(tmp_path)
    with db.transaction() as con:
        add_conversation(con, "conv-1")
        add_item(con, "in-1", "conv-1")
        con.execute(str(CreateTable(OUTBOX).compile(dialect=Dialect())))
        rows = [
            ("a-pending", "note", "pending", 0, None, None, "k-a", 1),
            ("a-sent", "note", "sent", 1, T0, "item-sent", None, 2),
            ("a-unknown", "note", "unknown", 1, T0 + timedelta(minutes=1), None, "k-u", 3),
        ]
        for action_id, kind, status, attempts, attempted, item, key, seq in rows:
            con.execute(
                "INSERT INTO outbox (id, kind, conversation_id, body, body_is_html, status, attempts, "
                "last_attempt_at, gladly_item_id, dedupe_key, created_at, seq) "
                "VALUES (?, ?, 'conv-1', ?, false, ?, ?, ?, ?, ?, ?, ?)",
                [action_id, kind, f"body of {action_id}", status, attempts, attempted, item, key, T0, seq],
            )
    return db


def store_has_outbox(db: Database) -> bool:
    with db.connect() as con:
        found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'outbox'").fetchone()
    return bool(found and found[0])


class TestDatabase:
    @pytest.mark.duckdb_only
    def test_sqlite_in_wal_mode_private_to_its_owner(self, tmp_path):
        """The outbox is a SQLite file in WAL mode, mode 0600, beside the store."""
        database = open_outbox(tmp_path)
        path = tmp_path / "gladly_outbox.sqlite"
        assert database.path == path
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"

    def test_seq_comes_from_a_sequence_across_processes(self, tmp_path):
        """Four processes enqueueing at once: every row gets its own seq, increasing in each
        process's own order (never max(seq)+1, which hands out duplicates)."""
        db = open_db(tmp_path)
        with db.transaction() as con:
            add_conversation(con, "conv-1")
        open_outbox(tmp_path, db)
        code = textwrap.dedent(
            f"""
            import sys
            from gladly_sync import Store
            store = Store({store_arguments(tmp_path)})
            for n in range(25):
                store.enqueue_note("conv-1", f"p{{sys.argv[1]}}-{{n}}")
            """
        )
        workers = [subprocess.Popen([sys.executable, "-c", code, str(p)]) for p in range(4)]
        assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
        rows = Queue(db, open_outbox(tmp_path, db)).list_actions()
        assert len(rows) == 100
        assert len({row["seq"] for row in rows}) == 100
        for p in range(4):
            mine = [row["seq"] for row in rows if row["body"].startswith(f"p{p}-")]
            bodies = [
                row["body"]
                for row in sorted(rows, key=lambda r: r["seq"])
                if row["body"].startswith(f"p{p}-")
            ]
            assert mine == sorted(mine) and bodies == [f"p{p}-{n}" for n in range(25)]


@pytest.mark.duckdb_only
class TestImportFromTheStore:
    def test_old_rows_move_with_their_state_and_the_table_is_dropped(self, tmp_path):
        """pending, sent and unknown rows of an older store arrive unchanged (ids, states, attempts,
        item ids, keys, seq); the store's outbox table is gone; new rows queue after them."""
        db = old_layout_store(tmp_path)
        q = Queue(db, open_outbox(tmp_path, db))
        rows = {row["id"]: row for row in q.list_actions()}
        assert [
            (r["id"], r["status"], r["attempts"], r["gladly_item_id"], r["dedupe_key"], r["seq"])
            for r in rows.values()
        ] == [
            ("a-pending", "pending", 0, None, "k-a", 1),
            ("a-sent", "sent", 1, "item-sent", None, 2),
            ("a-unknown", "unknown", 1, None, "k-u", 3),
        ]
        assert rows["a-unknown"]["last_attempt_at"] == T0 + timedelta(minutes=1)
        assert not store_has_outbox(db)
        assert q.enqueue_note("conv-1", "new").row["seq"] == 4
        assert q.enqueue_note("conv-1", "body of a-pending", dedupe_key="k-a").row["id"] == "a-pending"

    def test_a_crash_between_import_and_drop_imports_nothing_twice(self, tmp_path):
        """If the store still has the table (the drop never happened), the next start adds no row
        twice and keeps the outbox database's newer states."""
        db = old_layout_store(tmp_path)
        with db.connect() as con:
            con.execute("CREATE TABLE kept AS SELECT * FROM outbox")
        first = open_outbox(tmp_path, db)
        Queue(db, first).mark_sending("a-pending", T0)
        Queue(db, first).mark_sent("a-pending", "item-p", T0)
        with db.connect() as con:
            con.execute("ALTER TABLE kept RENAME TO outbox")
        with first.transaction() as con:
            con.exec_driver_sql("DELETE FROM outbox_meta")
        first.dispose()
        again = Queue(db, open_outbox(tmp_path, db))
        rows = again.list_actions()
        assert [(r["id"], r["status"]) for r in rows] == [
            ("a-pending", "sent"),
            ("a-sent", "sent"),
            ("a-unknown", "unknown"),
        ]
        assert not store_has_outbox(db)

    def test_a_fresh_store_has_nothing_to_import(self, tmp_path):
        """No store yet: the outbox opens empty and never looks again."""
        database = outbox_for_store(Database(tmp_path / "none" / "gladly.duckdb"), tmp_path / "o.sqlite")
        with database.connect() as con:
            assert con.exec_driver_sql("SELECT count(*) FROM outbox").scalar() == 0
            assert con.exec_driver_sql("SELECT count(*) FROM outbox_meta").scalar() == 1


@pytest.mark.duckdb_only
class TestSnapshotCopy:
    def test_snapshot_carries_the_outbox_table(self, tmp_path):
        """Each published snapshot holds a typed copy of the outbox table for analysts."""
        from gladly_sync.storage.outbox.bridge import copy_into_snapshot

        db = open_db(tmp_path)
        with db.transaction() as con:
            add_conversation(con, "conv-1")
        database = open_outbox(tmp_path, db)
        q = Queue(db, database)
        first = q.enqueue_note("conv-1", "hello", dedupe_key="k").row
        q.mark_sending(first["id"], T0)
        q.mark_sent(first["id"], "item-1", T0 + timedelta(seconds=1))
        db.on_publish = lambda con: copy_into_snapshot(con, database)
        snapshot = db.publish_snapshot(tmp_path / "read.duckdb")
        with duckdb.connect(str(snapshot), read_only=True) as con:
            rows = con.execute(
                "SELECT id, status, gladly_item_id, sent_at, seq, dedupe_key FROM outbox"
            ).fetchall()
            types = dict(
                con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'outbox'"
                ).fetchall()
            )
        assert rows == [(first["id"], "sent", "item-1", T0 + timedelta(seconds=1), first["seq"], "k")]
        assert types["sent_at"] == "TIMESTAMP WITH TIME ZONE" and types["seq"] == "BIGINT"
        with duckdb.connect(str(snapshot), read_only=True) as con:
            found = con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'outbox'")
            (comment,) = found.fetchone()
        assert comment == ANALYST_TABLES["outbox"].comment
        assert not store_has_outbox(db)
