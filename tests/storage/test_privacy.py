"""Erased values leave the store's file; the store's files are private; crashed temp files go."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from gladly_sync.storage import upserts
from gladly_sync.storage.database import Database, remove_dead_temp_files
from gladly_sync.storage.private import make_private, open_private, private_folder
from gladly_sync.storage.rows import conversation_row, customer_row

from tests.privacy import dead_pid, umask

from .conftest import T0, T1, table
from .test_upserts import conversation, item, profile

MARKER = "Q~^|`" * 8


@pytest.fixture
def backend() -> str:
    """These rules are about the DuckDB store's own files; PostgreSQL's storage is the server's."""
    return "duckdb"


def on_disk(path: Path) -> bool:
    """Whether MARKER's bytes are in ``path`` or its WAL."""
    return any(p.exists() and MARKER.encode() in p.read_bytes() for p in (path, Path(f"{path}.wal")))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _store_with_blanked_marker(db: Database) -> None:
    """A customer named MARKER, checkpointed uncompressed (so the bytes are findable), then blanked."""
    with db.connect() as con:
        con.execute("SET force_compression = 'uncompressed'")
        upserts.upsert_customers(con, [_customer_row(MARKER)])
        con.execute("CHECKPOINT")
        upserts.erase_customer(con, "c1", T1)
        con.execute("CHECKPOINT")


def _customer_row(name: str) -> dict:
    return customer_row(profile("c1", name=name), synced_at=T0, source_at=T0)


class TestRebuild:
    def test_erased_bytes_stay_in_the_file_until_the_rebuild(self, db):
        """Blanking a row and CHECKPOINT leave the old value in the file's free blocks; after
        rebuild() the value is in no byte of the store or its WAL."""
        _store_with_blanked_marker(db)
        assert on_disk(db.path)
        db.rebuild()
        assert not on_disk(db.path)
        with db.connect() as con:
            assert table(con, "customers", "id, name, deleted_at") == [("c1", None, T1)]

    def test_the_rebuilt_store_holds_the_same_schema_and_rows(self, db):
        """Tables, views, comments, constraints, sequences and every row survive the rebuild."""
        with db.transaction() as con:
            upserts.upsert_customers(con, [_customer_row("Ann")])
            con.execute("COMMENT ON TABLE customers IS 'people'")
            con.execute("CREATE SEQUENCE seq_test START 1")
            con.execute("SELECT nextval('seq_test')").fetchall()
        mine = "WHERE database_name = 'store'"
        catalog = {
            "tables": f"SELECT table_name, comment FROM duckdb_tables() {mine}",
            "views": f"SELECT view_name, sql FROM duckdb_views() {mine} AND NOT internal",
            "constraints": "SELECT table_name, constraint_type, constraint_column_names "
            f"FROM duckdb_constraints() {mine}",
            "columns": "SELECT table_name, column_name, data_type, column_default, is_nullable "
            f"FROM duckdb_columns() {mine}",
        }

        def snapshot() -> dict:
            with db.connect() as con:
                shape = {name: sorted(map(str, con.execute(sql).fetchall())) for name, sql in catalog.items()}
                rows = {
                    name: sorted(map(str, con.execute(f"SELECT * FROM {name}").fetchall()))
                    for (name, _comment) in con.execute(catalog["tables"]).fetchall()
                }
                return {**shape, **rows}

        before = snapshot()
        db.rebuild()
        assert snapshot() == before
        with db.connect() as con:
            assert con.execute("SELECT nextval('seq_test')").fetchall() == [(2,)]

    def test_rebuild_leaves_only_the_store(self, db):
        """No temp file, WAL or leftover of a crashed rebuild remains beside the store (only its
        hand-over lock files, which hold a PID); the store and the lock files are 0600."""
        _store_with_blanked_marker(db)
        crashed = db.path.with_name(f".{db.path.name}.{dead_pid()}.rebuild")
        crashed.write_bytes(b"half a copy")
        db.rebuild()
        locks = [f"{db.path.name}.writer", f"{db.path.name}.writer.gate"]
        assert sorted(p.name for p in db.path.parent.iterdir()) == sorted([db.path.name, *locks])
        assert {mode(db.path.parent / name) for name in [db.path.name, *locks]} == {0o600}

    def test_a_second_process_sees_the_rebuilt_store(self, db):
        """Another process opening the store after a rebuild reads the live rows from the new file."""
        with db.transaction() as con:
            upserts.upsert_customers(con, [_customer_row("Ann")])
        db.rebuild()
        with db.transaction() as con:
            con.execute("UPDATE customers SET name = 'Bea'")
        code = (
            "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
            "print(con.execute('SELECT name FROM customers').fetchall())"
        )
        done = subprocess.run([sys.executable, "-c", code, str(db.path)], capture_output=True, text=True)
        assert done.stdout.strip() == "[('Bea',)]", done.stderr

    def test_a_store_swapped_while_opening_is_opened_again(self, db, tmp_path, monkeypatch):
        """A process that opened the old file just as a rebuild swapped the new one in (and got the
        old file's lock when the rebuild let go) notices and opens the new file instead."""
        with db.transaction() as con:
            upserts.upsert_customers(con, [_customer_row("Old")])
        newer = Database(tmp_path / "newer.duckdb")
        with newer.transaction() as con:
            upserts.upsert_customers(con, [_customer_row("New")])
        real_attach, calls = Database._attach, []

        def attach_then_swap(self, con, read_only):
            real_attach(self, con, read_only)
            if not calls:
                os.replace(newer.path, db.path)  # the rebuild's swap, right after our open
            calls.append(read_only)

        monkeypatch.setattr(Database, "_attach", attach_then_swap)
        with db.connect(read_only=True) as con:
            assert table(con, "customers", "name") == [("New",)]
        assert calls == [True, True]


