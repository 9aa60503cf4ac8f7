"""The PostgreSQL store: schema, types, connections, lock errors and job locks (advisory locks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import psycopg
import pytest
from gladly_sync.storage import schema, upserts
from gladly_sync.storage.liveness import this_host
from gladly_sync.storage.outbox.bridge import outbox_for_store
from gladly_sync.storage.postgres import PostgresDatabase
from gladly_sync.storage.postgres_sql import translate
from gladly_sync.storage.tables import ANALYST_TABLES, ANALYST_VIEWS, BOOKKEEPING_TABLES, SCHEMA_VERSION
from gladly_sync.sync.runs import RunHandle, run_alive

from gladly_sync.errors import DatabaseLocked, JobAlreadyRunning, NotFound, SchemaTooNew, StorageError
from tests.storage.test_database import TABLES

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(postgres_schema) -> PostgresDatabase:
    return PostgresDatabase(
        postgres_schema.url, schema=postgres_schema.schema, organization="acme", lock_wait_seconds=1
    )


def _columns(url: str, schema: str, table: str) -> dict[str, str]:
    with psycopg.connect(url) as con:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            [schema, table],
        ).fetchall()
    return dict(rows)


class TestSchema:
    def test_first_connect_creates_every_table_and_view_in_the_schema(self, db, postgres_schema):
        """The first connection creates the tables of storage/tables.py, the views, schema_version
        and run_progress (PostgreSQL's place for a running run's progress), all in storage.schema."""
        with db.connect():
            pass
        with psycopg.connect(postgres_schema.url) as con:
            tables = con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
                [postgres_schema.schema],
            ).fetchall()
            views = con.execute(
                "SELECT table_name FROM information_schema.views WHERE table_schema = %s ORDER BY 1",
                [postgres_schema.schema],
            ).fetchall()
            public = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert [t for (t,) in tables] == sorted([*TABLES, "run_progress"])
        assert [v for (v,) in views] == sorted(ANALYST_VIEWS)
        assert public == (0,)
        with db.connect() as con:
            versions = con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert versions == [(version,) for version, _, _ in schema.MIGRATIONS]

    def test_analyst_tables_and_views_carry_comments(self, db, postgres_schema):
        """Every analyst table (the outbox too, once it is opened), view and column described in
        storage/tables.py has its COMMENT, and every bookkeeping table says it is one."""
        with db.connect():
            pass
        with outbox_for_store(db).connect():
            pass
        with psycopg.connect(postgres_schema.url) as con:
            con.execute(f'SET search_path TO "{postgres_schema.schema}"')
            for name, text in BOOKKEEPING_TABLES.items():
                comment = con.execute("SELECT obj_description(%s::regclass, 'pg_class')", [name]).fetchone()
                assert comment == (text,)
            for name, description in {**ANALYST_TABLES, **ANALYST_VIEWS}.items():
                comment = con.execute("SELECT obj_description(%s::regclass, 'pg_class')", [name]).fetchone()
                assert comment == (description.comment,)
                for column, text in description.columns.items():
                    found = con.execute(
                        "SELECT col_description(%s::regclass, a.attnum) FROM pg_attribute AS a "
                        "WHERE a.attrelid = %s::regclass AND a.attname = %s",
                        [name, name, column],
                    ).fetchone()
                    assert found == (text,), (name, column)

    def test_types(self, db, postgres_schema):
        """raw is json (not jsonb), times are timestamptz, topic ids a text array."""
        with db.connect():
            pass
        conversations = _columns(postgres_schema.url, postgres_schema.schema, "conversations")
        items = _columns(postgres_schema.url, postgres_schema.schema, "conversation_items")
        assert (conversations["raw"], conversations["created_at"], conversations["topic_ids"]) == (
            "json",
            "timestamp with time zone",
            "ARRAY",
        )
        assert (items["raw"], items["content"], items["timestamp"]) == (
            "json",
            "json",
            "timestamp with time zone",
        )

    def test_raw_is_text_identical(self, db):
        """raw comes back byte for byte as written: spacing, key order, escapes and duplicates kept."""
        raw = '{"id": "e1",  "b":1, "a" : "h\\u00e9 \u2028", "a": 2}'
        with db.transaction() as con:
            con.execute("INSERT INTO events (id, raw) VALUES (?, ?)", ["e1", raw])
        with db.connect() as con:
            assert con.execute("SELECT raw FROM events").fetchone() == (raw,)

    def test_second_database_object_and_concurrent_first_connects(self, db, postgres_schema):
        """Two processes' first connects on a fresh schema migrate it once."""
        others = [PostgresDatabase(postgres_schema.url, schema=postgres_schema.schema) for _ in range(3)]
        for other in others:
            with other.connect():
                pass
        with db.connect() as con:
            assert con.execute("SELECT count(*) FROM schema_version").fetchone() == (len(schema.MIGRATIONS),)

    def test_newer_store_is_refused(self, db, postgres_schema):
        """A store written by a newer gladly-sync raises SchemaTooNew naming both versions (exit 2)."""
        with db.connect() as con:
            con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
        for read_only in (False, True):
            fresh = PostgresDatabase(postgres_schema.url, schema=postgres_schema.schema)
            with pytest.raises(SchemaTooNew) as caught, fresh.connect(read_only=read_only):
                pass
            assert f"schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}" in str(caught.value)
            assert caught.value.exit_code == 2

    def test_read_only_connect_needs_an_existing_store(self, db):
        """Reading a store that does not exist says so instead of creating it; a read-only
        connection refuses writes."""
        with pytest.raises(NotFound, match="run `gladly-sync sync` first"), db.connect(read_only=True):
            pass
        with db.connect():
            pass
        reader = PostgresDatabase(db.url, schema=db.schema)
        with reader.connect(read_only=True) as con, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            con.execute("INSERT INTO sync_state VALUES ('x', 'y', now())")


