"""Intention-named writes (and the look-ups the sync makes between them).

Every function takes an open DuckDB connection ``con``; the caller owns the transaction, so rows
and the cursor that covers them commit together. Batches travel as Arrow tables (or, for export
files, as ndjson that DuckDB reads itself), never row by row.

Rules that hold for every batch:

* A batch holding the same id twice keeps the LAST version (``row_number() ... ORDER BY ord DESC``;
  DuckDB's ``ON CONFLICT`` would silently keep the first).
* ``conversation_items`` and ``events`` have no PRIMARY KEY (its in-memory index grows with the
  store); ids stay unique because every write de-duplicates the batch and anti-joins the table.
* Export rows never overwrite a row read from the API after the job's ``endAt`` (``source_at``),
  never fields the export does not carry, and never undo a redaction. A redaction always wins.
* A deleted (erased) customer is never brought back.
* An erasure (a deleted profile, an item newly redacted) is noted in ``sync_state`` (stream
  :data:`ERASURE_STREAM`) in the same transaction, until the sync has removed the erased bytes
  from disk (``Database.rebuild``) and calls :func:`clear_erasure`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from gladly_sync.storage.dialect import dialect_specific
from gladly_sync.storage.rows import (
    ITEM_COLUMNS,
    items_select_sql,
    items_source,
    ndjson_items_source,
    parse_timestamp,
    sql_string,
)

Connection = duckdb.DuckDBPyConnection

ERASURE_STREAM = "erasure_pending"

_TYPES = {
    "str": pa.string(),
    "json": pa.string(),
    "ts": pa.timestamp("us", tz="UTC"),
    "bool": pa.bool_(),
    "int": pa.int64(),
    "list": pa.list_(pa.string()),
}

CUSTOMER_COLUMNS = {
    "id": "str",
    "name": "str",
    "primary_email": "str",
    "primary_phone": "str",
    "emails": "json",
    "phones": "json",
    "external_customer_id": "str",
    "custom_attributes": "json",
    "created_at": "ts",
    "updated_at": "ts",
    "merged_into": "str",
    "deleted_at": "ts",
    "raw": "json",
    "synced_at": "ts",
    "source_at": "ts",
}
# What an export's customers.jsonl carries (see rows.export_customer_row).
EXPORT_CUSTOMER_COLUMNS = {
    key: CUSTOMER_COLUMNS[key]
    for key in (
        "id",
        "name",
        "primary_email",
        "primary_phone",
        "emails",
        "phones",
        "external_customer_id",
        "raw",
        "synced_at",
        "source_at",
    )
}
CONVERSATION_COLUMNS = {
    "id": "str",
    "customer_id": "str",
    "inbox_id": "str",
    "agent_id": "str",
    "status": "str",
    "topic_ids": "list",
    "custom_attributes": "json",
    "created_at": "ts",
    "closed_at": "ts",
    "deleted_at": "ts",
    "raw": "json",
    "synced_at": "ts",
    "source_at": "ts",
}
EVENT_COLUMNS = {
    "id": "str",
    "type": "str",
    "timestamp": "ts",
    "conversation_id": "str",
    "customer_id": "str",
    "raw": "json",
}
INBOX_COLUMNS = {"id": "str", "name": "str", "disabled": "bool", "raw": "json", "synced_at": "ts"}
ORGANIZATION_COLUMNS = {"id": "str", "name": "str", "timezone": "str", "raw": "json", "synced_at": "ts"}
AGENT_COLUMNS = {"id": "str", "name": "str", "email_address": "str", "raw": "json", "synced_at": "ts"}
TOPIC_COLUMNS = {
    "id": "str",
    "name": "str",
    "disabled": "bool",
    "parent_id": "str",
    "raw": "json",
    "synced_at": "ts",
}


# --------------------------------------------------------------------------- staging


def _cell(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if kind == "ts":
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"expected an aware UTC datetime, got {value!r}")
        return value.astimezone(UTC)
    return value


def _arrow(rows: Sequence[dict], columns: dict[str, str]) -> pa.Table:
    """Row dicts → an Arrow table with the given columns (missing keys are NULL) and ``_ord``."""
    data = {
        name: pa.array([_cell(kind, row.get(name)) for row in rows], _TYPES[kind])
        for name, kind in columns.items()
    }
    data["_ord"] = pa.array(range(len(rows)), pa.int64())
    return pa.table(data)


@contextmanager
def _staged(con: Connection, name: str, table: pa.Table) -> Iterator[str]:
    """``table`` visible to SQL as ``name`` for the block."""
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


@contextmanager
def _then(con: Connection, *statements: str) -> Iterator[None]:
    """Run cleanup ``statements`` after the block. When the block failed, the transaction is aborted
    and refuses every statement: a failing cleanup then must not replace the block's own error."""
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        for sql in statements:
            try:
                con.execute(sql)
            except duckdb.Error:
                if not failed:
                    raise


def _last_wins(source: str, key: str = "id") -> str:
    """The rows of ``source`` with each ``key`` once: the last one in the batch."""
    return (
        f"(SELECT * EXCLUDE (_ord) FROM {source} "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _ord DESC) = 1)"
    )


def _count(result: duckdb.DuckDBPyConnection) -> int:
    row = result.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _ids(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v is not None))


# --------------------------------------------------------------------------- customers


def upsert_customers(con: Connection, rows: Sequence[dict]) -> int:
    """API profiles: overwrite every column the API carries; ``merged_into``/``deleted_at`` stay.

    A customer whose stored row has ``deleted_at`` is never written again (an erased profile stays
    erased).
    """
    if not rows:
        return 0
    names = [c for c in CUSTOMER_COLUMNS if c not in ("merged_into", "deleted_at")]
    return _upsert_unless_erased(con, "customers", rows, CUSTOMER_COLUMNS, names, customer_key="s.id")


