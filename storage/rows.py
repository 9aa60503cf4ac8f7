"""Gladly JSON → row dicts for the store's tables: pure transforms, no I/O.

Every row keeps the object exactly as Gladly sent it in ``raw`` (same keys and values). Times are
aware UTC ``datetime``s. JSON columns hold plain Python values here; ``storage/upserts.py`` serialises
them.

Conversation items have ONE transform for both paths, written in SQL (:func:`items_select_sql`) so
DuckDB can run it over an export file at full speed; the API path feeds the same SELECT with
``json.dumps(item)`` strings. :func:`transform_items` runs that SQL in an in-memory DuckDB for tests
and for callers that need an item's readable ``text`` (e.g. the outbox reconciler).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(?:(Z|z)|([+-])(\d{2}):?(\d{2}))?$"
)


def parse_timestamp(value: str | None) -> datetime | None:
    """RFC 3339 with 0–9 fractional digits (Gladly sends all of these) → aware UTC datetime.

    ``None`` and ``""`` give ``None``; a string without an offset is taken as UTC; anything else that
    is not a timestamp raises ``ValueError``. Digits past microseconds are truncated.
    """
    if value is None or value == "":
        return None
    match = _TIMESTAMP.match(value.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    tz = UTC
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    parsed = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=tz
    )
    return parsed.astimezone(UTC)


def _timestamp_or_none(value: Any) -> datetime | None:
    """A typed column never fails a sync: an unparseable time is NULL (it stays in ``raw``)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _primary(entries: Any) -> str | None:
    """The ``original`` of the entry marked primary, else of the first entry."""
    if not isinstance(entries, list) or not entries:
        return None
    objects = [e for e in entries if isinstance(e, dict)]
    chosen = next((e for e in objects if e.get("primary") is True), objects[0] if objects else None)
    return chosen.get("original") if chosen else None


def customer_row(profile: dict, *, synced_at: datetime, source_at: datetime) -> dict:
    """A ``customers`` row from ``GET /customer-profiles/{id}``."""
    emails = profile.get("emails")
    phones = profile.get("phones")
    return {
        "id": profile["id"],
        "name": profile.get("name"),
        "primary_email": _primary(emails),
        "primary_phone": _primary(phones),
        "emails": emails,
        "phones": phones,
        "external_customer_id": profile.get("externalCustomerId"),
        "custom_attributes": profile.get("customAttributes"),
        "created_at": _timestamp_or_none(profile.get("createdAt")),
        "updated_at": _timestamp_or_none(profile.get("updatedAt")),
        "merged_into": None,
        "deleted_at": None,
        "raw": profile,
        "synced_at": synced_at,
        "source_at": source_at,
    }


def export_customer_row(obj: dict, *, synced_at: datetime, source_at: datetime) -> dict:
    """A partial ``customers`` row from an export's ``customers.jsonl`` line.

    The export has flat ``emailAddresses``/``phoneNumbers`` strings (they become ``{"original": s}``)
    and no customAttributes, createdAt or updatedAt: those keys are absent here on purpose, so an
    export row can never overwrite them.
    """
    emails = [{"original": s} for s in obj.get("emailAddresses") or [] if isinstance(s, str)]
    phones = [{"original": s} for s in obj.get("phoneNumbers") or [] if isinstance(s, str)]
    return {
        "id": obj["id"],
        "name": obj.get("name"),
        "primary_email": _primary(emails),
        "primary_phone": _primary(phones),
        "emails": emails,
        "phones": phones,
        "external_customer_id": obj.get("externalCustomerId"),
        "raw": obj,
        "synced_at": synced_at,
        "source_at": source_at,
    }


def conversation_row(conv: dict, *, synced_at: datetime, source_at: datetime) -> dict:
    """A ``conversations`` row from ``GET /conversations/{id}``."""
    topic_ids = conv.get("topicIds")
    return {
        "id": conv["id"],
        "customer_id": conv.get("customerId"),
        "inbox_id": conv.get("inboxId"),
        "agent_id": conv.get("agentId"),
        "status": conv.get("status"),
        "topic_ids": [t for t in topic_ids if isinstance(t, str)] if isinstance(topic_ids, list) else None,
        "custom_attributes": conv.get("customAttributes"),
        "created_at": _timestamp_or_none(conv.get("createdAt")),
        "closed_at": _timestamp_or_none(conv.get("closedAt")),
        "deleted_at": None,
        "raw": conv,
        "synced_at": synced_at,
        "source_at": source_at,
    }


def organization_row(obj: dict, *, synced_at: datetime) -> dict:
    return {
        "id": obj["id"],
        "name": obj.get("name"),
        "timezone": obj.get("timezone"),
        "raw": obj,
        "synced_at": synced_at,
    }


def inbox_row(obj: dict, *, synced_at: datetime) -> dict:
    return {
        "id": obj["id"],
        "name": obj.get("name"),
        "disabled": obj.get("disabled"),
        "raw": obj,
        "synced_at": synced_at,
    }