class TestConnections:
    def test_nested_connect_reuses_the_connection(self, db):
        """A nested connect() in the same thread sees the open transaction (one connection)."""
        with db.transaction() as con:
            upserts.save_cursor(con, "events", "a", T0)
            with db.connect() as inner:
                assert inner is con
                assert upserts.load_cursor(inner, "events") == "a"

    def test_rollback_on_error(self, db):
        """An exception inside transaction() rolls back everything it wrote."""
        with pytest.raises(RuntimeError), db.transaction() as con:
            upserts.save_cursor(con, "events", "a", T0)
            raise RuntimeError("boom")
        with db.connect() as con:
            assert upserts.load_cursor(con, "events") is None

    def test_unreachable_server_is_a_storage_error_without_the_password(self, postgres_cluster):
        """A server that does not answer is a StorageError naming the URL, never its password."""
        url = "postgresql://gladly:pw-77-SECRET@127.0.0.1:1/gladly?connect_timeout=2"
        with pytest.raises(StorageError) as caught, PostgresDatabase(url).connect():
            pass
        message = str(caught.value)
        assert "cannot connect to PostgreSQL at postgresql://gladly:***@127.0.0.1:1/gladly" in message
        assert "pw-77-SECRET" not in message + repr(PostgresDatabase(url))

    def test_a_lock_held_past_lock_wait_is_database_locked(self, db):
        """A row lock held longer than storage.lock_wait_seconds raises DatabaseLocked (exit 4)."""
        with db.transaction() as con:
            upserts.save_cursor(con, "events", "a", T0)
        holder = psycopg.connect(db.url, autocommit=False)
        try:
            holder.execute(f'SET search_path TO "{db.schema}"')
            holder.execute("UPDATE sync_state SET cursor = 'b'")
            started = time.monotonic()
            with pytest.raises(DatabaseLocked) as caught, db.transaction() as con:
                upserts.save_cursor(con, "events", "c", T0)
            assert 0.9 <= time.monotonic() - started < 10
            assert caught.value.exit_code == 4
        finally:
            holder.rollback()
            holder.close()


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from gladly_sync.storage.postgres import PostgresDatabase
    db = PostgresDatabase(sys.argv[1], organization=sys.argv[2])
    with db.job_lock("sync"):
        print("held", flush=True)
        time.sleep(600)
    """
)


class TestJobLock:
    def test_one_holder_per_organization_and_job(self, db, postgres_schema):
        """A job's advisory lock is held by one session; the same job of another organization and
        another job of the same organization are free."""
        other_org = PostgresDatabase(postgres_schema.url, organization="globex")
        with db.job_lock("sync"):
            with pytest.raises(JobAlreadyRunning) as caught, db.job_lock("sync"):
                pass
            assert caught.value.holder_pid == os.getpid()
            with db.job_lock("drain"), other_org.job_lock("sync"):
                pass
        with db.job_lock("sync"):
            pass

    def test_a_dead_holder_releases_the_lock(self, db):
        """When the holding process is killed (-9), its session ends and the lock is free again."""
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, db.url, "acme"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "held"
            with pytest.raises(JobAlreadyRunning) as caught, db.job_lock("sync"):
                pass
            assert caught.value.holder_pid == proc.pid
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with db.job_lock("sync"):
                    break
            except JobAlreadyRunning:
                assert time.monotonic() < deadline, "the dead holder's lock was never released"
                time.sleep(0.05)


class TestRunLiveness:
    """A host tells whether another host's ``running`` run is alive by its hold on the job's lock."""

    def test_the_holder_of_the_job_lock_is_alive_and_no_one_else(self, db):
        """While this process holds sync's lock, (this host, this pid) holds it; another host with
        the same pid, another job, and this process after it let go do not."""
        me = (this_host(), os.getpid())
        with db.job_lock("sync"):
            assert db.job_lock_held_by("sync", *me)
            assert not db.job_lock_held_by("sync", "another-host", os.getpid())
            assert not db.job_lock_held_by("drain", *me)
        assert not db.job_lock_held_by("sync", *me)

    def test_another_hosts_run_is_judged_by_the_lock_not_by_our_pids(self, db):
        """A run recorded by another host with our own (live) pid is dead once no one holds the
        lock; a run of ours is judged by our process table."""
        assert run_alive(db, "sync", os.getpid(), "another-host") is False
        assert run_alive(db, "sync", os.getpid(), this_host()) is True
        assert run_alive(db, "sync", 2**22 + 12345, this_host()) is False


class TestRunProgress:
    def test_a_running_runs_progress_is_seen_from_any_host(self, db, postgres_schema):
        """A run's progress is kept in the store (run_progress), where another host's ``status``
        reads it; a newer run's progress replaces it, and the run's end removes it."""
        elsewhere = PostgresDatabase(postgres_schema.url, schema=postgres_schema.schema)
        run = RunHandle(run_id="r1", job="sync", started_at=datetime.now(UTC), store=db)
        run.report_progress({"stage": "resolving", "jobs_total": 3}, force=True)
        assert elsewhere.load_progress("sync", "r1") == {"stage": "resolving", "jobs_total": 3}
        assert elsewhere.load_progress("sync", "r0") is None
        assert elsewhere.load_progress("drain", "r1") is None
        run.clear_progress()
        assert elsewhere.load_progress("sync", "r1") is None


class TestTranslation:
    @pytest.mark.parametrize(
        "duckdb_sql,params,postgres_sql,postgres_params",
        [
            (
                "SELECT * FROM t WHERE a = ? AND b LIKE 'x%?'",
                [1],
                "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%?'",
                [1],
            ),
            (
                "SELECT id FROM e WHERE id IN (SELECT unnest($1::VARCHAR[])) "
                "OR x IN (SELECT unnest($1::VARCHAR[]))",
                [["a"]],
                "SELECT id FROM e WHERE id IN (SELECT unnest(%(p1)s::VARCHAR[])) "
                "OR x IN (SELECT unnest(%(p1)s::VARCHAR[]))",
                {"p1": ["a"]},
            ),
            (
                "SELECT $at, json_extract(raw, '$.content')",
                {"at": 1},
                "SELECT %(at)s, json_extract(raw, '$.content')",
                {"at": 1},
            ),
            (
                "INSERT INTO x (id) SELECT id FROM (SELECT * EXCLUDE (_ord) FROM s "
                "QUALIFY row_number() OVER (PARTITION BY id ORDER BY _ord DESC) = 1) ON CONFLICT DO NOTHING",
                None,
                "INSERT INTO x (id) SELECT id FROM (SELECT DISTINCT ON (id) * FROM s "
                "ORDER BY id, _ord DESC) AS last_wins ON CONFLICT DO NOTHING",
                None,
            ),
            (
                "SELECT job, run_id FROM sync_runs\n"
                "QUALIFY row_number() OVER (PARTITION BY job ORDER BY started_at DESC) = 1\n"
                "ORDER BY job",
                None,
                "SELECT DISTINCT ON (job) job, run_id FROM sync_runs ORDER BY job, started_at DESC",
                None,
            ),
        ],
    )
    def test_statements(self, duckdb_sql, params, postgres_sql, postgres_params):
        """Placeholders, last-version-wins QUALIFY and its alias are translated; literals are kept."""
        assert translate(duckdb_sql, params) == [(postgres_sql, postgres_params)]

    def test_create_or_replace_temp_table(self):
        """CREATE OR REPLACE TEMP TABLE becomes a drop and a create."""
        assert translate("CREATE OR REPLACE TEMP TABLE k AS SELECT 1") == [
            ("DROP TABLE IF EXISTS pg_temp.k", None),
            ("CREATE TEMP TABLE k AS SELECT 1", None),
        ]


class TestSnapshot:
    def test_publish_is_a_no_op(self, db, tmp_path):
        """There is no snapshot file on PostgreSQL: readers connect to the server."""
        assert db.publish_snapshot(tmp_path / "read.duckdb") is None
        assert list(tmp_path.iterdir()) == []


class TestEngine:
    def test_orm_reads_the_schema(self, db):
        """engine() reads the store's tables through SQLAlchemy (schema on the search path)."""
        from sqlalchemy import text

        with db.transaction() as con:
            upserts.save_cursor(con, "events", "a", T0)
        engine = db.engine()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT stream, cursor FROM sync_state")).fetchall() == [
                ("events", "a")
            ]
        engine.dispose()