class TestErasureNote:
    def test_a_deleted_profile_is_noted(self, con):
        """erase_customer notes a pending erasure in the same transaction; clear_erasure removes it."""
        upserts.upsert_customers(con, [_customer_row("Ann")])
        assert not upserts.erasure_pending(con)
        upserts.erase_customer(con, "c1", T1)
        assert upserts.erasure_pending(con)
        upserts.clear_erasure(con)
        assert not upserts.erasure_pending(con)

    def test_erasing_an_unknown_customer_notes_nothing(self, con):
        """A deletion of a customer the store never held erases nothing and notes nothing."""
        assert upserts.erase_customer(con, "nobody", T1) == {
            "customers": 0,
            "conversations": 0,
            "conversation_items": 0,
        }
        assert not upserts.erasure_pending(con)

    @pytest.mark.parametrize(
        ("first", "second", "noted"),
        [
            ("hello", "", True),  # stored with content, now redacted
            ("", "", False),  # empty when first seen: not a redaction
            ("hello", "hello again", False),  # an edit is not an erasure
            (None, None, False),  # new only
        ],
    )
    def test_a_newly_redacted_item_is_noted(self, con, first, second, noted):
        """An item stored with its content and now read redacted notes an erasure; nothing else does."""
        upserts.upsert_conversations(con, [_conversation_row()])
        versions = [v for v in (first, second) if v is not None] or ["hello"]
        for text in versions:
            upserts.upsert_items(con, [_redactable(text)], source_at=T0, synced_at=T0)
        assert upserts.erasure_pending(con) is noted

    def test_erased_conversations_and_redacted_items_are_listed(self, con):
        """The outbox blanking reads the erased customers' conversations and the redacted items."""
        upserts.upsert_customers(con, [_customer_row("Ann")])
        upserts.upsert_conversations(con, [_conversation_row()])
        for text in ("hello", ""):  # stored with its body, then read back redacted
            upserts.upsert_items(con, [_redactable(text)], source_at=T0, synced_at=T0)
        assert upserts.redacted_item_ids(con) == ["i1"]
        assert upserts.erased_conversation_ids(con) == []
        upserts.erase_customer(con, "c1", T1)
        assert upserts.erased_conversation_ids(con) == ["v1"]


