"""Writes to the store, checked as whole tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from gladly_sync.storage import upserts
from gladly_sync.storage.rows import conversation_row, customer_row, export_customer_row, inbox_row, topic_row

from .conftest import T0, T1, T2, parsed, table


def profile(cid: str, name: str = "Ann", **extra) -> dict:
    return {
        "id": cid,
        "name": name,
        "emails": [{"original": f"{cid}@x.com", "normalized": f"{cid}@x.com", "primary": True}],
        "phones": [],
        "customAttributes": {"tier": "gold"},
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-02T00:00:00Z",
        **extra,
    }


def conversation(vid: str, customer: str = "c1", inbox: str = "in1", status: str = "OPEN") -> dict:
    return {
        "id": vid,
        "customerId": customer,
        "inboxId": inbox,
        "status": status,
        "createdAt": "2024-04-01T00:00:00Z",
    }


def item(
    iid: str,
    conv: str = "v1",
    customer: str = "c1",
    text: str | None = "hello",
    kind: str = "CHAT_MESSAGE",
    ts: str = "2024-04-01T10:00:00Z",
) -> dict:
    content: dict = {"type": kind}
    if text is not None:
        content["content"] = text
    return {
        "id": iid,
        "conversationId": conv,
        "customerId": customer,
        "timestamp": ts,
        "initiator": {"id": customer, "type": "CUSTOMER"},
        "content": content,
    }


def store_conversations(con, *convs: dict, at: datetime = T0) -> None:
    upserts.upsert_conversations(con, [conversation_row(c, synced_at=at, source_at=at) for c in convs])


def write_ndjson(path: Path, objects: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


ITEM_COLS = "id, conversation_id, customer_id, text, redacted, deleted_at, source_at"


class TestUpsertCustomers:
    def test_insert_then_overwrite(self, con):
        """API rows overwrite every column they carry; the last of equal ids in a batch wins."""
        first = customer_row(profile("c1", "Ann"), synced_at=T0, source_at=T0)
        assert upserts.upsert_customers(con, [first]) == 1
        batch = [
            customer_row(profile("c1", "Old name"), synced_at=T1, source_at=T1),
            customer_row(profile("c2", "Bob"), synced_at=T1, source_at=T1),
            customer_row(
                profile("c1", "New name", customAttributes={"tier": "silver"}), synced_at=T1, source_at=T1
            ),
        ]
        upserts.upsert_customers(con, batch)
        assert table(con, "customers", "id, name, primary_email, custom_attributes, synced_at") == [
            ("c1", "New name", "c1@x.com", '{"tier":"silver"}', T1),
            ("c2", "Bob", "c2@x.com", '{"tier":"gold"}', T1),
        ]
        raw = parsed(table(con, "customers", "raw")[0][0])
        assert raw == profile("c1", "New name", customAttributes={"tier": "silver"})

    def test_deleted_customer_is_never_resurrected(self, con):
        """A profile fetched after its erasure is not written."""
        upserts.upsert_customers(con, [customer_row(profile("c1"), synced_at=T0, source_at=T0)])
        upserts.erase_customer(con, "c1", T1)
        assert upserts.upsert_customers(con, [customer_row(profile("c1"), synced_at=T2, source_at=T2)]) == 0
        assert table(con, "customers", "id, name, raw, deleted_at") == [("c1", None, None, T1)]

    def test_merged_into_is_kept(self, con):
        """An API row does not clear merged_into (only a merge sets it)."""
        upserts.upsert_customers(con, [customer_row(profile("c1"), synced_at=T0, source_at=T0)])
        upserts.apply_customer_merge(con, "c1", "c9", T1)
        upserts.upsert_customers(con, [customer_row(profile("c1", "Again"), synced_at=T2, source_at=T2)])
        assert table(con, "customers", "id, name, merged_into") == [("c1", "Again", "c9")]


class TestMergeExportCustomers:
    def export(self, cid: str, name: str, email: str = "e@x.com") -> dict:
        return export_customer_row(
            {"id": cid, "name": name, "emailAddresses": [email], "phoneNumbers": ["+1555"]},
            synced_at=T2,
            source_at=T1,
        )

    def test_updates_only_the_fields_the_export_carries(self, con):
        """Name, emails, phones and primaries change; custom attributes, times and raw stay the API's."""
        upserts.upsert_customers(con, [customer_row(profile("c1"), synced_at=T0, source_at=T0)])
        assert upserts.merge_export_customers(con, [self.export("c1", "Exported")], T1) == 1
        assert table(
            con,
            "customers",
            "id, name, primary_email, primary_phone, emails, phones, custom_attributes, created_at, "
            "source_at",
        ) == [
            (
                "c1",
                "Exported",
                "e@x.com",
                "+1555",
                '[{"original":"e@x.com"}]',
                '[{"original":"+1555"}]',
                '{"tier":"gold"}',
                datetime(2024, 1, 1, tzinfo=UTC),
                T1,
            )
        ]
        assert parsed(table(con, "customers", "raw")[0][0]) == profile("c1")

    def test_never_overwrites_a_newer_api_row(self, con):
        """A row read from the API after the job's endAt is left alone."""
        upserts.upsert_customers(con, [customer_row(profile("c1"), synced_at=T2, source_at=T2)])
        assert upserts.merge_export_customers(con, [self.export("c1", "Stale")], T1) == 0
        assert table(con, "customers", "id, name, source_at") == [("c1", "Ann", T2)]

    def test_only_customers_in_scope(self, con):
        """A customer with a stored conversation is inserted (raw = the export line); others are not."""
        store_conversations(con, conversation("v1", customer="c5"))
        line = {"id": "c5", "name": "Eve", "emailAddresses": ["eve@x.com"]}
        rows = [
            export_customer_row(line, synced_at=T2, source_at=T1),
            self.export("stranger", "Nobody"),
        ]
        assert upserts.merge_export_customers(con, rows, T1) == 1
        assert table(
            con, "customers", "id, name, primary_email, custom_attributes, created_at, source_at"
        ) == [("c5", "Eve", "eve@x.com", None, None, T1)]
        assert parsed(table(con, "customers", "raw")[0][0]) == line

    def test_deleted_and_merged_rows_are_untouched(self, con):
        """Export rows never touch an erased or merged customer."""
        upserts.upsert_customers(
            con, [customer_row(profile(c), synced_at=T0, source_at=T0) for c in ("gone", "old")]
        )
        upserts.erase_customer(con, "gone", T0)
        upserts.apply_customer_merge(con, "old", "new", T0)
        rows = [self.export("gone", "Back"), self.export("old", "Renamed")]
        assert upserts.merge_export_customers(con, rows, T1) == 0
        assert table(con, "customers", "id, name, merged_into, deleted_at") == [
            ("gone", None, None, T0),
            ("old", "Ann", "new", None),
        ]

    def test_last_of_equal_ids_wins(self, con):
        """Two lines for one customer in a batch: the last one is stored."""
        store_conversations(con, conversation("v1", customer="c1"))
        upserts.merge_export_customers(con, [self.export("c1", "First"), self.export("c1", "Last")], T1)
        assert table(con, "customers", "id, name") == [("c1", "Last")]

    def test_export_only_row_takes_the_newer_export_raw(self, con):
        """A row never read from the API keeps the newest export line as raw."""
        store_conversations(con, conversation("v1", customer="c1"))
        upserts.merge_export_customers(con, [self.export("c1", "First")], T0)
        upserts.merge_export_customers(con, [self.export("c1", "Second")], T1)
        assert parsed(table(con, "customers", "raw")[0][0])["name"] == "Second"


