"""The analysts' views, comments and schema 2: conversation_metrics and daily_volume row by row on
literal rows, a COMMENT on every analyst column, and an older store migrated forward."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from gladly_sync.storage import schema, tables, upserts
from gladly_sync.storage.database import Database
from gladly_sync.storage.rows import organization_row

T = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 2026-03-01 22:00 in Los Angeles (PST, UTC-8)
MINUTE = timedelta(minutes=1)


def add_conversation(
    con: duckdb.DuckDBPyConnection,
    cid: str,
    *,
    created: datetime = T,
    status: str = "OPEN",
    closed: datetime | None = None,
    inbox: str = "inbox-email",
    deleted: datetime | None = None,
) -> None:
    con.execute(
        "INSERT INTO conversations (id, customer_id, inbox_id, status, created_at, closed_at, deleted_at) "
        "VALUES (?, 'customer-1', ?, ?, ?, ?, ?)",
        [cid, inbox, status, created, closed, deleted],
    )


def add_item(
    con: duckdb.DuckDBPyConnection,
    cid: str,
    iid: str,
    at: datetime,
    content_type: str,
    initiator: str = "CUSTOMER",
    *,
    status: str | None = None,
    deleted: datetime | None = None,
) -> None:
    content = {"type": content_type, **({"status": status} if status else {})}
    raw = {"id": iid, "conversationId": cid, "timestamp": at.isoformat(), "content": content}
    con.execute(
        "INSERT INTO conversation_items (id, conversation_id, timestamp, content_type, initiator_type, "
        "raw, deleted_at, redacted) VALUES (?, ?, ?, ?, ?, ?, ?, false)",
        [iid, cid, at, content_type, initiator, json.dumps(raw), deleted],
    )


def metrics(con: duckdb.DuckDBPyConnection, cid: str) -> dict:
    cursor = con.execute("SELECT * FROM conversation_metrics WHERE conversation_id = ?", [cid])
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


@pytest.fixture
def con(tmp_path):
    with Database(tmp_path / "store.duckdb").transaction() as connection:
        connection.execute("INSERT INTO inboxes (id, name) VALUES ('inbox-email', 'Email Support')")
        yield connection


class TestConversationMetrics:
    def test_a_closed_answered_conversation(self, con):
        """Channel, first response, resolution and counts follow SPEC's definitions."""
        add_conversation(con, "c1", status="CLOSED", closed=T + 90 * MINUTE)
        add_item(con, "c1", "i1", T, "EMAIL")
        add_item(con, "c1", "i2", T + 5 * MINUTE, "CONVERSATION_NOTE", "AGENT")
        add_item(con, "c1", "i3", T + 10 * MINUTE, "EMAIL", "AGENT")
        add_item(con, "c1", "i4", T + 20 * MINUTE, "EMAIL")
        add_item(con, "c1", "i5", T + 30 * MINUTE, "EMAIL", "AGENT")
        add_item(con, "c1", "i6", T + 90 * MINUTE, "CONVERSATION_STATUS_CHANGE", "AGENT", status="CLOSED")
        assert metrics(con, "c1") == {
            "conversation_id": "c1",
            "customer_id": "customer-1",
            "inbox_id": "inbox-email",
            "inbox_name": "Email Support",
            "status": "CLOSED",
            "channel": "EMAIL",
            "created_at": T,
            "first_customer_message_at": T,
            "first_response_at": T + 10 * MINUTE,
            "first_response_seconds": 600.0,
            "closed_at": T + 90 * MINUTE,
            "resolution_seconds": 5400.0,
            "reopen_count": 0,
            "customer_messages": 2,
            "agent_messages": 2,
            "notes": 1,
        }

    def test_channel_is_the_earliest_customer_message_and_agent_messages_before_it_are_no_response(self, con):
        """An agent's outbound message before the customer's first one is not a response."""
        add_conversation(con, "c1")
        add_item(con, "c1", "i1", T, "SMS", "AGENT")
        add_item(con, "c1", "i2", T + MINUTE, "CHAT_MESSAGE", "AUTOMATION")
        add_item(con, "c1", "i3", T + 2 * MINUTE, "WHATSAPP")
        add_item(con, "c1", "i4", T + 3 * MINUTE, "SMS")
        row = metrics(con, "c1")
        assert (row["channel"], row["first_customer_message_at"]) == ("WHATSAPP", T + 2 * MINUTE)
        assert (row["first_response_at"], row["first_response_seconds"]) == (None, None)
        assert (row["customer_messages"], row["agent_messages"]) == (2, 1)

    def test_the_response_must_be_strictly_after_the_first_customer_message(self, con):
        """An agent message with the same timestamp as the customer's is not its response."""
        add_conversation(con, "c1")
        add_item(con, "c1", "i1", T, "CHAT_MESSAGE")
        add_item(con, "c1", "i2", T, "CHAT_MESSAGE", "AGENT")
        add_item(con, "c1", "i3", T + timedelta(seconds=1.5), "CHAT_MESSAGE", "AGENT")
        assert metrics(con, "c1")["first_response_seconds"] == 1.5

    def test_reopens_count_only_after_a_first_close(self, con):
        """A status change to OPEN counts as a reopen only after an earlier change to CLOSED."""
        add_conversation(con, "c1", status="OPEN")
        add_item(con, "c1", "i1", T, "EMAIL")
        add_item(con, "c1", "i2", T + MINUTE, "CONVERSATION_STATUS_CHANGE", "AGENT", status="OPEN")
        add_item(con, "c1", "i3", T + 2 * MINUTE, "CONVERSATION_STATUS_CHANGE", "AGENT", status="CLOSED")
        add_item(con, "c1", "i4", T + 3 * MINUTE, "CONVERSATION_STATUS_CHANGE", "CUSTOMER", status="OPEN")
        add_item(con, "c1", "i5", T + 4 * MINUTE, "CONVERSATION_STATUS_CHANGE", "AGENT", status="CLOSED")
        add_item(con, "c1", "i6", T + 5 * MINUTE, "CONVERSATION_STATUS_CHANGE", "AGENT", status="OPEN")
        row = metrics(con, "c1")
        assert row["reopen_count"] == 2
        assert row["resolution_seconds"] is None  # not CLOSED now

    def test_deleted_items_are_ignored(self, con):
        """Items with deleted_at count nowhere: not as channel, response, message, note or reopen."""
        gone = T + timedelta(days=1)
        add_conversation(con, "c1")
        add_item(con, "c1", "i1", T, "PHONE_CALL", deleted=gone)
        add_item(con, "c1", "i2", T + MINUTE, "EMAIL")
        add_item(con, "c1", "i3", T + 2 * MINUTE, "EMAIL", "AGENT", deleted=gone)
        add_item(con, "c1", "i4", T + 3 * MINUTE, "CONVERSATION_NOTE", "AGENT", deleted=gone)
        add_item(con, "c1", "i5", T + 4 * MINUTE, "CONVERSATION_STATUS_CHANGE", status="CLOSED", deleted=gone)
        add_item(con, "c1", "i6", T + 5 * MINUTE, "CONVERSATION_STATUS_CHANGE", status="OPEN")
        row = metrics(con, "c1")
        assert (row["channel"], row["first_customer_message_at"], row["first_response_at"]) == (
            "EMAIL",
            T + MINUTE,
            None,
        )
        assert (row["customer_messages"], row["agent_messages"], row["notes"], row["reopen_count"]) == (
            1,
            0,
            0,
            0,
        )

    def test_a_conversation_without_items_has_zero_counts_and_no_channel(self, con):
        """Every stored conversation has a row, even before its items arrive."""
        add_conversation(con, "c1", inbox="unknown-inbox")
        row = metrics(con, "c1")
        assert (row["channel"], row["inbox_name"], row["customer_messages"], row["notes"]) == (
            None,
            None,
            0,
            0,
        )

    def test_erased_conversations_have_no_row(self, con):
        """A conversation with deleted_at (erased, or gone in a merge) is not in the view."""
        add_conversation(con, "c1", deleted=T + MINUTE)
        add_item(con, "c1", "i1", T, "EMAIL", deleted=T + MINUTE)
        assert con.execute("SELECT count(*) FROM conversation_metrics").fetchone() == (0,)