def _upsert_unless_erased(
    con: Connection,
    table: str,
    rows: Sequence[dict],
    columns: Sequence[str],
    names: Sequence[str],
    *,
    customer_key: str,
) -> int:
    """Upsert ``rows`` (last version of an id wins) into ``table``, overwriting ``names``, skipping
    rows whose customer (``customer_key`` of the staged row) has been erased."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c != "id")
    with _staged(con, f"stage_{table}", _arrow(rows, columns)) as stage:
        return _count(
            con.execute(
                f"""
                INSERT INTO {table} ({", ".join(names)})
                SELECT {", ".join(names)} FROM {_last_wins(stage)} AS s
                WHERE NOT EXISTS (
                    SELECT 1 FROM customers AS c WHERE c.id = {customer_key} AND c.deleted_at IS NOT NULL
                )
                ON CONFLICT (id) DO UPDATE SET {updates}
                """
            )
        )


def merge_export_customers(con: Connection, rows: Sequence[dict], job_end_at: datetime) -> int:
    """Export customers (rows from ``export_customer_row``); returns rows written.

    Only customers in scope: already in ``customers`` or owning a stored conversation. Only the
    fields the export carries (name, emails, phones, primary_email, primary_phone,
    external_customer_id) are written, and never over a row read after ``job_end_at``, nor over a
    deleted or merged customer. ``raw`` keeps the API profile when the row has one (a row never
    fetched from the API, i.e. no created_at/updated_at, takes the newer export object). A customer
    not stored yet is inserted with ``raw`` = the export object.
    """
    if not rows:
        return 0
    fields = ("name", "emails", "phones", "primary_email", "primary_phone", "external_customer_id")
    end_at = _cell("ts", job_end_at)
    with _staged(con, "stage_export_customers", _arrow(rows, EXPORT_CUSTOMER_COLUMNS)) as stage:
        con.execute(f"CREATE OR REPLACE TEMP TABLE export_customers AS SELECT * FROM {_last_wins(stage)}")
    with _then(con, "DROP TABLE IF EXISTS export_customers"):
        updated = _count(
            con.execute(
                f"""
                UPDATE customers AS c SET
                    {", ".join(f"{f} = s.{f}" for f in fields)},
                    raw = CASE WHEN c.created_at IS NULL AND c.updated_at IS NULL THEN s.raw ELSE c.raw END,
                    synced_at = s.synced_at,
                    source_at = ?
                FROM export_customers AS s
                WHERE c.id = s.id
                  AND c.deleted_at IS NULL AND c.merged_into IS NULL
                  AND (c.source_at IS NULL OR c.source_at <= ?)
                """,
                [end_at, end_at],
            )
        )
        columns = ("id", *fields, "raw", "synced_at", "source_at")
        inserted = _count(
            con.execute(
                f"""
                INSERT INTO customers ({", ".join(columns)})
                SELECT {", ".join(f"s.{c}" for c in columns[:-1])}, ?::TIMESTAMPTZ
                FROM export_customers AS s
                WHERE s.id NOT IN (SELECT id FROM customers)
                  AND s.id IN (SELECT customer_id FROM conversations WHERE deleted_at IS NULL)
                """,
                [end_at],
            )
        )
    return updated + inserted


def stored_customer_ids(con: Connection, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are in ``customers`` (including merged or deleted ones)."""
    wanted = _ids(ids)
    if not wanted:
        return set()
    rows = con.execute("SELECT id FROM customers WHERE id IN (SELECT unnest(?::VARCHAR[]))", [wanted])
    return {row[0] for row in rows.fetchall()}


def apply_customer_merge(con: Connection, source_id: str, dest_id: str, at: datetime) -> dict[str, int]:
    """``source_id`` was merged into ``dest_id``: the old row stays with ``merged_into``; its
    conversations and items (and customers merged into it before) now point at ``dest_id``."""
    at = _cell("ts", at)
    customers = _count(
        con.execute(
            "UPDATE customers SET merged_into = ?, synced_at = ? WHERE id = ?", [dest_id, at, source_id]
        )
    )
    con.execute("UPDATE customers SET merged_into = ? WHERE merged_into = ?", [dest_id, source_id])
    conversations = _count(
        con.execute("UPDATE conversations SET customer_id = ? WHERE customer_id = ?", [dest_id, source_id])
    )
    items = _count(
        con.execute(
            "UPDATE conversation_items SET customer_id = ? WHERE customer_id = ?", [dest_id, source_id]
        )
    )
    return {"customers": customers, "conversations": conversations, "conversation_items": items}