class TestConversations:
    def test_last_of_equal_ids_wins_and_rows_are_overwritten(self, con):
        """The batch's last version of an id is stored; a later batch overwrites every column."""
        store_conversations(con, conversation("v1", inbox="first"), conversation("v1", inbox="second"))
        assert table(con, "conversations", "id, inbox_id, status") == [("v1", "second", "OPEN")]
        upserts.upsert_conversations(
            con,
            [
                conversation_row(
                    {**conversation("v1", inbox="third", status="CLOSED"), "topicIds": ["t1", "t2"]},
                    synced_at=T1,
                    source_at=T1,
                )
            ],
        )
        assert table(con, "conversations", "id, inbox_id, status, topic_ids, source_at") == [
            ("v1", "third", "CLOSED", ["t1", "t2"], T1)
        ]

    def test_marked_deleted_with_their_items(self, con):
        """A conversation gone in a merge gets deleted_at, and so do its items."""
        store_conversations(con, conversation("v1"), conversation("v2"))
        upserts.upsert_items(con, [item("i1", "v1"), item("i2", "v2")], source_at=T0, synced_at=T0)
        assert upserts.mark_conversations_deleted(con, ["v1", "unknown"], T1) == 1
        assert table(con, "conversations", "id, deleted_at") == [("v1", T1), ("v2", None)]
        assert table(con, "conversation_items", "id, deleted_at") == [("i1", T1), ("i2", None)]

    def test_conversation_of_an_erased_customer_is_not_written(self, con):
        """Erasure wins over a late API read of that customer's conversation."""
        store_conversations(con, conversation("v1"))
        upserts.erase_customer(con, "c1", T1)
        assert (
            upserts.upsert_conversations(
                con, [conversation_row(conversation("v1"), synced_at=T2, source_at=T2)]
            )
            == 0
        )
        assert table(con, "conversations", "id, raw, deleted_at") == [("v1", None, T1)]

    def test_lookups(self, con):
        """stored_conversations, stored_customer_ids and conversation_ids_for_customer read the store."""
        store_conversations(con, conversation("v1", customer="c1"), conversation("v2", customer="c1"))
        upserts.upsert_customers(con, [customer_row(profile("c1"), synced_at=T0, source_at=T0)])
        assert upserts.stored_conversations(con, ["v1", "nope"]) == {
            "v1": {"customer_id": "c1", "inbox_id": "in1", "source_at": T0, "deleted_at": None}
        }
        assert upserts.stored_customer_ids(con, ["c1", "c2"]) == {"c1"}
        assert upserts.conversation_ids_for_customer(con, "c1") == ["v1", "v2"]
        assert upserts.stored_conversations(con, []) == {}