class TestOrganization:
    def test_the_store_keeps_one_organization_exactly_as_gladly_sent_it(self, con):
        """A refresh overwrites the row; an organization with another id replaces it."""
        first = {"id": "org-1", "name": "Demo", "timezone": "America/Los_Angeles", "gladlyUrl": "https://x"}
        upserts.replace_organization(con, organization_row(first, synced_at=T))
        moved = {"id": "org-2", "name": "Demo EU", "timezone": "Europe/Berlin", "loginDomain": "demo.eu"}
        upserts.replace_organization(con, organization_row(moved, synced_at=T + MINUTE))
        upserts.replace_organization(con, organization_row(moved, synced_at=T + 2 * MINUTE))
        rows = con.execute("SELECT id, name, timezone, raw, synced_at FROM organization").fetchall()
        assert [(*row[:3], json.loads(row[3]), row[4]) for row in rows] == [
            ("org-2", "Demo EU", "Europe/Berlin", moved, T + 2 * MINUTE)
        ]


class TestDailyVolume:
    def test_days_are_the_organizations_local_days(self, con):
        """One UTC day splits in two Los Angeles days; messages count under their conversation's
        inbox and channel."""
        con.execute(
            "INSERT INTO organization (id, name, timezone) VALUES ('org', 'Demo', 'America/Los_Angeles')"
        )
        add_conversation(con, "c1", created=T)  # 22:00 local, March 1
        add_item(con, "c1", "i1", T, "EMAIL")
        add_item(con, "c1", "i2", T + 3 * 60 * MINUTE, "SMS", "AGENT")  # 01:00 local, March 2
        add_item(con, "c1", "i3", T + 4 * 60 * MINUTE, "CONVERSATION_NOTE", "AGENT")
        add_conversation(con, "c2", created=T + 10 * 60 * MINUTE, inbox="inbox-chat")  # same UTC day
        add_item(con, "c2", "i4", T + 10 * 60 * MINUTE, "CHAT_MESSAGE")
        rows = con.execute("SELECT * FROM daily_volume").fetchall()
        assert rows == [
            (date(2026, 3, 1), "inbox-email", "EMAIL", 1, 1, 0),
            (date(2026, 3, 2), "inbox-chat", "CHAT_MESSAGE", 1, 1, 0),
            (date(2026, 3, 2), "inbox-email", "EMAIL", 0, 0, 1),
        ]

    def test_days_are_utc_until_the_organization_is_known(self, con):
        """Without an organization row the view still works, in UTC."""
        add_conversation(con, "c1", created=T)
        add_item(con, "c1", "i1", T, "EMAIL")
        assert con.execute("SELECT * FROM daily_volume").fetchall() == [
            (date(2026, 3, 2), "inbox-email", "EMAIL", 1, 1, 0)
        ]

    def test_the_time_zone_needs_no_download(self):
        """DuckDB's ICU (time zones) is linked into the wheel: it works with extension loading off."""
        plain = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        loaded = plain.execute(
            "SELECT loaded, install_mode FROM duckdb_extensions() WHERE extension_name = 'icu'"
        ).fetchone()
        local = plain.execute(
            "SELECT CAST(TIMESTAMPTZ '2026-03-02 06:00:00+00' AT TIME ZONE 'America/Los_Angeles' AS DATE)"
        ).fetchone()
        assert loaded == (True, "STATICALLY_LINKED") and local == (date(2026, 3, 1),)