def _conversation_row() -> dict:
    return conversation_row(conversation("v1"), synced_at=T0, source_at=T0)


def _redactable(text: str) -> dict:
    """An email whose redaction empties its body (Gladly's shape: subject and body become "")."""
    raw = item("i1", kind="EMAIL", text=None)
    raw["content"].update({"subject": "" if text == "" else "Hi", "body": text})
    return raw


class TestPrivateFiles:
    def test_a_new_store_is_private_under_umask_022(self, tmp_path):
        """Through the Python API (the host's umask applies), the folders created for the store are
        0700 and the store 0600; an existing parent folder is left as it is."""
        with umask(0o022):
            db = Database(tmp_path / "a" / "b" / "gladly.duckdb")
            with db.transaction() as con:
                upserts.upsert_customers(con, [_customer_row("Ann")])
        assert (mode(tmp_path / "a"), mode(tmp_path / "a" / "b"), mode(db.path)) == (0o700, 0o700, 0o600)

    def test_the_snapshot_is_private(self, db, tmp_path):
        """A published snapshot (and the folder made for it) is 0600 / 0700 under umask 022."""
        with umask(0o022):
            snapshot = db.publish_snapshot(tmp_path / "read" / "snap.duckdb")
        assert (mode(snapshot.parent), mode(snapshot)) == (0o700, 0o600)

    def test_open_private_tightens_an_existing_file(self, tmp_path):
        """open_private creates 0600 and makes an existing looser file 0600."""
        loose = tmp_path / "lock"
        loose.write_text("")
        loose.chmod(0o644)
        os.close(open_private(loose, os.O_RDWR))
        assert mode(loose) == 0o600

    def test_make_private_walks_folders(self, tmp_path):
        """make_private makes a folder 0700 and the files in it 0600; missing paths are skipped."""
        with umask(0o022):
            folder = tmp_path / "spill"
            folder.mkdir()
            (folder / "block.tmp").write_bytes(b"x")
        make_private(folder, tmp_path / "missing")
        assert (mode(folder), mode(folder / "block.tmp")) == (0o700, 0o600)

    def test_private_folder_keeps_existing_folders(self, tmp_path):
        """private_folder creates the missing folders 0700 and changes no folder that existed."""
        tmp_path.chmod(0o755)
        private_folder(tmp_path / "x" / "y")
        assert (mode(tmp_path), mode(tmp_path / "x"), mode(tmp_path / "x" / "y")) == (0o755, 0o700, 0o700)


class TestDeadTempFiles:
    def test_only_dead_processes_files_are_removed(self, tmp_path):
        """<prefix><pid><suffix> files of exited processes go (with their WAL); a live process's
        file and unrelated names stay."""
        dead, live = dead_pid(), os.getpid()
        names = [
            f".snap.duckdb.{dead}.tmp",
            f".snap.duckdb.{dead}.tmp.wal",
            f".snap.duckdb.{live}.tmp",
            ".snap.duckdb.notapid.tmp",
            "snap.duckdb",
        ]
        for name in names:
            (tmp_path / name).write_bytes(b"x")
        removed = remove_dead_temp_files(tmp_path, ".snap.duckdb.", ".tmp")
        assert sorted(p.name for p in removed) == sorted(names[:2])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])

    def test_publish_removes_a_crashed_publish_temp_file(self, db, tmp_path):
        """The next publish removes the temp file of a publish whose process died."""
        snapshot = tmp_path / "snap.duckdb"
        crashed = tmp_path / f".snap.duckdb.{dead_pid()}.tmp"
        crashed.write_bytes(b"half a copy")
        db.publish_snapshot(snapshot)
        assert not crashed.exists()
        with duckdb.connect(str(snapshot), read_only=True) as reader:
            assert reader.execute("SELECT count(*) FROM customers").fetchall() == [(0,)]