class TestScope:
    def test_exclude_look_up_and_clear(self, con):
        """Exclusions are upserted by conversation id (last wins), read back, and cleared."""
        upserts.exclude_conversations(con, [("v1", "in9", T0), ("v2", "in8", T0), ("v1", "in7", T1)])
        upserts.exclude_conversations(con, [("v2", "in6", T2)])
        assert upserts.scope_exclusions(con, ["v1", "v2", "v3"]) == {"v1": ("in7", T1), "v2": ("in6", T2)}
        assert upserts.clear_exclusions(con, ["v1"]) == 1
        assert table(con, "scope_exclusions", "conversation_id, inbox_id") == [("v2", "in6")]


class TestUpsertItems:
    def test_last_of_equal_ids_wins(self, con):
        """A list holding an item twice stores its last version once."""
        written = upserts.upsert_items(
            con, [item("i1", text="first"), item("i2"), item("i1", text="last")], source_at=T0, synced_at=T1
        )
        assert written == 2
        assert table(con, "conversation_items", ITEM_COLS + ", synced_at") == [
            ("i1", "v1", "c1", "last", False, None, T0, T1),
            ("i2", "v1", "c1", "hello", False, None, T0, T1),
        ]

    def test_item_is_stored_under_its_own_conversation(self, con):
        """An item listed under another conversation keeps its own conversationId."""
        upserts.upsert_items(
            con,
            [item("i1", "v1"), item("i2", "v-other", customer="c2")],
            source_at=T0,
            synced_at=T0,
            complete_conversation_id="v1",
        )
        assert table(con, "conversation_items", "id, conversation_id, customer_id") == [
            ("i1", "v1", "c1"),
            ("i2", "v-other", "c2"),
        ]

    def test_rewrite_is_idempotent(self, con):
        """Writing the same list twice leaves one row per item, updated."""
        for at in (T0, T1):
            upserts.upsert_items(con, [item("i1"), item("i2")], source_at=at, synced_at=at)
        assert table(con, "conversation_items", "id, source_at") == [("i1", T1), ("i2", T1)]

    def test_every_column_is_filled(self, con):
        """The stored row carries every column of the transform, content and raw as JSON."""
        source = item("i1", kind="EMAIL", text="Body")
        source["content"]["subject"] = "Hi"
        source["sessionId"] = "s1"
        upserts.upsert_items(con, [source], source_at=T0, synced_at=T1)
        [row] = table(
            con,
            "conversation_items",
            "id, conversation_id, customer_id, session_id, timestamp, content_type, initiator_type, "
            "initiator_id, responder_type, responder_id, text, content, redacted, deleted_at, raw, "
            "synced_at, source_at",
        )
        assert row[:11] == (
            "i1",
            "v1",
            "c1",
            "s1",
            datetime(2024, 4, 1, 10, tzinfo=UTC),
            "EMAIL",
            "CUSTOMER",
            "c1",
            None,
            None,
            "Hi\n\nBody",
        )
        assert (parsed(row[11]), row[12], row[13], parsed(row[14]), row[15], row[16]) == (
            source["content"],
            False,
            None,
            source,
            T1,
            T0,
        )

    def test_redaction_overwrites_text_content_and_raw(self, con):
        """A re-listed item with emptied content is marked redacted and its old body is gone."""
        upserts.upsert_items(con, [item("i1", text="my card is 4111")], source_at=T0, synced_at=T0)
        redacted = item("i1", text="")
        upserts.upsert_items(con, [redacted], source_at=T1, synced_at=T1)
        assert table(con, "conversation_items", "id, text, redacted, content, raw") == [
            (
                "i1",
                None,
                True,
                json.dumps(redacted["content"], separators=(",", ":")),
                json.dumps(redacted, separators=(",", ":")),
            ),
        ]

    def test_redaction_is_never_undone(self, con):
        """A later non-redacted version of a redacted item keeps the emptied body."""
        upserts.upsert_items(con, [item("i1", text="my card is 4111")], source_at=T0, synced_at=T0)
        upserts.upsert_items(con, [item("i1", text="")], source_at=T0, synced_at=T0)
        before = table(con, "conversation_items", "text, content, raw")
        moved = item("i1", conv="v2", text="secret again")
        assert upserts.upsert_items(con, [moved], source_at=T1, synced_at=T1) == 1
        assert table(con, "conversation_items", "id, conversation_id, redacted, source_at") == [
            ("i1", "v2", True, T1)
        ]
        assert table(con, "conversation_items", "text, content, raw") == before

    def test_complete_list_marks_missing_items_deleted(self, con):
        """Items absent from a complete list get deleted_at; items present have it cleared."""
        upserts.upsert_items(
            con,
            [item("i1"), item("i2"), item("x1", conv="v2")],
            source_at=T0,
            synced_at=T0,
            complete_conversation_id="v1",
        )
        upserts.upsert_items(con, [item("i1")], source_at=T1, synced_at=T1, complete_conversation_id="v1")
        assert table(con, "conversation_items", "id, deleted_at, source_at") == [
            ("i1", None, T1),
            ("i2", T1, T1),
            ("x1", None, T0),
        ]
        upserts.upsert_items(con, [item("i2")], source_at=T2, synced_at=T2, complete_conversation_id="v1")
        assert table(con, "conversation_items", "id, deleted_at") == [("i1", T2), ("i2", None), ("x1", None)]

    def test_limited_list_marks_nothing(self, con):
        """Without complete_conversation_id (Limited-Data) no item is marked deleted."""
        upserts.upsert_items(con, [item("i1"), item("i2")], source_at=T0, synced_at=T0)
        upserts.upsert_items(con, [item("i1")], source_at=T1, synced_at=T1)
        assert table(con, "conversation_items", "id, deleted_at") == [("i1", None), ("i2", None)]

    def test_empty_list(self, con):
        """An empty complete list marks every item of the conversation deleted and writes nothing."""
        upserts.upsert_items(con, [item("i1")], source_at=T0, synced_at=T0)
        assert upserts.upsert_items(con, [], source_at=T1, synced_at=T1, complete_conversation_id="v1") == 0
        assert table(con, "conversation_items", "id, deleted_at") == [("i1", T1)]


