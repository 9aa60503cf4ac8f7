"""Opening the store: storage version, migrations, the lock, transactions and snapshots."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from gladly_sync.storage import schema
from gladly_sync.storage.database import Database, lock_holder_pid
from gladly_sync.storage.tables import ANALYST_VIEWS, SCHEMA_VERSION

from gladly_sync.errors import DatabaseLocked, NotFound, SchemaTooNew

from .conftest import table


@pytest.fixture
def backend() -> str:
    """The DuckDB file's own rules (file locks, snapshots); tests/postgres/ holds PostgreSQL's."""
    return "duckdb"

TABLES = [
    "agents",
    "conversation_items",
    "conversations",
    "customers",
    "events",
    "export_jobs",
    "export_skipped_lines",
    "inboxes",
    "organization",
    "schema_version",
    "scope_exclusions",
    "skipped_events",
    "sync_runs",
    "sync_state",
    "topics",
]


def _holder(path: Path, *, read_only: bool = False) -> subprocess.Popen:
    """Another process holding ``path`` open until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import sys, duckdb
        con = duckdb.connect({str(path)!r}, read_only={read_only})
        print("open", flush=True)
        for line in sys.stdin:
            print(con.execute(line).fetchall(), flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def _ask(proc: subprocess.Popen, sql: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(sql + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _release(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()


class FakeTime:
    """An injected clock and sleep: sleeping advances the clock."""

    def __init__(self, on_sleep=None):
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


class TestSchema:
    def test_first_connect_creates_every_table_and_view(self, db):
        """The first connection creates the tables of storage/tables.py, the views and schema_version."""
        with db.connect() as con:
            tables = [
                r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
            ]
            views = [
                r[0]
                for r in con.execute(
                    "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1"
                ).fetchall()
            ]
            versions = table(con, "schema_version", "version")
        assert tables == TABLES
        assert views == sorted(ANALYST_VIEWS)
        assert versions == [(version,) for version, _, _ in schema.MIGRATIONS]

    def test_parent_folders_are_created(self, tmp_path):
        """connect() creates the store's folders."""
        path = tmp_path / "a" / "b" / "store.duckdb"
        with Database(path).connect():
            pass
        assert path.exists()

    def test_store_is_readable_by_duckdb_1_2_and_later(self, db):
        """The file is written in storage version v1.2.0, so the DuckDB 1.5 CLI can open it."""
        with db.transaction() as con:
            con.execute("INSERT INTO sync_state VALUES ('events', 'x', now())")
        with duckdb.connect(str(db.path), read_only=True) as plain:
            tags = plain.execute(
                "SELECT tags FROM duckdb_databases() WHERE database_name = current_database()"
            ).fetchone()[0]
        header = db.path.read_bytes()[:20]
        assert tags["storage_version"] == "v1.2.0+"
        assert header[8:12] == b"DUCK"
        assert struct.unpack("<Q", header[12:20])[0] == 65  # v1.2.0; DuckDB 1.5 reads 64..68

    def test_migration_list_ends_at_schema_version(self):
        """The newest migration is the SCHEMA_VERSION that tables.py declares."""
        assert schema.MIGRATIONS[-1][0] == SCHEMA_VERSION

    def test_older_store_is_migrated_forward(self, db):
        """A store at an older version gets the newer migrations, in order, each recorded."""
        with db.connect():
            pass
        applied = []
        now = SCHEMA_VERSION

        def add_column(con):
            applied.append(now + 1)
            con.execute("ALTER TABLE customers ADD COLUMN IF NOT EXISTS nickname VARCHAR")

        def add_view(con):
            applied.append(now + 2)
            con.execute("CREATE OR REPLACE VIEW nicknames AS SELECT id, nickname FROM customers")

        migrations = [*schema.MIGRATIONS, (now + 1, "nickname", add_column), (now + 2, "view", add_view)]
        with duckdb.connect(str(db.path)) as con:
            assert schema.migrate(con, migrations) == now + 2
            assert schema.migrate(con, migrations) == now + 2
            assert table(con, "schema_version", "version") == [(v,) for v in range(1, now + 3)]
            assert con.execute("SELECT * FROM nicknames").fetchall() == []
        assert applied == [now + 1, now + 2]

    def test_a_version_2_store_gets_the_skipped_lines_table(self, db):
        """A store written before export lines were recorded gets ``export_skipped_lines`` on open."""
        with db.connect() as con:  # back to version 2
            con.execute("DROP TABLE export_skipped_lines")
            con.execute("DELETE FROM schema_version WHERE version > 2")
        with Database(db.path).connect() as con:
            assert table(con, "export_skipped_lines", "count(*)") == [(0,)]
            assert table(con, "schema_version", "version")[-1] == (SCHEMA_VERSION,)

    def test_failed_migration_leaves_the_store_at_its_version(self, db):
        """A migration that fails is rolled back and not recorded."""
        with db.connect():
            pass

        def broken(con):
            con.execute("ALTER TABLE customers ADD COLUMN half_done VARCHAR")
            raise RuntimeError("boom")

        with duckdb.connect(str(db.path)) as con:
            with pytest.raises(RuntimeError):
                schema.migrate(con, [*schema.MIGRATIONS, (SCHEMA_VERSION + 1, "broken", broken)])
            assert schema.stored_version(con) == SCHEMA_VERSION
            columns = [r[0] for r in con.execute("DESCRIBE customers").fetchall()]
        assert "half_done" not in columns

    @pytest.mark.parametrize("read_only", [False, True])
    def test_newer_store_is_refused(self, db, read_only):
        """A store written by a newer gladly-sync raises SchemaTooNew naming both versions."""
        with db.connect() as con:
            con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
        fresh = Database(db.path)
        with pytest.raises(SchemaTooNew) as caught, fresh.connect(read_only=read_only):
            pass
        message = str(caught.value)
        assert f"schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}" in message
        assert "upgrade gladly-sync" in message
        assert str(db.path) in message
        assert caught.value.exit_code == 2

    def test_read_only_connect_needs_an_existing_store(self, tmp_path):
        """Reading a store that does not exist says so instead of creating it."""
        path = tmp_path / "missing.duckdb"
        with pytest.raises(NotFound), Database(path).connect(read_only=True):
            pass
        assert not path.exists()


class TestLock:
    def test_pid_is_parsed_from_duckdbs_message(self):
        """The holder's PID comes from DuckDB's 'Conflicting lock' message."""
        message = (
            'IO Error: Could not set lock on file "/d/g.duckdb": Conflicting lock is held in '
            "/usr/bin/python3.11 (PID 3586). See also https://duckdb.org/docs/current/connect/concurrency"
        )
        assert lock_holder_pid(message) == 3586
        assert lock_holder_pid("no pid here") is None

    def test_locked_store_raises_database_locked_with_the_pid(self, db):
        """A writer retries with growing jittered sleeps until lock_wait_seconds, then names the holder."""
        with db.connect():
            pass
        holder = _holder(db.path)
        try:
            fake = FakeTime()
            waiting = Database(db.path, lock_wait_seconds=2, sleep=fake.sleep, clock=fake.clock)
            with pytest.raises(DatabaseLocked) as caught, waiting.connect():
                pass
        finally:
            _release(holder)
        assert caught.value.holder_pid == holder.pid
        assert f"process {holder.pid}" in str(caught.value)
        assert caught.value.waited_seconds == pytest.approx(2)
        assert caught.value.exit_code == 4
        assert all(0.01 <= s <= 0.2 for s in fake.sleeps[:-1])
        assert fake.sleeps[0] <= 0.02 and max(fake.sleeps) > 0.1
        assert sum(fake.sleeps) == pytest.approx(2)

    def test_lock_released_while_waiting_lets_the_writer_in(self, db):
        """When the holder closes during the retries, the writer connects and proceeds."""
        with db.connect():
            pass
        holder = _holder(db.path)
        fake = FakeTime(on_sleep=lambda n: _release(holder) if n == 3 else None)
        waiting = Database(db.path, lock_wait_seconds=30, sleep=fake.sleep, clock=fake.clock)
        with waiting.transaction() as con:
            con.execute("INSERT INTO sync_state VALUES ('events', 'c', now())")
        assert len(fake.sleeps) == 3
        assert holder.returncode == 0

    def test_connection_is_closed_after_the_block(self, db):
        """Leaving connect() releases the file: another process can open it."""
        with db.connect():
            pass
        other = _holder(db.path)
        _release(other)
        assert other.returncode == 0


class TestEngine:
    def test_orm_reads_and_keeps_no_connection_open(self, db):
        """engine() serves ORM reads (content derived from raw) and releases the file after each."""
        from gladly_sync.storage.tables import ConversationItem
        from sqlmodel import Session, select

        with db.transaction() as con:
            con.execute(
                "INSERT INTO conversation_items (id, redacted, raw) VALUES ('i1', false, ?)",
                ['{"id":"i1","content":{"type":"SMS","content":"hi"}}'],
            )
        engine = db.engine()
        with Session(engine) as session:
            [row] = session.exec(select(ConversationItem)).all()
        other = _holder(db.path)
        _release(other)
        engine.dispose()
        assert (row.id, row.content, other.returncode) == ("i1", {"type": "SMS", "content": "hi"}, 0)


class TestTransaction:
    def test_commit_keeps_the_rows(self, db):
        """A block that succeeds commits."""
        with db.transaction() as con:
            con.execute("INSERT INTO sync_state VALUES ('events', 'c1', now())")
        with db.connect() as con:
            assert table(con, "sync_state", "stream, cursor") == [("events", "c1")]

    def test_rollback_leaves_nothing(self, db):
        """An exception inside the block rolls back every write in it."""
        with pytest.raises(RuntimeError), db.transaction() as con:
            con.execute("INSERT INTO sync_state VALUES ('events', 'c1', now())")
            con.execute("INSERT INTO inboxes (id, name) VALUES ('i1', 'Email')")
            raise RuntimeError("network went away")
        with db.connect() as con:
            assert table(con, "sync_state", "*") == []
            assert table(con, "inboxes", "*") == []


class TestSnapshot:
    def test_publish_copies_a_consistent_file(self, db, tmp_path):
        """The snapshot holds everything committed, including what was still in the WAL."""
        snapshot = tmp_path / "read" / "snap.duckdb"
        with db.transaction() as con:
            con.execute("INSERT INTO inboxes (id, name) VALUES ('i1', 'Email')")
        assert db.publish_snapshot(snapshot) == snapshot
        with duckdb.connect(str(snapshot), read_only=True) as reader:
            assert reader.execute("SELECT id, name FROM inboxes").fetchall() == [("i1", "Email")]
        assert [p.name for p in snapshot.parent.iterdir()] == ["snap.duckdb"]

    def test_publish_while_a_reader_holds_the_old_snapshot(self, db, tmp_path):
        """Another process reading the old snapshot neither blocks the publish nor sees it change;
        a new reader sees the new data."""
        snapshot = tmp_path / "snap.duckdb"
        with db.transaction() as con:
            con.execute("INSERT INTO inboxes (id, name) VALUES ('i1', 'Email')")
        db.publish_snapshot(snapshot)
        reader = _holder(snapshot, read_only=True)
        try:
            with db.transaction() as con:
                con.execute("INSERT INTO inboxes (id, name) VALUES ('i2', 'Chat')")
            db.publish_snapshot(snapshot)
            old_view = _ask(reader, "SELECT count(*) FROM inboxes")
        finally:
            _release(reader)
        with duckdb.connect(str(snapshot), read_only=True) as fresh:
            assert fresh.execute("SELECT count(*) FROM inboxes").fetchall() == [(2,)]
        assert old_view == "[(1,)]"


def _hog(path: Path, *, batch_seconds: float, batches: int) -> subprocess.Popen:
    """Another process writing batch after batch through the product (no pause between them): it
    prints 'started' inside its first transaction and each batch's end time."""
    code = textwrap.dedent(
        f"""
        import time
        from gladly_sync.storage.database import Database
        db = Database({str(path)!r})
        for n in range({batches}):
            with db.transaction() as con:
                if n == 0:
                    print("started", flush=True)
                con.execute("INSERT INTO sync_state VALUES ('hog', ?, now()) "
                            "ON CONFLICT (stream) DO UPDATE SET cursor = excluded.cursor", [str(n)])
                time.sleep({batch_seconds})
        print("done", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    return proc


class TestHandover:
    def test_a_waiting_process_gets_the_store_within_one_write_batch(self, db):
        """A writer committing batch after batch hands the store to a waiting process after the
        batch in progress, not after all of them."""
        with db.connect():
            pass
        hog = _hog(db.path, batch_seconds=0.4, batches=25)  # 10 s of back-to-back transactions
        try:
            waits = []
            for _ in range(3):
                started = time.monotonic()
                with Database(db.path, lock_wait_seconds=30).transaction() as con:
                    waits.append(time.monotonic() - started)
                    hog_batch = con.execute("SELECT cursor FROM sync_state WHERE stream = 'hog'").fetchone()
            assert hog.poll() is None, "the hog finished: the waits were not measured against it"
        finally:
            hog.kill()
            hog.wait(timeout=10)
            hog.stdout.close()
        assert hog_batch is not None
        assert max(waits) < 1.2, waits  # one batch is 0.4 s; starvation would be up to 10 s

    def test_a_turn_held_past_lock_wait_seconds_names_the_holder(self, db):
        """A product process holding the store past lock_wait_seconds: DatabaseLocked (exit 4), its PID."""
        with db.connect():
            pass
        hog = _hog(db.path, batch_seconds=5, batches=1)
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseLocked) as caught, Database(db.path, lock_wait_seconds=0.5).connect():
                pass
            waited = time.monotonic() - started
        finally:
            hog.kill()
            hog.wait(timeout=10)
            hog.stdout.close()
        assert caught.value.holder_pid == hog.pid and caught.value.exit_code == 4
        assert 0.5 <= waited < 2.5

    def test_the_store_is_free_again_after_an_abandoned_wait(self, db):
        """A wait that gave up leaves no lock behind: the next connect gets the store at once."""
        with db.connect():
            pass
        hog = _hog(db.path, batch_seconds=1.0, batches=1)
        try:
            with pytest.raises(DatabaseLocked), Database(db.path, lock_wait_seconds=0.2).connect():
                pass
            assert hog.stdout.readline().strip() == "done"
        finally:
            hog.wait(timeout=10)
            hog.stdout.close()
        time.sleep(0.1)  # the abandoned helper thread releases as soon as the kernel grants it
        started = time.monotonic()
        with Database(db.path, lock_wait_seconds=5).connect():
            pass
        assert time.monotonic() - started < 1.0

    def test_readers_share_the_turn(self, db):
        """Two read-only connections of different processes are open at the same time."""
        with db.connect():
            pass
        code = textwrap.dedent(
            f"""
            import sys
            from gladly_sync.storage.database import Database
            with Database({str(db.path)!r}, lock_wait_seconds=0.5).connect(read_only=True) as con:
                print(con.execute("SELECT 1").fetchone()[0], flush=True)
            """
        )
        with db.connect(read_only=True):
            other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert (other.returncode, other.stdout.strip()) == (0, "1"), other.stderr