ANALYST = {**tables.ANALYST_TABLES, **tables.ANALYST_VIEWS}


def described(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str | None, dict[str, str | None]]]:
    """Every relation of the store: its comment and its columns' comments."""
    found: dict[str, tuple[str | None, dict[str, str | None]]] = {}
    for name, comment in con.execute(
        "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = current_database() "
        "UNION ALL SELECT view_name, comment FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall():
        found[name] = (comment, {})
    for name, column, comment in con.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() "
        "WHERE database_name = current_database()"
    ).fetchall():
        found[name][1][column] = comment
    return found


class TestComments:
    def test_every_analyst_table_view_and_column_has_a_comment(self, tmp_path):
        """Each analyst relation and each of its columns carries the comment written in tables.py."""
        with Database(tmp_path / "store.duckdb").connect() as con:
            found = described(con)
        analyst = {name: found[name] for name in found if name not in tables.BOOKKEEPING_TABLES}
        # the outbox lives in its own database; the snapshot's copy carries its comments
        # (tests/outbox/test_outbox_database.py)
        assert set(analyst) == set(ANALYST) - {"outbox"}, (
            "describe each new table in storage/tables.py: ANALYST_TABLES (with a comment per column) "
            "or BOOKKEEPING_TABLES"
        )
        for name, (comment, columns) in analyst.items():
            assert comment == ANALYST[name].comment
            assert columns == ANALYST[name].columns, name
            assert all(text and text.strip() for text in columns.values()), name

    def test_bookkeeping_tables_say_so(self, tmp_path):
        """Tables analysts need not read are labelled as gladly-sync bookkeeping."""
        with Database(tmp_path / "store.duckdb").connect() as con:
            found = described(con)
        for name, comment in tables.BOOKKEEPING_TABLES.items():
            assert comment.startswith("gladly-sync bookkeeping:")
            if name != "run_progress":  # PostgreSQL only (tests/postgres/test_database.py)
                assert found[name][0] == comment

    def test_comments_survive_reopening_and_the_snapshot(self, tmp_path):
        """Comments are stored in the file: a later connection and the published snapshot show them."""
        db = Database(tmp_path / "store.duckdb")
        with db.connect():
            pass
        snapshot = db.publish_snapshot(tmp_path / "read.duckdb")
        with duckdb.connect(str(snapshot), read_only=True) as plain:
            comment = plain.execute(
                "SELECT comment FROM duckdb_columns() "
                "WHERE table_name = 'conversation_metrics' AND column_name = 'reopen_count'"
            ).fetchone()
        assert comment == (ANALYST["conversation_metrics"].columns["reopen_count"],)


