"""Item writes on PostgreSQL: DuckDB parses, PostgreSQL stores.

The item rules are those of ``storage/upserts.py`` (last version of an id in a batch wins; a stored
redaction is never undone; an export row never overwrites one read from the API after the job's end
unless it redacts it; an export keeps an item's ``deleted_at``). The work is split by engine:

1. an in-memory DuckDB turns the JSON (an API batch, or an export part read by
   ``read_ndjson_objects``) into item rows with the same ``items_select_sql`` the DuckDB store uses,
   keeps each id's last version, and writes them as CSV into a private temp folder (0700, removed
   at once; DuckDB's spill files go there too, never into the working directory);
2. the CSV is COPYed into a PostgreSQL temp table, and one ``INSERT ... ON CONFLICT (id) DO UPDATE``
   applies the rules.

These replace their DuckDB versions through ``storage/dialect.py`` (``IMPLEMENTATIONS``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from gladly_sync.storage.rows import (
    ITEM_COLUMNS,
    items_select_sql,
    items_source,
    ndjson_items_source,
    sql_string,
)
from gladly_sync.storage.upserts import mark_missing_items_deleted

if TYPE_CHECKING:
    from gladly_sync.storage.postgres import PgConnection

# content is generated from raw in the store: never written
STAGED = tuple(c for c in ITEM_COLUMNS if c != "content")
BODY = ("text", "redacted", "raw")
# As in upserts: redacted when Gladly says so (a deleted recording), or when a version stored with a
# body (text or attachments, not redacted) comes back emptied.
_ATTACHMENTS = "stored.raw -> 'content' -> 'attachments'"
REDACTED = (
    "(s.redacted OR (s.emptied AND coalesce(NOT stored.redacted AND (stored.text IS NOT NULL OR "
    f"CASE WHEN json_typeof({_ATTACHMENTS}) = 'array' THEN json_array_length({_ATTACHMENTS}) ELSE 0 END"
    " > 0), false)))"
)
# As in upserts: the API path never writes an item again when the item, its conversation or the
# stored item belongs to an erased customer.
NOT_ERASED = """NOT EXISTS (
    SELECT 1 FROM customers AS e WHERE e.deleted_at IS NOT NULL AND (
        e.id = s.customer_id
        OR e.id IN (SELECT customer_id FROM conversations WHERE id = s.conversation_id)
        OR e.id = stored.customer_id
    )
)"""
COPY_CHUNK = 1 << 20


@contextmanager
def _parser() -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """An in-memory DuckDB that only parses (a small buffer pool; UTC times), and a private folder
    (0700, removed on exit) for its spill files and the CSV it writes."""
    with tempfile.TemporaryDirectory(prefix="gladly-items-") as folder:
        duck = duckdb.connect(
            config={
                "memory_limit": "200MB",
                "temp_directory": str(Path(folder) / "spill"),
                "autoinstall_known_extensions": False,
            }
        )
        try:
            duck.execute("SET TimeZone = 'UTC'")
            yield duck, Path(folder)
        finally:
            duck.close()


def _csv_of_items(
    duck: duckdb.DuckDBPyConnection, folder: Path, source: str, *, rows: str | None = None
) -> Path:
    """The item rows of ``source`` (``raw`` + ``ord``; or ``rows``, already transformed item rows),
    each id's last version, as CSV in ``folder``."""
    path = folder / "items.csv"
    columns = ", ".join("raw::VARCHAR AS raw" if c == "raw" else c for c in (*STAGED, "emptied"))
    duck.execute(
        f"""
        COPY (
            SELECT {columns} FROM ({rows or items_select_sql(source)})
            WHERE id IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY ord DESC) = 1
        ) TO {sql_string(str(path))} (FORMAT csv, HEADER false)
        """
    )
    return path


