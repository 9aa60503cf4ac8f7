"""An erasure in Gladly reaches the outbox: erased customers' bodies are blanked, open rows cancelled,
and the database's files keep no byte of them (the SQLite files; PostgreSQL's table files)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.outbox
from tests.outbox import T0, Queue, add_conversation, add_item, open_db, open_outbox


def _queue(tmp_path: Path) -> tuple[Queue, dict[str, str]]:
    """Four rows of the erased customer's conversation in each state that matters, one of another's."""
    db = open_db(tmp_path)
    with db.transaction() as con:
        add_conversation(con, "conv-erased")
        add_item(con, "in-1", "conv-erased")
        add_conversation(con, "conv-kept", customer_id="cust-2")
    q = Queue(db, open_outbox(tmp_path, db))
    ids = {
        name: q.enqueue_note("conv-erased", f"{name} secret body").row["id"]
        for name in ("sent", "pending", "failed", "sending")
    }
    ids["other"] = q.enqueue_note("conv-kept", "kept body").row["id"]
    q.mark_sending(ids["sent"], T0)
    q.mark_sent(ids["sent"], "note-sent", T0)
    q.mark_sending(ids["failed"], T0)
    q.mark_failed(ids["failed"], "400 invalid")
    q.mark_sending(ids["sending"], T0)
    return q, ids


def _rows(q: Queue) -> dict[str, tuple[str, str | None]]:
    return {row["id"]: (row["status"], row["body"]) for row in q.list_actions()}


class TestBlankErasedActions:
    def test_erased_conversations_lose_bodies_and_open_rows_are_cancelled(self, tmp_path):
        """Every row of an erased conversation loses its body; rows not sent are cancelled, sent rows stay
        sent, and other conversations' rows are untouched."""
        q, ids = _queue(tmp_path)
        assert q.blank_erased_actions(["conv-erased"], []) == 4
        assert _rows(q) == {
            ids["sent"]: ("sent", None),
            ids["pending"]: ("cancelled", None),
            ids["failed"]: ("cancelled", None),
            ids["sending"]: ("cancelled", None),
            ids["other"]: ("pending", "kept body"),
        }

    def test_a_cancelled_row_is_never_claimed_again(self, tmp_path):
        """The drain cannot claim a row the erasure cancelled, and a late answer for a row that was
        being sent cannot put it back in the queue."""
        q, ids = _queue(tmp_path)
        q.blank_erased_actions(["conv-erased"], [])
        assert q.mark_sending(ids["pending"], T0) is None
        assert q.mark_pending(ids["sending"], T0, "timeout", counted=True) is None
        assert [row["id"] for row in q.due_actions(T0)] == [ids["other"]]

    def test_sent_rows_of_redacted_items_lose_their_bodies(self, tmp_path):
        """A sent row whose Gladly item (or escalation note) was redacted loses its body and stays sent."""
        q, ids = _queue(tmp_path)
        assert q.blank_erased_actions([], ["note-sent"]) == 1
        assert _rows(q)[ids["sent"]] == ("sent", None)
        assert _rows(q)[ids["pending"]] == ("pending", "pending secret body")

    def test_blanking_twice_changes_nothing(self, tmp_path):
        """A second call (the next sync after a crash) finds nothing left to blank."""
        q, _ = _queue(tmp_path)
        q.blank_erased_actions(["conv-erased"], [])
        assert q.blank_erased_actions(["conv-erased"], []) == 0

    @pytest.mark.duckdb_only
    def test_no_byte_of_a_blanked_body_stays_in_the_sqlite_files(self, tmp_path):
        """After blanking and release_erased_bytes, the body is in neither the database file nor its
        -wal or -shm (secure_delete zeroes freed space; the WAL is checkpointed and truncated)."""
        q, _ = _queue(tmp_path)
        files = [tmp_path / f"gladly_outbox.sqlite{suffix}" for suffix in ("", "-wal", "-shm")]

        def holding() -> list[str]:
            return [f.name for f in files if f.exists() and b"pending secret body" in f.read_bytes()]

        assert holding()
        q.blank_erased_actions(["conv-erased"], [])
        q.database.release_erased_bytes()
        assert holding() == []

    @pytest.mark.postgres
    def test_no_byte_of_a_blanked_body_stays_in_the_postgres_table_files(self, tmp_path):
        """On PostgreSQL, after blanking and release_erased_bytes (``VACUUM FULL outbox``) and a
        checkpoint, the body is in none of the outbox table's files (heap and TOAST); before, it was."""
        import psycopg

        q, _ = _queue(tmp_path)
        where = tests.outbox.POSTGRES

        def holding() -> list[str]:
            with psycopg.connect(where.url, autocommit=True) as con:
                con.execute("CHECKPOINT")
                data = Path(con.execute("SHOW data_directory").fetchone()[0])
                files = con.execute(
                    "SELECT pg_relation_filepath(c.oid) FROM pg_class AS c "
                    "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = 'outbox' "
                    "UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class AS c "
                    "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = 'outbox' AND c.reltoastrelid <> 0",
                    [where.schema, where.schema],
                ).fetchall()
            paths = [data / name for (name,) in files if name]
            assert paths, "the outbox table has files"
            return [p.name for p in paths if p.exists() and b"pending secret body" in p.read_bytes()]

        assert holding()
        q.blank_erased_actions(["conv-erased"], [])
        q.database.release_erased_bytes()
        assert holding() == []