class TestSchemaTwo:
    def test_a_version_one_store_gains_organization_views_and_comments(self, tmp_path):
        """A store written before the analyst release migrates forward and keeps its rows."""
        path = tmp_path / "old.duckdb"
        with duckdb.connect() as old:
            old.execute(f"ATTACH '{path}' AS old (STORAGE_VERSION 'v1.2.0')")
            old.execute("USE old")
            schema.MIGRATIONS[0][2](old)  # what version 1 created, as it did then:
            old.execute("DROP TABLE organization")  # no organization table, no comments
            old.execute("INSERT INTO schema_version VALUES (1, now())")
            old.execute("INSERT INTO conversations (id, status, created_at) VALUES ('c1', 'OPEN', ?)", [T])
            assert old.execute(
                "SELECT count(*) FROM duckdb_columns() WHERE comment IS NOT NULL"
            ).fetchone() == (0,)
        with Database(path).connect() as con:
            assert schema.stored_version(con) == tables.SCHEMA_VERSION == schema.MIGRATIONS[-1][0]
            found = described(con)
            assert con.execute("SELECT conversation_id FROM conversation_metrics").fetchall() == [("c1",)]
        assert {"organization", "conversation_metrics", "daily_volume"} <= set(found)
        assert found["daily_volume"][1]["local_date"] == ANALYST["daily_volume"].columns["local_date"]