class TestExportItems:
    """Every rule holds for a part as Gladly serves it (ndjson) and as the export pass hands it over,
    prepared off the store (Parquet)."""

    @pytest.fixture(params=["ndjson", "prepared"], autouse=True)
    def part_form(self, request, monkeypatch):
        if request.param == "prepared":
            upsert = upserts.upsert_export_items

            def via_parquet(con, path, **times):
                prepared = Path(path).with_suffix(".parquet")
                with duckdb.connect() as memory:
                    upserts.prepare_export_items(memory, path, prepared)
                return upsert(con, prepared, **times)

            monkeypatch.setattr(upserts, "upsert_export_items", via_parquet)
        return request.param

    def test_a_failing_part_raises_its_own_error(self, db, tmp_path):
        """A malformed part fails with DuckDB's parse error, not the aborted transaction's cleanup error."""
        part = tmp_path / "bad.ndjson"
        part.write_text('{"id": "i1", "conversationId": \n')
        with pytest.raises(duckdb.Error) as raised, db.transaction() as con:
            upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2)
        assert "aborted" not in str(raised.value).lower()
        assert "json" in str(raised.value).lower()

    def test_only_items_of_stored_conversations(self, con, tmp_path):
        """Items of unknown, deleted or excluded conversations are skipped; the rest get source_at = endAt."""
        store_conversations(con, conversation("v1"), conversation("v-deleted"), conversation("v-excluded"))
        upserts.mark_conversations_deleted(con, ["v-deleted"], T0)
        upserts.exclude_conversations(con, [("v-excluded", "in9", T0)])
        part = write_ndjson(
            tmp_path / "p.ndjson",
            [
                item("i1", "v1"),
                item("i2", "v-unknown"),
                item("i3", "v-deleted"),
                item("i4", "v-excluded"),
            ],
        )
        with duckdb.connect() as memory:
            ids = upserts.prepare_export_items(memory, part, tmp_path / "ids.parquet")
        assert ids == ["v1", "v-unknown", "v-deleted", "v-excluded"]
        assert upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2) == 1
        assert table(con, "conversation_items", ITEM_COLS + ", synced_at") == [
            ("i1", "v1", "c1", "hello", False, None, T1, T2)
        ]

    def test_raw_is_the_exact_line(self, con, tmp_path):
        """raw keeps the export line's text as Gladly wrote it."""
        store_conversations(con, conversation("v1"))
        line = '{"id": "i1",  "conversationId": "v1", "customerId": "c1", "timestamp": "2024-04-01T10:00:00.1234567Z", "content": {"type": "SMS", "content": "h\\u00e9", "new": 1}}'  # noqa: E501
        part = tmp_path / "p.ndjson"
        part.write_text(line + "\n")
        upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2)
        assert table(con, "conversation_items", "raw, text, timestamp") == [
            (line, "hé", datetime(2024, 4, 1, 10, 0, 0, 123456, tzinfo=UTC))
        ]

    def test_last_line_of_equal_ids_wins(self, con, tmp_path):
        """An item twice in one file is stored once, as its last line."""
        store_conversations(con, conversation("v1"))
        part = write_ndjson(tmp_path / "p.ndjson", [item("i1", text="a"), item("i2"), item("i1", text="b")])
        assert upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2) == 2
        assert table(con, "conversation_items", "id, text") == [("i1", "b"), ("i2", "hello")]

    def test_never_overwrites_a_newer_api_row(self, con, tmp_path):
        """An item read from the API after the job's endAt keeps the API's version."""
        store_conversations(con, conversation("v1"))
        upserts.upsert_items(con, [item("i1", text="api")], source_at=T2, synced_at=T2)
        part = write_ndjson(tmp_path / "p.ndjson", [item("i1", text="old export", conv="v1")])
        assert upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2) == 0
        assert table(con, "conversation_items", "id, text, source_at") == [("i1", "api", T2)]

    def test_overwrites_an_older_row(self, con, tmp_path):
        """An item stored before the job's endAt takes the export's version."""
        store_conversations(con, conversation("v1"))
        upserts.upsert_items(con, [item("i1", text="api")], source_at=T0, synced_at=T0)
        part = write_ndjson(tmp_path / "p.ndjson", [item("i1", text="newer export")])
        assert upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2) == 1
        assert table(con, "conversation_items", "id, text, source_at, synced_at") == [
            ("i1", "newer export", T1, T2)
        ]

    def test_redacted_export_overwrites_a_newer_api_row_body(self, con, tmp_path):
        """A redaction in an older export still empties a newer API row: text, content and raw."""
        store_conversations(con, conversation("v1"))
        upserts.upsert_items(con, [item("i1", text="secret")], source_at=T2, synced_at=T2)
        redacted = item("i1", text="")
        part = write_ndjson(tmp_path / "p.ndjson", [redacted])
        assert upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2) == 1
        assert table(con, "conversation_items", "id, text, redacted, content, raw, source_at") == [
            ("i1", None, True, '{"type":"CHAT_MESSAGE","content":""}', json.dumps(redacted), T2)
        ]

    @pytest.mark.parametrize("end_at", [T0, T2])
    def test_export_never_unredacts(self, con, tmp_path, end_at):
        """A non-redacted export line never restores a redacted item's body, older or newer."""
        store_conversations(con, conversation("v1"))
        upserts.upsert_items(con, [item("i1", text="secret")], source_at=T1, synced_at=T1)
        upserts.upsert_items(con, [item("i1", text="")], source_at=T1, synced_at=T1)
        before = table(con, "conversation_items", "text, content, raw, redacted")
        assert before[0][3] is True
        part = write_ndjson(tmp_path / "p.ndjson", [item("i1", text="restored?")])
        upserts.upsert_export_items(con, part, job_end_at=end_at, synced_at=T2)
        assert table(con, "conversation_items", "text, content, raw, redacted") == before

    def test_keeps_deleted_at_and_uses_the_conversations_customer(self, con, tmp_path):
        """The export does not carry deletion; a merged customer's items follow the conversation."""
        store_conversations(con, conversation("v1", customer="c-new"))
        upserts.upsert_items(
            con, [item("i1", customer="c-new")], source_at=T0, synced_at=T0, complete_conversation_id="v1"
        )
        upserts.upsert_items(con, [], source_at=T0, synced_at=T0, complete_conversation_id="v1")
        part = write_ndjson(
            tmp_path / "p.ndjson", [item("i1", customer="c-old"), item("i2", customer="c-old")]
        )
        upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2)
        assert table(con, "conversation_items", "id, customer_id, deleted_at") == [
            ("i1", "c-new", T0),
            ("i2", "c-new", None),
        ]

    @pytest.mark.parametrize(
        ("stored_ts", "export_ts"),
        [
            ("2024-04-01T10:00:00Z", "2024-04-01T10:00:00.000Z"),
            ("2024-04-01T10:00:00.123456Z", "2024-04-01T10:00:00.123Z"),  # other precision
            ("2024-04-01T10:00:00Z", "not a time"),  # the part has an item without a time
            ("not a time", "2024-04-01T10:00:00Z"),  # the store has one
        ],
    )
    def test_the_stored_item_is_found_whatever_its_stored_time(self, con, tmp_path, stored_ts, export_ts):
        """The look-up of stored items is bounded by the part's time window, and still finds (and
        replaces, never duplicates) an item stored with another precision or without a time."""
        store_conversations(con, conversation("v1"))
        upserts.upsert_items(con, [item("i1", ts=stored_ts), item("far", ts="2020-01-01T00:00:00Z")],
                             source_at=T0, synced_at=T0)
        part = write_ndjson(tmp_path / "p.ndjson", [item("i1", text="again", ts=export_ts), item("i2")])
        assert upserts.upsert_export_items(con, part, job_end_at=T1, synced_at=T2) == 2
        assert table(con, "conversation_items", "id, text") == [
            ("far", "hello"),
            ("i1", "again"),
            ("i2", "hello"),
        ]

    def test_stored_ids_stay_unique_across_parts(self, con, tmp_path):
        """Parts written one after the other never duplicate an id."""
        store_conversations(con, conversation("v1"))
        first = write_ndjson(tmp_path / "a.ndjson", [item(f"i{n}") for n in range(5)])
        second = write_ndjson(tmp_path / "b.ndjson", [item(f"i{n}", text="again") for n in range(3, 8)])
        upserts.upsert_export_items(con, first, job_end_at=T1, synced_at=T2)
        upserts.upsert_export_items(con, second, job_end_at=T1, synced_at=T2)
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM conversation_items").fetchall() == [
            (8, 8)
        ]
        assert table(con, "conversation_items", "id, text") == [
            ("i0", "hello"),
            ("i1", "hello"),
            ("i2", "hello"),
            ("i3", "again"),
            ("i4", "again"),
            ("i5", "again"),
            ("i6", "again"),
            ("i7", "again"),
        ]