def erase_customer(con: Connection, customer_id: str, at: datetime) -> dict[str, int]:
    """A deleted profile is an erasure: ``deleted_at`` set; personal columns and ``raw`` blanked;
    their conversations (custom attributes and raw blanked too) and items (text, content, raw
    blanked) get ``deleted_at``. A customer not stored but owning stored conversations gets a
    tombstone row, so nothing brings them back."""
    at = _cell("ts", at)
    conversation_ids = conversation_ids_for_customer(con, customer_id)
    customers = _count(
        con.execute(
            """
            UPDATE customers SET deleted_at = coalesce(deleted_at, ?), name = NULL, primary_email = NULL,
                primary_phone = NULL, emails = NULL, phones = NULL, external_customer_id = NULL,
                custom_attributes = NULL, raw = NULL, synced_at = ?
            WHERE id = ?
            """,
            [at, at, customer_id],
        )
    )
    if not customers and conversation_ids:
        con.execute(
            "INSERT INTO customers (id, deleted_at, synced_at, source_at) VALUES (?, ?, ?, ?)",
            [customer_id, at, at, at],
        )
        customers = 1
    conversations = _count(
        con.execute(
            """
            UPDATE conversations SET deleted_at = coalesce(deleted_at, ?), custom_attributes = NULL,
                raw = NULL, synced_at = ?
            WHERE customer_id = ?
            """,
            [at, at, customer_id],
        )
    )
    items = _count(
        con.execute(
            """
            UPDATE conversation_items SET deleted_at = coalesce(deleted_at, ?), text = NULL,
                raw = NULL, synced_at = ?
            WHERE customer_id = ? OR conversation_id IN (SELECT unnest(?::VARCHAR[]))
            """,
            [at, at, customer_id, conversation_ids],
        )
    )
    if customers or conversations or items:
        note_erasure(con, at)
    return {"customers": customers, "conversations": conversations, "conversation_items": items}


def note_erasure(con: Connection, at: datetime) -> None:
    """Values were erased in this transaction: their old bytes must leave the disk before the sync
    ends. The first pending erasure's time is kept."""
    con.execute(
        """
        INSERT INTO sync_state (stream, cursor, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (stream) DO NOTHING
        """,
        [ERASURE_STREAM, _cell("ts", at).isoformat(), _cell("ts", at)],
    )


def erasure_pending(con: Connection) -> bool:
    """Whether an erasure has been stored whose old bytes may still be on disk."""
    return load_cursor(con, ERASURE_STREAM) is not None


def clear_erasure(con: Connection) -> None:
    """The erased values are gone from disk (the store was rebuilt, the snapshot follows it)."""
    con.execute("DELETE FROM sync_state WHERE stream = ?", [ERASURE_STREAM])


def erased_conversation_ids(con: Connection) -> list[str]:
    """The conversations of every erased (deleted) customer."""
    rows = con.execute(
        """
        SELECT v.id FROM conversations AS v JOIN customers AS c ON c.id = v.customer_id
        WHERE c.deleted_at IS NOT NULL ORDER BY v.id
        """
    ).fetchall()
    return [row[0] for row in rows]


def redacted_item_ids(con: Connection) -> list[str]:
    """Every item Gladly redacted."""
    rows = con.execute("SELECT id FROM conversation_items WHERE redacted ORDER BY id").fetchall()
    return [row[0] for row in rows]


# --------------------------------------------------------------------------- conversations


def upsert_conversations(con: Connection, rows: Sequence[dict]) -> int:
    """API conversations: overwrite every column (a conversation read again is not deleted).

    A conversation of an erased customer is not written.
    """
    if not rows:
        return 0
    return _upsert_unless_erased(
        con,
        "conversations",
        rows,
        CONVERSATION_COLUMNS,
        list(CONVERSATION_COLUMNS),
        customer_key="s.customer_id",
    )


def mark_conversations_deleted(con: Connection, ids: Iterable[str], at: datetime) -> int:
    """Conversations that vanished (404 with no redirect, e.g. merged into another open one) and
    their items get ``deleted_at``. Returns the conversations marked."""
    wanted = _ids(ids)
    if not wanted:
        return 0
    at = _cell("ts", at)
    marked = _count(
        con.execute(
            "UPDATE conversations SET deleted_at = ? "
            "WHERE id IN (SELECT unnest(?::VARCHAR[])) AND deleted_at IS NULL",
            [at, wanted],
        )
    )
    con.execute(
        "UPDATE conversation_items SET deleted_at = ? "
        "WHERE conversation_id IN (SELECT unnest(?::VARCHAR[])) AND deleted_at IS NULL",
        [at, wanted],
    )
    return marked