def agent_row(obj: dict, *, synced_at: datetime) -> dict:
    return {
        "id": obj["id"],
        "name": obj.get("name"),
        "email_address": obj.get("emailAddress"),
        "raw": obj,
        "synced_at": synced_at,
    }


def topic_row(obj: dict, *, synced_at: datetime) -> dict:
    return {
        "id": obj["id"],
        "name": obj.get("name"),
        "disabled": obj.get("disabled"),
        "parent_id": obj.get("parentId"),
        "raw": obj,
        "synced_at": synced_at,
    }


def event_row(event: dict) -> dict:
    """An ``events`` row. ``CUSTOMER/MERGED`` points at the destination customer and conversation."""
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    if event.get("type") == "CUSTOMER/MERGED":
        conversation_id = content.get("destinationConversationId") or content.get("conversationId")
        customer_id = content.get("destinationCustomerId")
    else:
        conversation_id = content.get("conversationId")
        customer_id = content.get("customerId")
    return {
        "id": event["id"],
        "type": event.get("type"),
        "timestamp": _timestamp_or_none(event.get("timestamp")),
        "conversation_id": conversation_id or None,
        "customer_id": customer_id or None,
        "raw": event,
    }


# --- conversation items: one SQL transform for the API and the export path -----------------------

MESSAGE_TYPES = (
    "CHAT_MESSAGE",
    "SMS",
    "EMAIL",
    "TWITTER",
    "WHATSAPP",
    "FACEBOOK_MESSAGE",
    "INSTAGRAM_DIRECT",
)
VOICE_TYPES = ("PHONE_CALL", "VOICEMAIL")

# One parse per item: the envelope and the content fields the transform reads. Every leaf is
# VARCHAR so a number-as-string quirk (recordingDuration '100') or a type change never fails a row.
_ITEM_TYPE = json.dumps(
    {
        "id": "VARCHAR",
        "conversationId": "VARCHAR",
        "customerId": "VARCHAR",
        "sessionId": "VARCHAR",
        "timestamp": "VARCHAR",
        "initiator": {"id": "VARCHAR", "type": "VARCHAR"},
        "responder": {"id": "VARCHAR", "type": "VARCHAR"},
        "content": {
            "type": "VARCHAR",
            "sessionId": "VARCHAR",
            "content": "VARCHAR",
            "subject": "VARCHAR",
            "body": "VARCHAR",
            "title": "VARCHAR",
            "attachments": "JSON",
            "messageData": "JSON",
            "recordingStatus": "VARCHAR",
            "recordingUrl": "VARCHAR",
            "recordingSummary": {"summary": "VARCHAR"},
        },
    }
)
# What conversation_items.content holds (a VIRTUAL column with this expression over raw).
CONTENT_SQL = "json_extract(raw, '$.content')"

# The columns items_select_sql produces, in order (plus the caller's ``ord``).
ITEM_COLUMNS = (
    "id",
    "conversation_id",
    "customer_id",
    "session_id",
    "timestamp",
    "content_type",
    "initiator_type",
    "initiator_id",
    "responder_type",
    "responder_id",
    "text",
    "content",
    "redacted",
    "raw",
)


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _html_to_text(expr: str) -> str:
    """Note HTML → plain text: <br>, </p>, </div>, </li> end lines; tags dropped; basic entities."""
    text = f"regexp_replace({expr}, '<br\\s*/?>|</p\\s*>|</div\\s*>|</li\\s*>', chr(10), 'gi')"
    text = f"regexp_replace({text}, '<[^>]*>', '', 'g')"
    for entity, char in (
        ("&nbsp;", "' '"),
        ("&lt;", "'<'"),
        ("&gt;", "'>'"),
        ("&quot;", "'\"'"),
        ("&#39;", "''''"),
        ("&apos;", "''''"),
        ("&amp;", "'&'"),  # last, so "&amp;lt;" stays "&lt;"
    ):
        text = f"replace({text}, '{entity}', {char})"
    return f"nullif(trim({text}, chr(10) || chr(13) || ' '), '')"


def _two_parts(first: str, second: str) -> str:
    """``first`` + blank line + ``second``, either side may be missing."""
    return f"nullif(concat_ws(chr(10) || chr(10), nullif({first}, ''), nullif({second}, '')), '')"