class TestEvents:
    def event(self, eid: str, kind: str = "CONVERSATION/CREATED", conv: str = "v1") -> dict:
        return {
            "id": eid,
            "type": kind,
            "timestamp": "2024-05-01T12:00:00Z",
            "content": {"conversationId": conv, "customerId": "c1"},
        }

    def test_insert_dedupes_and_ignores_stored(self, con):
        """The last of equal ids in a batch is stored; ids already stored are ignored."""
        assert (
            upserts.insert_events(con, [self.event("e1", conv="first"), self.event("e1", conv="last")]) == 1
        )
        assert upserts.insert_events(con, [self.event("e1", conv="again"), self.event("e2")]) == 1
        assert table(con, "events", "id, type, timestamp, conversation_id, customer_id") == [
            ("e1", "CONVERSATION/CREATED", T0, "last", "c1"),
            ("e2", "CONVERSATION/CREATED", T0, "v1", "c1"),
        ]
        assert parsed(table(con, "events", "raw")[0][0]) == self.event("e1", conv="last")

    def test_known_ids_include_skipped_events(self, con):
        """An id is known when stored or remembered as skipped; pruning forgets old skipped ids."""
        upserts.insert_events(con, [self.event("e1")])
        upserts.remember_skipped_events(con, [("s1", T0), ("s2", T2), ("s1", T0)])
        upserts.remember_skipped_events(con, [("s2", T2)])
        assert upserts.known_event_ids(con, ["e1", "s1", "s2", "new"]) == {"e1", "s1", "s2"}
        assert upserts.prune_skipped_events(con, T1) == 1
        assert table(con, "skipped_events", "id, timestamp") == [("s2", T2)]
        assert upserts.known_event_ids(con, []) == set()