def stored_conversations(con: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{id: {customer_id, inbox_id, source_at, deleted_at}}`` for the stored ones of ``ids``."""
    wanted = _ids(ids)
    if not wanted:
        return {}
    rows = con.execute(
        "SELECT id, customer_id, inbox_id, source_at, deleted_at FROM conversations "
        "WHERE id IN (SELECT unnest(?::VARCHAR[]))",
        [wanted],
    ).fetchall()
    return {
        row[0]: {"customer_id": row[1], "inbox_id": row[2], "source_at": row[3], "deleted_at": row[4]}
        for row in rows
    }


def conversation_ids_for_customer(con: Connection, customer_id: str) -> list[str]:
    """The customer's stored conversation ids, oldest first."""
    rows = con.execute(
        "SELECT id FROM conversations WHERE customer_id = ? ORDER BY created_at NULLS LAST, id",
        [customer_id],
    )
    return [row[0] for row in rows.fetchall()]


# --------------------------------------------------------------------------- scope


def exclude_conversations(con: Connection, rows: Iterable[tuple[str, str | None, datetime]]) -> int:
    """Remember conversations found outside ``inboxes.ingest``.

    ``rows``: ``(conversation_id, inbox_id, checked_at)``; the last of equal ids wins.
    """
    batch = [{"conversation_id": c, "inbox_id": i, "checked_at": t} for c, i, t in rows]
    if not batch:
        return 0
    columns = {"conversation_id": "str", "inbox_id": "str", "checked_at": "ts"}
    with _staged(con, "stage_exclusions", _arrow(batch, columns)) as stage:
        return _count(
            con.execute(
                f"""
                INSERT INTO scope_exclusions (conversation_id, inbox_id, checked_at)
                SELECT conversation_id, inbox_id, checked_at FROM {_last_wins(stage, "conversation_id")}
                ON CONFLICT (conversation_id) DO UPDATE SET
                    inbox_id = excluded.inbox_id, checked_at = excluded.checked_at
                """
            )
        )


def scope_exclusions(con: Connection, ids: Iterable[str]) -> dict[str, tuple[str | None, datetime | None]]:
    """``{conversation_id: (inbox_id, checked_at)}`` for the excluded ones of ``ids``."""
    wanted = _ids(ids)
    if not wanted:
        return {}
    rows = con.execute(
        "SELECT conversation_id, inbox_id, checked_at FROM scope_exclusions "
        "WHERE conversation_id IN (SELECT unnest(?::VARCHAR[]))",
        [wanted],
    ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def clear_exclusions(con: Connection, ids: Iterable[str]) -> int:
    wanted = _ids(ids)
    if not wanted:
        return 0
    return _count(
        con.execute(
            "DELETE FROM scope_exclusions WHERE conversation_id IN (SELECT unnest(?::VARCHAR[]))", [wanted]
        )
    )


# --------------------------------------------------------------------------- conversation items

# conversation_items.content is a VIRTUAL column derived from raw: never written.
_ITEM_BODY = ("text", "redacted", "raw")
_ALL_ITEM_COLUMNS = (*(c for c in ITEM_COLUMNS if c != "content"), "deleted_at", "synced_at", "source_at")
# An item is redacted when Gladly says so (a deleted recording), or when a version stored with a
# body comes back emptied: Gladly's redact empties an item and sends nothing else.
_REDACTED = "(s.redacted OR (s.emptied AND k.had_body))"
# Row groups of a prepared export part (Parquet), as small as the store's: flat memory.
_PREPARED_ROW_GROUP = 10240
# Pass 1 of an items write reads only these.
_ITEM_KEYS = json.dumps(
    {"id": "VARCHAR", "conversationId": "VARCHAR", "customerId": "VARCHAR", "timestamp": "VARCHAR"}
)


@dialect_specific
def upsert_items(
    con: Connection,
    items: Sequence[dict],
    *,
    source_at: datetime,
    synced_at: datetime,
    complete_conversation_id: str | None = None,
) -> int:
    """Items read from the API (one conversation's list, or single items); returns rows written.

    Each item is stored under its own ``conversationId``. A stored redacted item keeps its emptied
    text, content and raw (never un-redacted); a redacted version always overwrites them. When
    ``complete_conversation_id`` is given the list was complete (not Limited-Data): stored items of
    that conversation missing from it get ``deleted_at`` (item ids can change on a profile merge),
    and the items present have it cleared.
    """
    source_at, synced_at = _cell("ts", source_at), _cell("ts", synced_at)
    with _staged(con, "stage_item_json", items_source(items)) as stage:
        written = _write_items(con, _from_json(stage), source_at=source_at, synced_at=synced_at)
        if complete_conversation_id is not None:
            mark_missing_items_deleted(
                con, complete_conversation_id, "item_keys", at=source_at, synced_at=synced_at
            )
    con.execute("DROP TABLE IF EXISTS item_keys")
    return written


def mark_missing_items_deleted(
    con: Connection, conversation_id: str, listed: str, *, at: datetime, synced_at: datetime
) -> None:
    """The conversation's complete item list was read: its stored items whose id is not in the
    table ``listed`` (the batch's ids) get ``deleted_at`` = ``at``. Both backends' ``upsert_items``."""
    con.execute(
        f"""
        UPDATE conversation_items SET deleted_at = ?, source_at = ?, synced_at = ?
        WHERE conversation_id = ? AND deleted_at IS NULL
          AND id NOT IN (SELECT id FROM {listed})
        """,
        [at, at, synced_at, conversation_id],
    )


def stored_item_ids(con: Connection, ids: Iterable[str]) -> set[str]:
    """The ones of ``ids`` that ``conversation_items`` holds."""
    wanted = _ids(ids)
    if not wanted:
        return set()
    rows = con.execute(
        "SELECT id FROM conversation_items WHERE id IN (SELECT unnest(?::VARCHAR[]))", [wanted]
    ).fetchall()
    return {row[0] for row in rows}


@dataclass(frozen=True)
class _ItemRelations:
    """A batch of items as SQL: ``keys`` gives ord, id, conversation_id, customer_id and ``item_at`` (the
    item's time); ``rows`` gives every ``conversation_items`` column of :data:`ITEM_COLUMNS` + ord."""

    keys: str
    rows: str


def _from_json(relation: str) -> _ItemRelations:
    """Items as JSON text (``raw`` + ``ord``): the keys pass parses only the key fields."""
    keys = f"""
        SELECT ord, e.id AS id, e.conversationId AS conversation_id, e.customerId AS customer_id,
            TRY_CAST(e.timestamp AS TIMESTAMPTZ) AS item_at
        FROM (SELECT ord, from_json(raw, '{_ITEM_KEYS}') AS e FROM {relation})
    """
    return _ItemRelations(keys=keys, rows=items_select_sql(relation))


def _from_prepared(path: Path | str) -> _ItemRelations:
    """Items already transformed by :func:`prepare_export_items` (a Parquet file)."""
    relation = f"read_parquet({sql_string(str(path))})"
    return _ItemRelations(
        keys=f"SELECT ord, id, conversation_id, customer_id, timestamp AS item_at FROM {relation}",
        rows=f"SELECT * FROM {relation}",
    )


def prepare_export_items(con: Connection, ndjson_path: Path | str, prepared_path: Path | str) -> list[str]:
    """Transform an export items part with the items SQL into a Parquet file, and return its
    distinct conversation ids, first seen first.

    ``con`` is an in-memory DuckDB, not the store: this is the part of an export ingest that parses
    JSON (most of its work), done while the file downloads, so the store's transaction for the part
    only reads typed columns (:func:`upsert_export_items` with the Parquet file). Raises DuckDB's
    ``InvalidInputException`` for a line that is not JSON.
    """
    target = sql_string(str(prepared_path))
    con.execute("SET TimeZone = 'UTC'")  # as the store's: a time without an offset is UTC
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        f"COPY (SELECT * EXCLUDE (content) FROM ({items_select_sql(ndjson_items_source(ndjson_path))})) "
        f"TO {target} (FORMAT parquet, ROW_GROUP_SIZE {_PREPARED_ROW_GROUP})"
    )
    rows = con.execute(
        f"SELECT conversation_id FROM read_parquet({target}) WHERE conversation_id IS NOT NULL "
        "GROUP BY conversation_id ORDER BY min(ord)"
    ).fetchall()
    return [row[0] for row in rows]


@dialect_specific
def upsert_export_items(
    con: Connection, path: Path | str, *, job_end_at: datetime, synced_at: datetime
) -> int:
    """Items from one export part (~100k lines): the ndjson Gladly serves, or the Parquet file
    :func:`prepare_export_items` made of it (then no JSON is parsed while the store is held).

    Only items of conversations in the store (not deleted, not excluded by the inbox filter) are
    written, with ``source_at`` = ``job_end_at`` and the conversation's current customer. An item
    read from the API after ``job_end_at`` is not overwritten unless the export shows it redacted;
    a redacted item is never un-redacted; an item's ``deleted_at`` is kept. Returns rows written.

    Call it once per part, each in its own transaction, so the store is handed over in between.
    """
    if str(path).endswith(".parquet"):
        sources: _ItemRelations | tuple[_ItemRelations, _ItemRelations] = _from_prepared(path)
    else:
        cheap = f"(SELECT json AS raw, 0::BIGINT AS ord FROM read_ndjson_objects({sql_string(str(path))}))"
        sources = (_from_json(cheap), _from_json(ndjson_items_source(path)))
    # Stream: no insertion order to keep (``ord`` numbers the lines), and each row group is
    # written to the file as soon as it fills instead of buffering five of them.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET write_buffer_row_group_count = 1")
    with _then(
        con,
        "RESET preserve_insertion_order",
        "RESET write_buffer_row_group_count",
        "DROP TABLE IF EXISTS item_keys",
        "DROP TABLE IF EXISTS item_versions",
    ):
        return _write_items(
            con, sources, source_at=_cell("ts", job_end_at), synced_at=_cell("ts", synced_at), export=True
        )


def _write_items(
    con: Connection,
    sources: _ItemRelations | tuple[_ItemRelations, _ItemRelations],
    *,
    source_at: datetime,
    synced_at: datetime,
    export: bool = False,
) -> int:
    """Write a batch of items (see :class:`_ItemRelations`).

    ``sources`` is one batch, or a pair for an ndjson file: a cheap one whose ``ord`` is constant and
    one that numbers the lines, used only when an id occurs twice. Two passes, so that wide rows are
    never held in memory:

    1. ``item_keys`` (:func:`_build_item_keys`): per id the last version's ``ord`` (only ids,
       conversation ids and times are read), the stored row's state, and whether it is ``stale``
       (export only: the stored row was read from the API after the job's end, ``source_at`` here).
       Stored rows are looked up only within the batch's time window (:func:`_stored_window`), so
       the pass does not grow with the store.
    2. The full rows stream into the table for new ids and plain replacements (stored row neither
       stale nor redacted: delete + insert). The rare rest needs the new version's ``redacted`` and
       goes through a small temp table holding only the rows that change: ``redact`` (stale, now
       redacted: body only), ``keep_redacted`` (stored redacted, new version not: all but the
       emptied body) and ``replace`` (stored redacted, new one too).
    """
    source, window = _build_item_keys(con, sources, source_at=source_at, export=export)
    new, replaced, special = con.execute(
        """
        SELECT count(*) FILTER (NOT existed),
            count(*) FILTER (existed AND NOT stale AND NOT stored_redacted),
            count(*) FILTER (existed AND (stale OR stored_redacted))
        FROM item_keys
        """
    ).fetchone() or (0, 0, 0)
    values = {
        **{c: f"s.{c}" for c in ITEM_COLUMNS},
        "redacted": _REDACTED,
        "customer_id": "k.customer_id",
        # An export keeps the item's deleted_at; the API says the item exists.
        "deleted_at": "k.stored_deleted_at" if export else "NULL::TIMESTAMPTZ",
        "synced_at": "$synced_at",
        "source_at": "$source_at",
    }
    times = {"synced_at": synced_at, "source_at": source_at}
    # item_keys must be the hash join's build side: the optimizer, misled by the file scan's tiny
    # estimate, would otherwise build (hold in memory) the wide transformed rows.
    joined = f"({source.rows}) AS s JOIN item_keys AS k ON k.id = s.id AND k.ord = s.ord"
    con.execute("SET disabled_optimizers = 'join_order,build_side_probe_side'")
    with _then(con, "RESET disabled_optimizers"):
        if replaced:
            con.execute(
                f"DELETE FROM conversation_items AS t WHERE {window} AND t.id IN "
                "(SELECT id FROM item_keys WHERE existed AND NOT stale AND NOT stored_redacted)"
            )
        if new or replaced:
            con.execute(
                f"""
                INSERT INTO conversation_items ({", ".join(_ALL_ITEM_COLUMNS)})
                SELECT {", ".join(values[c] for c in _ALL_ITEM_COLUMNS)}
                FROM {joined} WHERE NOT k.existed OR NOT (k.stale OR k.stored_redacted)
                """,
                times,
            )
        changed = _update_special_items(con, joined, values, times, window) if special else 0
    if (replaced or changed) and _newly_redacted(con, window):
        note_erasure(con, synced_at)
    return new + replaced + changed


def _newly_redacted(con: Connection, window: str) -> bool:
    """Whether this write redacted an item that was stored with its content (``item_keys`` holds the
    ids written and their stored state; ``window`` bounds the stored look-up as in the keys pass)."""
    rows = con.execute(
        f"""
        SELECT count(*) FROM item_keys AS k JOIN conversation_items AS t ON t.id = k.id AND {window}
        WHERE k.existed AND NOT k.stored_redacted AND t.redacted
        """
    ).fetchall()
    return bool(rows[0][0])


# A stored item is looked for within its batch's time window widened by this much (an item's
# timestamp never changes, but the API and the export might write it with other precision).
WINDOW_MARGIN = timedelta(hours=1)


def _build_item_keys(
    con: Connection,
    sources: _ItemRelations | tuple[_ItemRelations, _ItemRelations],
    *,
    source_at: datetime,
    export: bool,
) -> tuple[_ItemRelations, str]:
    """Create ``item_keys`` (see :func:`_write_items`); return the batch it was read from (the
    numbered one when an id occurs twice) and the predicate on ``t`` that bounds stored look-ups."""
    source, numbered = (sources, sources) if isinstance(sources, _ItemRelations) else sources
    if export:
        scoped = """
            SELECT k.id, k.ord, c.customer_id FROM item_versions AS k
            JOIN conversations AS c ON c.id = k.conversation_id AND c.deleted_at IS NULL
            WHERE k.conversation_id NOT IN (SELECT conversation_id FROM scope_exclusions)
        """
        stale = "t.id IS NOT NULL AND t.source_at > $source_at"
    else:
        # Whatever Gladly still serves, an erased customer's items are never written again: not
        # when the item, its conversation or the stored item belongs to a deleted profile.
        scoped = """
            SELECT k.id, k.ord, k.customer_id FROM item_versions AS k
            WHERE NOT EXISTS (
                SELECT 1 FROM customers AS e WHERE e.deleted_at IS NOT NULL AND (
                    e.id = k.customer_id
                    OR e.id IN (SELECT customer_id FROM conversations WHERE id = k.conversation_id)
                    OR e.id IN (SELECT customer_id FROM conversation_items WHERE id = k.id)
                )
            )
        """
        stale = "false"
    if _read_item_versions(con, source) and numbered is not source:
        _read_item_versions(con, source := numbered)
    window = _stored_window(con)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE item_keys AS
        WITH scoped AS ({scoped})
        SELECT s.id, s.ord, s.customer_id, k.versions, t.id IS NOT NULL AS existed,
            coalesce(t.redacted, false) AS stored_redacted, t.deleted_at AS stored_deleted_at,
            coalesce({stale}, false) AS stale,
            coalesce(NOT t.redacted AND (t.text IS NOT NULL OR t.attachments > 0), false) AS had_body
        FROM scoped AS s
        JOIN item_versions AS k USING (id)
        LEFT JOIN (
            SELECT id, redacted, source_at, deleted_at, text,
                coalesce(json_array_length(json_extract(raw, '$.content.attachments')), 0) AS attachments
            FROM conversation_items AS t WHERE {window}
        ) AS t ON t.id = s.id
        """,
        {"source_at": source_at} if export else None,
    )
    con.execute("DROP TABLE item_versions")
    return source, window


def _read_item_versions(con: Connection, batch: _ItemRelations) -> int:
    """``item_versions``: per id of the batch the last version's ``ord``, conversation and customer,
    how many versions, and the earliest and latest time. Returns how many ids occur twice."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE item_versions AS
        SELECT id, max(ord) AS ord, arg_max(conversation_id, ord) AS conversation_id,
            arg_max(customer_id, ord) AS customer_id, count(*) AS versions,
            min(item_at) AS first_at, max(item_at) AS last_at, count(*) - count(item_at) AS untimed
        FROM ({batch.keys})
        GROUP BY id
        HAVING id IS NOT NULL  -- after grouping: a WHERE would parse every line twice
        """
    )
    row = con.execute("SELECT count(*) FILTER (versions > 1) FROM item_versions").fetchone()
    return int(row[0]) if row else 0


def _stored_window(con: Connection) -> str:
    """A predicate on stored items ``t``: within the batch's time window (plus ``WINDOW_MARGIN``),
    or without a timestamp. Written as literals, so DuckDB skips the row groups outside it by their
    min/max statistics; ``true`` when a batch item has no timestamp."""
    first, last, untimed = con.execute(
        "SELECT min(first_at), max(last_at), sum(untimed) FROM item_versions"
    ).fetchone() or (None, None, 0)
    if first is None or last is None or untimed:
        return "true"
    low, high = (first - WINDOW_MARGIN).isoformat(), (last + WINDOW_MARGIN).isoformat()
    return f"(t.timestamp BETWEEN TIMESTAMPTZ '{low}' AND TIMESTAMPTZ '{high}' OR t.timestamp IS NULL)"


def _update_special_items(
    con: Connection, joined: str, values: dict[str, str], times: dict, window: str
) -> int:
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE item_updates AS
        SELECT
            CASE WHEN k.stale THEN 'redact' WHEN {_REDACTED} THEN 'replace' ELSE 'keep_redacted' END
                AS action,
            {", ".join(f"{values[c]} AS {c}" for c in _ALL_ITEM_COLUMNS)}
        FROM {joined}
        WHERE k.existed AND (k.stale OR k.stored_redacted)
          AND NOT (k.stale AND (k.stored_redacted OR NOT {_REDACTED}))
        """,
        times,
    )
    everything = [c for c in _ALL_ITEM_COLUMNS if c != "id"]
    plans = {
        "replace": everything,
        "keep_redacted": [c for c in everything if c not in _ITEM_BODY],
        "redact": [*_ITEM_BODY, "synced_at"],
    }
    changed = 0
    for action, columns in plans.items():
        changed += _count(
            con.execute(
                f"""
                UPDATE conversation_items AS t SET {", ".join(f"{c} = u.{c}" for c in columns)}
                FROM item_updates AS u WHERE {window} AND t.id = u.id AND u.action = '{action}'
                """
            )
        )
    con.execute("DROP TABLE IF EXISTS item_updates")
    return changed