def items_select_sql(source: str) -> str:
    """A SELECT giving every ``conversation_items`` column in :data:`ITEM_COLUMNS` order, plus ``ord``.

    ``source`` is a relation with ``raw`` (the item's JSON text, kept as-is) and ``ord`` (its
    position; the caller keeps the last of equal ids). ``deleted_at``, ``synced_at`` and
    ``source_at`` are the caller's.

    * ``text``: message ``content.content``; EMAIL ``subject`` + blank line + body; CONVERSATION_NOTE
      ``body`` as plain text; VOICE_AI_MESSAGE ``body``; CUSTOMER_ACTIVITY ``title`` + blank line +
      ``body``; PHONE_CALL / VOICEMAIL ``recordingSummary.summary``; NULL for any other type.
    * ``redacted``: what Gladly itself says was erased: a call / voicemail whose recording is
      DELETED with no recordingUrl.
    * ``emptied`` (not a column; the writer reads it): a message with no text and no attachments
      (EMAIL: and no subject; CHAT_MESSAGE: and no messageData). Gladly's redact empties an item
      but keeps it, and sends nothing else, so an item is redacted when a version we stored with
      a body comes back emptied; an item that was empty when first seen is just empty.
    """
    messages = _sql_list(t for t in MESSAGE_TYPES if t != "EMAIL")
    empty = "coalesce(c.{0}, '') = ''"
    no_attachments = "coalesce(json_array_length(c.attachments), 0) = 0"
    return f"""
        WITH parsed AS (
            SELECT ord, raw, from_json(raw, '{_ITEM_TYPE}') AS i FROM {source}
        ), typed AS (
            SELECT ord, raw, i, i.content AS c FROM parsed
        )
        SELECT
            i.id AS id,
            i.conversationId AS conversation_id,
            i.customerId AS customer_id,
            coalesce(i.sessionId, c.sessionId) AS session_id,
            TRY_CAST(i.timestamp AS TIMESTAMPTZ) AS timestamp,
            c.type AS content_type,
            i.initiator.type AS initiator_type,
            i.initiator.id AS initiator_id,
            i.responder.type AS responder_type,
            i.responder.id AS responder_id,
            CASE
                WHEN c.type = 'EMAIL' THEN {_two_parts("c.subject", "c.content")}
                WHEN c.type IN ({messages}) THEN nullif(c.content, '')
                WHEN c.type = 'CONVERSATION_NOTE' THEN {_html_to_text("c.body")}
                WHEN c.type = 'VOICE_AI_MESSAGE' THEN nullif(c.body, '')
                WHEN c.type = 'CUSTOMER_ACTIVITY' THEN {_two_parts("c.title", "c.body")}
                WHEN c.type IN ({_sql_list(VOICE_TYPES)}) THEN nullif(c.recordingSummary.summary, '')
            END AS text,
            {CONTENT_SQL} AS content,
            coalesce(
                c.type IN ({_sql_list(VOICE_TYPES)}) AND c.recordingStatus = 'DELETED'
                    AND {empty.format("recordingUrl")},
                false
            ) AS redacted,
            coalesce(CASE
                WHEN c.type = 'EMAIL' THEN {empty.format("content")} AND {empty.format("subject")}
                    AND {no_attachments}
                WHEN c.type = 'CHAT_MESSAGE' THEN {empty.format("content")} AND {no_attachments}
                    AND c.messageData IS NULL
                WHEN c.type IN ({messages}) THEN {empty.format("content")} AND {no_attachments}
            END, false) AS emptied,
            raw::JSON AS raw,
            ord
        FROM typed
    """


def item_json(item: dict) -> str:
    """How an API item is kept in ``raw``: its JSON, keys and values as Gladly sent them."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def items_source(items: Sequence[dict]) -> pa.Table:
    """API items as the source :func:`items_select_sql` reads: ``raw`` (:func:`item_json`) and
    ``ord`` (the position in ``items``: of two versions of an id, the later one wins)."""
    import pyarrow as pa

    return pa.table(
        {
            "raw": pa.array([item_json(item) for item in items], pa.string()),
            "ord": pa.array(range(len(items)), pa.int64()),
        }
    )


def ndjson_items_source(path: Path | str) -> str:
    """An export part's objects as the source :func:`items_select_sql` reads: ``raw`` and ``ord``
    (the line's number among the file's objects)."""
    objects = f"read_ndjson_objects({sql_string(str(path))})"
    return f"(SELECT json AS raw, ordinality AS ord FROM {objects} WITH ORDINALITY)"


def sql_string(text: str) -> str:
    """``text`` as an SQL string literal (a file path in DuckDB's ``read_*``/``COPY``)."""
    return "'" + text.replace("'", "''") + "'"


def transform_items(items: list[dict]) -> list[dict]:
    """Run the items SQL over ``items`` in an in-memory DuckDB: one row dict per item, in order.

    ``content`` and ``raw`` come back parsed (Python values); the rule is the one the store uses.
    """
    source = items_source(items)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        con.register("item_source", source)
        result = con.execute(
            f"SELECT * EXCLUDE (ord, emptied) FROM ({items_select_sql('item_source')}) ORDER BY ord"
        )
        names = [d[0] for d in result.description]
        rows = [dict(zip(names, values, strict=True)) for values in result.fetchall()]
    finally:
        con.close()
    for row in rows:
        row["content"] = json.loads(row["content"]) if row["content"] is not None else None
        row["raw"] = json.loads(row["raw"])
        if row["timestamp"] is not None:
            row["timestamp"] = row["timestamp"].astimezone(UTC)
    return rows