def _stage(con: PgConnection, csv_path: Path) -> None:
    """COPY the CSV into the temp table ``item_stage``."""
    cursor = con.raw.cursor()
    cursor.execute("DROP TABLE IF EXISTS pg_temp.item_stage")
    cursor.execute(
        "CREATE TEMP TABLE item_stage (id text, conversation_id text, customer_id text, session_id text, "
        "timestamp timestamptz, content_type text, initiator_type text, initiator_id text, "
        "responder_type text, responder_id text, text text, redacted boolean, raw json, emptied boolean)"
    )
    columns = ", ".join((*STAGED, "emptied"))
    with cursor.copy(f"COPY item_stage ({columns}) FROM STDIN (FORMAT csv)") as copy, open(
        csv_path, "rb"
    ) as source:
        while chunk := source.read(COPY_CHUNK):
            copy.write(chunk)


def _merge(con: PgConnection, *, export: bool, source_at: datetime, synced_at: datetime) -> int:
    """Upsert ``item_stage`` into ``conversation_items`` by the item rules; returns rows written."""
    stale = "t.source_at > excluded.source_at" if export else "false"
    others = [c for c in STAGED if c not in (*BODY, "id")]
    assignments = [
        *(f"{c} = CASE WHEN {stale} OR NOT t.redacted OR excluded.redacted THEN excluded.{c} ELSE t.{c} END"
          for c in BODY),
        *(f"{c} = CASE WHEN {stale} THEN t.{c} ELSE excluded.{c} END" for c in (*others, "source_at")),
        "synced_at = excluded.synced_at",
        *([] if export else ["deleted_at = excluded.deleted_at"]),
    ]
    if export:
        customer, scope = "c.customer_id", (
            "JOIN conversations AS c ON c.id = s.conversation_id AND c.deleted_at IS NULL "
            "WHERE s.conversation_id NOT IN (SELECT conversation_id FROM scope_exclusions)"
        )
    else:
        customer, scope = "s.customer_id", f"WHERE {NOT_ERASED}"
    values = [
        customer if c == "customer_id" else REDACTED if c == "redacted" else f"s.{c}" for c in STAGED
    ]
    cursor = con.raw.cursor()
    cursor.execute(
        f"""
        INSERT INTO conversation_items AS t ({", ".join(STAGED)}, deleted_at, synced_at, source_at)
        SELECT {", ".join(values)}, NULL, %(synced_at)s, %(source_at)s
        FROM item_stage AS s LEFT JOIN conversation_items AS stored ON stored.id = s.id {scope}
        ON CONFLICT (id) DO UPDATE SET {", ".join(assignments)}
        WHERE NOT {stale} OR (excluded.redacted AND NOT t.redacted)
        """,
        {"synced_at": synced_at, "source_at": source_at},
    )
    return cursor.rowcount


def upsert_items(
    con: PgConnection,
    items: Sequence[dict],
    *,
    source_at: datetime,
    synced_at: datetime,
    complete_conversation_id: str | None = None,
) -> int:
    """PostgreSQL's ``upserts.upsert_items`` (same arguments, same rules)."""
    with _parser() as (duck, folder):
        duck.register("stage_item_json", items_source(items))
        _stage(con, _csv_of_items(duck, folder, "stage_item_json"))
    try:
        written = _merge(con, export=False, source_at=source_at, synced_at=synced_at)
        if complete_conversation_id is not None:
            mark_missing_items_deleted(
                con, complete_conversation_id, "item_stage", at=source_at, synced_at=synced_at
            )
    finally:
        con.unregister("item_stage")
    return written


def upsert_export_items(
    con: PgConnection, path: Path | str, *, job_end_at: datetime, synced_at: datetime
) -> int:
    """PostgreSQL's ``upserts.upsert_export_items``: DuckDB reads the part (ndjson, or the Parquet
    file ``upserts.prepare_export_items`` made of it), PostgreSQL merges it."""
    parquet = str(path).endswith(".parquet")
    rows = f"SELECT * FROM read_parquet({sql_string(str(path))})" if parquet else None
    with _parser() as (duck, folder):
        _stage(con, _csv_of_items(duck, folder, ndjson_items_source(path), rows=rows))
    try:
        return _merge(con, export=True, source_at=job_end_at, synced_at=synced_at)
    finally:
        con.unregister("item_stage")


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "upsert_items": upsert_items,
    "upsert_export_items": upsert_export_items,
}