# --------------------------------------------------------------------------- events


def insert_events(con: Connection, events: Sequence[dict]) -> int:
    """Events (Gladly's objects) not stored yet; the last of equal ids wins. Returns rows inserted."""
    if not events:
        return 0
    from gladly_sync.storage.rows import event_row

    rows = [event_row(event) for event in events]
    with _staged(con, "stage_events", _arrow(rows, EVENT_COLUMNS)) as stage:
        names = ", ".join(EVENT_COLUMNS)
        return _count(
            con.execute(
                f"""
                INSERT INTO events ({names})
                SELECT {names} FROM {_last_wins(stage)} AS s
                WHERE s.id NOT IN (SELECT id FROM events)
                """
            )
        )


def known_event_ids(con: Connection, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` were seen before: stored in ``events`` or remembered in ``skipped_events``."""
    wanted = _ids(ids)
    if not wanted:
        return set()
    rows = con.execute(
        """
        SELECT id FROM events WHERE id IN (SELECT unnest($1::VARCHAR[]))
        UNION
        SELECT id FROM skipped_events WHERE id IN (SELECT unnest($1::VARCHAR[]))
        """,
        [wanted],
    ).fetchall()
    return {row[0] for row in rows}


def remember_skipped_events(con: Connection, events: Iterable[tuple[str, datetime | None]]) -> int:
    """Remember out-of-scope event ids ``(id, timestamp)`` so they never make anything dirty again."""
    batch = [{"id": i, "timestamp": t} for i, t in events]
    if not batch:
        return 0
    with _staged(con, "stage_skipped", _arrow(batch, {"id": "str", "timestamp": "ts"})) as stage:
        return _count(
            con.execute(
                f"""
                INSERT INTO skipped_events (id, timestamp) SELECT id, timestamp FROM {_last_wins(stage)}
                ON CONFLICT (id) DO NOTHING
                """
            )
        )


def prune_skipped_events(con: Connection, older_than: datetime) -> int:
    return _count(con.execute("DELETE FROM skipped_events WHERE timestamp < ?", [_cell("ts", older_than)]))


# --------------------------------------------------------------------------- reference lists


def _replace_reference(con: Connection, table: str, rows: Sequence[dict], columns: dict[str, str]) -> int:
    if not rows:
        return 0
    names = list(columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c != "id")
    with _staged(con, f"stage_{table}", _arrow(rows, columns)) as stage:
        return _count(
            con.execute(
                f"""
                INSERT INTO {table} ({", ".join(names)}) SELECT {", ".join(names)} FROM {_last_wins(stage)}
                ON CONFLICT (id) DO UPDATE SET {updates}
                """
            )
        )


REFERENCE_COLUMNS = {"inboxes": INBOX_COLUMNS, "agents": AGENT_COLUMNS, "topics": TOPIC_COLUMNS}


def replace_reference_list(con: Connection, table: str, rows: Sequence[dict]) -> int:
    """Upsert one reference list (``inboxes``, ``agents`` or ``topics``); returns how many of its rows
    are new or differ from the stored ones (``raw``), i.e. how many the store did not already show."""
    columns = REFERENCE_COLUMNS[table]
    changed = _changed_rows(con, table, rows, columns)
    _replace_reference(con, table, rows, columns)
    return changed


def _changed_rows(con: Connection, table: str, rows: Sequence[dict], columns: dict[str, str]) -> int:
    """How many of ``rows`` are not in ``table`` or differ from it (by ``raw``)."""
    if not rows:
        return 0
    with _staged(con, f"compare_{table}", _arrow(rows, columns)) as stage:
        ((changed,),) = con.execute(
            f"""
            SELECT count(*) FROM {_last_wins(stage)} AS s LEFT JOIN {table} AS t ON t.id = s.id
            WHERE t.id IS NULL OR t.raw::VARCHAR IS DISTINCT FROM s.raw::VARCHAR
            """
        ).fetchall()
    return int(changed)


def replace_inboxes(con: Connection, rows: Sequence[dict]) -> int:
    """Upsert the inbox list; inboxes no longer listed are kept (old conversations name them)."""
    return _replace_reference(con, "inboxes", rows, INBOX_COLUMNS)


def replace_agents(con: Connection, rows: Sequence[dict]) -> int:
    """Upsert the agent list; agents no longer listed are kept."""
    return _replace_reference(con, "agents", rows, AGENT_COLUMNS)


def replace_topics(con: Connection, rows: Sequence[dict]) -> int:
    """Upsert the topic list; topics no longer listed are kept."""
    return _replace_reference(con, "topics", rows, TOPIC_COLUMNS)


def replace_organization(con: Connection, row: dict) -> int:
    """Store the organization; the store holds one, so a row with another id replaces it. Returns 1
    when the store did not already show it (new, or another ``raw``), else 0."""
    changed = _changed_rows(con, "organization", [row], ORGANIZATION_COLUMNS)
    con.execute("DELETE FROM organization WHERE id <> ?", [row["id"]])
    _replace_reference(con, "organization", [row], ORGANIZATION_COLUMNS)
    return changed


# --------------------------------------------------------------------------- cursors, export jobs, runs


def load_cursor(con: Connection, stream: str) -> str | None:
    row = con.execute("SELECT cursor FROM sync_state WHERE stream = ?", [stream]).fetchone()
    return row[0] if row else None


def save_cursor(con: Connection, stream: str, value: str | None, at: datetime) -> None:
    con.execute(
        """
        INSERT INTO sync_state (stream, cursor, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at
        """,
        [stream, value, _cell("ts", at)],
    )


def all_cursors(con: Connection) -> dict[str, dict[str, Any]]:
    """``{stream: {"cursor": str, "updated_at": datetime}}``."""
    rows = con.execute("SELECT stream, cursor, updated_at FROM sync_state ORDER BY stream").fetchall()
    return {row[0]: {"cursor": row[1], "updated_at": row[2]} for row in rows}


def processed_export_jobs(con: Connection) -> dict[str, datetime | None]:
    """``{job_id: updated_at}`` of the export jobs already ingested."""
    rows = con.execute("SELECT id, updated_at FROM export_jobs ORDER BY id").fetchall()
    return {row[0]: row[1] for row in rows}


def _job_time(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


def record_export_job(con: Connection, job: dict, items: int, customers: int, at: datetime) -> None:
    """Remember an ingested export job (Gladly's job object) with its ``updatedAt`` and window."""
    parameters = job.get("parameters") if isinstance(job.get("parameters"), dict) else {}
    con.execute(
        """
        INSERT INTO export_jobs (id, updated_at, start_at, end_at, processed_at, items, customers)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, start_at = excluded.start_at,
            end_at = excluded.end_at, processed_at = excluded.processed_at, items = excluded.items,
            customers = excluded.customers
        """,
        [
            job["id"],
            _job_time(job.get("updatedAt")),
            _job_time(parameters.get("startAt")),
            _job_time(parameters.get("endAt")),
            _cell("ts", at),
            items,
            customers,
        ],
    )


def record_skipped_lines(
    con: Connection, job_id: str, lines: Iterable[tuple[str, int, str]], at: datetime
) -> int:
    """Remember the export lines ``(file, line number, reason)`` skipped while ingesting ``job_id``;
    they replace what an earlier ingest of the same job recorded. Returns the lines recorded."""
    con.execute("DELETE FROM export_skipped_lines WHERE job_id = ?", [job_id])
    batch = [{"job_id": job_id, "file": f, "line": n, "reason": r, "recorded_at": at} for f, n, r in lines]
    if not batch:
        return 0
    columns = {"job_id": "str", "file": "str", "line": "int", "reason": "str", "recorded_at": "ts"}
    with _staged(con, "stage_skipped_lines", _arrow(batch, columns)) as stage:
        con.execute(
            f"""
            INSERT INTO export_skipped_lines (job_id, file, line, reason, recorded_at)
            SELECT job_id, file, line, reason, recorded_at FROM {_last_wins(stage, "file, line")}
            """
        )
    return len(batch)


def start_run(
    con: Connection, run_id: str, job: str, started_at: datetime, pid: int, host: str | None = None
) -> None:
    """A run begins: status ``running`` until ``finish_run`` (a crashed run stays ``running``).
    ``pid`` and ``host`` name the process running it."""
    con.execute(
        "INSERT INTO sync_runs (run_id, job, started_at, status, pid, host) "
        "VALUES (?, ?, ?, 'running', ?, ?)",
        [run_id, job, _cell("ts", started_at), pid, host],
    )


def finish_run(
    con: Connection,
    run_id: str,
    *,
    status: str,
    finished_at: datetime,
    requests: int,
    rate_limited: int,
    rows: dict[str, int],
    error: str | None,
) -> None:
    """Record how a run ended: ``ok``, ``failed``, ``interrupted`` or ``skipped``."""
    con.execute(
        """
        UPDATE sync_runs SET status = ?, finished_at = ?, requests = ?, rate_limited = ?, rows = ?, error = ?
        WHERE run_id = ?
        """,
        [status, _cell("ts", finished_at), requests, rate_limited, json.dumps(rows), error, run_id],
    )


def running_runs(con: Connection, job: str) -> list[tuple[str, int | None, str | None]]:
    """``(run_id, pid, host)`` of the job's runs recorded ``running`` (live, or left by a process
    that died)."""
    return [
        (run_id, pid, host)
        for run_id, pid, host in con.execute(
            "SELECT run_id, pid, host FROM sync_runs WHERE job = ? AND status = 'running' "
            "ORDER BY started_at",
            [job],
        ).fetchall()
    ]


def mark_interrupted(con: Connection, run_ids: Sequence[str], error: str) -> None:
    """Runs whose process is gone: ``interrupted`` (``finished_at`` stays unknown)."""
    for run_id in run_ids:
        con.execute(
            "UPDATE sync_runs SET status = 'interrupted', error = ? WHERE run_id = ? AND status = 'running'",
            [error, run_id],
        )


def last_runs(con: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first, ``rows`` parsed."""
    result = con.execute(
        """
        SELECT run_id, job, started_at, finished_at, status, requests, rate_limited, rows, error, pid, host
        FROM sync_runs ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT ?
        """,
        [limit],
    )
    names = [d[0] for d in result.description]
    runs = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    for run in runs:
        run["rows"] = json.loads(run["rows"]) if run["rows"] is not None else None
    return runs