class TestMergeAndErase:
    def test_merge_repoints_conversations_and_items(self, con):
        """The old row stays with merged_into; conversations, items, earlier merges point at the survivor."""
        upserts.upsert_customers(
            con, [customer_row(profile(c), synced_at=T0, source_at=T0) for c in ("old", "new", "older")]
        )
        upserts.apply_customer_merge(con, "older", "old", T0)
        store_conversations(con, conversation("v1", customer="old"), conversation("v2", customer="other"))
        upserts.upsert_items(
            con, [item("i1", customer="old"), item("i2", "v2", customer="other")], source_at=T0, synced_at=T0
        )
        assert upserts.apply_customer_merge(con, "old", "new", T1) == {
            "customers": 1,
            "conversations": 1,
            "conversation_items": 1,
        }
        assert table(con, "customers", "id, merged_into, deleted_at") == [
            ("new", None, None),
            ("old", "new", None),
            ("older", "new", None),
        ]
        assert table(con, "conversations", "id, customer_id") == [("v1", "new"), ("v2", "other")]
        assert table(con, "conversation_items", "id, customer_id") == [("i1", "new"), ("i2", "other")]

    def test_erase_blanks_personal_data(self, con):
        """Erasure sets deleted_at and blanks personal columns, raw, and the customer's item bodies."""
        upserts.upsert_customers(
            con, [customer_row(profile(c), synced_at=T0, source_at=T0) for c in ("c1", "c2")]
        )
        store_conversations(con, conversation("v1", customer="c1"), conversation("v2", customer="c2"))
        upserts.upsert_items(con, [item("i1"), item("i2", "v2", customer="c2")], source_at=T0, synced_at=T0)
        upserts.erase_customer(con, "c1", T1)
        assert table(
            con,
            "customers",
            "id, name, primary_email, primary_phone, emails, phones, external_customer_id, "
            "custom_attributes, raw, deleted_at",
        ) == [
            ("c1", None, None, None, None, None, None, None, None, T1),
            (
                "c2",
                "Ann",
                "c2@x.com",
                None,
                '[{"original":"c2@x.com","normalized":"c2@x.com","primary":true}]',
                "[]",
                None,
                '{"tier":"gold"}',
                json.dumps(profile("c2"), separators=(",", ":")),
                None,
            ),
        ]
        assert table(con, "conversations", "id, custom_attributes, raw IS NULL, deleted_at") == [
            ("v1", None, True, T1),
            ("v2", None, False, None),
        ]
        assert table(con, "conversation_items", "id, text, content, raw IS NULL, deleted_at") == [
            ("i1", None, None, True, T1),
            ("i2", "hello", '{"type":"CHAT_MESSAGE","content":"hello"}', False, None),
        ]

    def test_erase_of_an_unstored_customer_leaves_a_tombstone_only_when_needed(self, con):
        """A customer owning stored conversations gets a tombstone row; a stranger leaves no row."""
        store_conversations(con, conversation("v1", customer="c1"))
        upserts.erase_customer(con, "c1", T1)
        upserts.erase_customer(con, "stranger", T1)
        assert table(con, "customers", "id, name, deleted_at") == [("c1", None, T1)]


class TestErasureSticks:
    """An erased customer's conversations and items are never written again, whatever Gladly serves."""

    def erased(self, con) -> list[tuple]:
        upserts.upsert_customers(con, [customer_row(profile("c1"), synced_at=T0, source_at=T0)])
        store_conversations(con, conversation("v1", customer="c1"))
        upserts.upsert_items(con, [item("i1", text="my address is 1 Elm St")], source_at=T0, synced_at=T0)
        upserts.erase_customer(con, "c1", T1)
        return table(con, "conversation_items", "id, text, raw, deleted_at")

    def test_items_listed_again_are_not_written(self, con):
        """Re-listing the erased conversation neither restores text nor clears deleted_at."""
        before = self.erased(con)
        assert (
            upserts.upsert_items(
                con,
                [item("i1", text="my address is 1 Elm St"), item("i9")],
                source_at=T2,
                synced_at=T2,
                complete_conversation_id="v1",
            )
            == 0
        )
        assert table(con, "conversation_items", "id, text, raw, deleted_at") == before

    def test_an_item_moved_away_from_the_erased_customer_is_not_written(self, con):
        """A stored item of the erased customer stays erased even when Gladly names another owner."""
        before = self.erased(con)
        upserts.upsert_items(con, [item("i1", conv="v7", customer="c7")], source_at=T2, synced_at=T2)
        assert table(con, "conversation_items", "id, text, raw, deleted_at") == before

    def test_the_conversation_is_not_written_again(self, con):
        """The erased conversation keeps deleted_at and its blanked raw."""
        self.erased(con)
        store_conversations(con, conversation("v1", customer="c1", status="CLOSED"), at=T2)
        assert table(con, "conversations", "id, status, raw IS NULL, deleted_at") == [
            ("v1", "OPEN", True, T1)
        ]

    def test_other_customers_items_are_written(self, con):
        """The guard is per customer: everyone else's items still land."""
        self.erased(con)
        store_conversations(con, conversation("v2", customer="c2"))
        assert upserts.upsert_items(con, [item("i2", "v2", customer="c2")], source_at=T2, synced_at=T2) == 1


class TestRedactedFlag:
    def test_an_item_first_seen_empty_is_not_redacted(self, con):
        """Empty content alone is not a redaction: Gladly did not say so and nothing was erased."""
        upserts.upsert_items(con, [item("i1", text="")], source_at=T0, synced_at=T0)
        assert table(con, "conversation_items", "id, redacted") == [("i1", False)]

    def test_a_stored_body_that_comes_back_empty_is_redacted(self, con):
        """The redaction shows as a stored body emptied on a later read."""
        upserts.upsert_items(con, [item("i1", text="secret")], source_at=T0, synced_at=T0)
        upserts.upsert_items(con, [item("i1", text="")], source_at=T1, synced_at=T1)
        assert table(con, "conversation_items", "id, text, redacted") == [("i1", None, True)]

    def test_a_deleted_recording_is_redacted_when_first_seen(self, con):
        """A call whose recording Gladly reports DELETED is redacted on its own say-so."""
        call = item("i1", text=None, kind="PHONE_CALL")
        call["content"]["recordingStatus"] = "DELETED"
        upserts.upsert_items(con, [call], source_at=T0, synced_at=T0)
        assert table(con, "conversation_items", "id, redacted") == [("i1", True)]


class TestReferenceLists:
    def test_upsert_and_keep_vanished_rows(self, con):
        """Reference lists are upserted (last wins) and rows no longer listed are kept."""
        upserts.replace_inboxes(
            con,
            [
                inbox_row({"id": "i1", "name": "Email"}, synced_at=T0),
                inbox_row({"id": "i2", "name": "Chat"}, synced_at=T0),
            ],
        )
        upserts.replace_inboxes(
            con,
            [
                inbox_row({"id": "i1", "name": "Old"}, synced_at=T1),
                inbox_row({"id": "i1", "name": "E-mail", "disabled": True}, synced_at=T1),
            ],
        )
        assert table(con, "inboxes", "id, name, disabled, synced_at") == [
            ("i1", "E-mail", True, T1),
            ("i2", "Chat", None, T0),
        ]
        upserts.replace_topics(con, [topic_row({"id": "t1", "name": "T", "parentId": "t0"}, synced_at=T0)])
        upserts.replace_agents(con, [])
        assert table(con, "topics", "id, parent_id") == [("t1", "t0")]


class TestCursorsAndRuns:
    def test_cursors(self, con):
        """A cursor is saved per stream, overwritten, and listed."""
        assert upserts.load_cursor(con, "events") is None
        upserts.save_cursor(con, "events", "2024-05-01T00:00:00Z", T0)
        upserts.save_cursor(con, "events", "2024-05-02T00:00:00Z", T1)
        upserts.save_cursor(con, "reconcile", "x", T0)
        assert upserts.load_cursor(con, "events") == "2024-05-02T00:00:00Z"
        assert upserts.all_cursors(con) == {
            "events": {"cursor": "2024-05-02T00:00:00Z", "updated_at": T1},
            "reconcile": {"cursor": "x", "updated_at": T0},
        }

    def test_export_jobs(self, con):
        """A processed job is remembered with its updatedAt and window."""
        job = {
            "id": "j1",
            "status": "COMPLETED",
            "updatedAt": "2024-05-02T07:15:19.07272933Z",
            "parameters": {
                "type": "CONVERSATIONS",
                "startAt": "2024-05-01T00:00:00Z",
                "endAt": "2024-05-02T00:00:00Z",
            },
        }
        upserts.record_export_job(con, job, 10, 2, T2)
        upserts.record_export_job(con, job, 11, 3, T2)
        assert upserts.processed_export_jobs(con) == {
            "j1": datetime(2024, 5, 2, 7, 15, 19, 72729, tzinfo=UTC)
        }
        assert table(con, "export_jobs", "id, start_at, end_at, processed_at, items, customers") == [
            ("j1", datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC), T2, 11, 3)
        ]

    def test_runs(self, con):
        """A run starts as running and finishes with its status and counts; newest first."""
        upserts.start_run(con, "r1", "sync", T0, 100)
        upserts.finish_run(
            con,
            "r1",
            status="ok",
            finished_at=T0 + timedelta(seconds=3),
            requests=5,
            rate_limited=1,
            rows={"conversations": 2},
            error=None,
        )
        upserts.start_run(con, "r2", "drain", T1, 101, "replica-b")
        assert upserts.last_runs(con, 10) == [
            {
                "run_id": "r2",
                "job": "drain",
                "started_at": T1,
                "finished_at": None,
                "status": "running",
                "requests": None,
                "rate_limited": None,
                "rows": None,
                "error": None,
                "pid": 101,
                "host": "replica-b",
            },
            {
                "run_id": "r1",
                "job": "sync",
                "started_at": T0,
                "finished_at": T0 + timedelta(seconds=3),
                "status": "ok",
                "requests": 5,
                "rate_limited": 1,
                "rows": {"conversations": 2},
                "error": None,
                "pid": 100,
                "host": None,
            },
        ]
