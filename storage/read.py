"""Read models: what ``context`` (Applied's read path) and ``status`` show, as JSON-ready dicts.

Times are ISO 8601 strings in UTC; JSON columns are parsed; nothing here writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb
from gladly_sync.storage.rows import parse_timestamp

from gladly_sync.errors import NotFound

Connection = duckdb.DuckDBPyConnection

# The sync_state stream where the events pass records what it missed (see sync/pull/coverage.py).
GAPS_STREAM = "gaps"
# Streams that are bookkeeping, not cursors: status shows them in their own sections.
NOT_CURSORS = (GAPS_STREAM,)
COUNTED_TABLES = (
    "customers",
    "conversations",
    "conversation_items",
    "events",
    "inboxes",
    "agents",
    "topics",
    "export_jobs",
    "sync_runs",
    "skipped_events",
    "scope_exclusions",
)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _records(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description]
    return [{n: _iso(v) for n, v in zip(names, row, strict=True)} for row in result.fetchall()]


def jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their times as ISO 8601 strings in UTC."""
    return [{name: _iso(value) for name, value in row.items()} for row in rows]


def conversation_context(
    con: Connection, conversation_id: str, *, limit: int | None = None
) -> dict[str, Any]:
    """The conversation, its customer and its items in time order (readable ``text`` each; with
    ``limit``, only the newest ``limit``). ``outbox`` is left empty: the caller adds the actions
    from the outbox database (``outbox.open_actions``). Raises :class:`NotFound` for an unknown
    conversation."""
    rows = _records(
        con.execute(
            """
            SELECT c.id, c.status, c.customer_id, c.inbox_id, ib.name AS inbox_name, c.agent_id,
                a.name AS agent_name, c.topic_ids, c.custom_attributes, c.created_at, c.closed_at,
                c.deleted_at, c.synced_at
            FROM conversations AS c
            LEFT JOIN inboxes AS ib ON ib.id = c.inbox_id
            LEFT JOIN agents AS a ON a.id = c.agent_id
            WHERE c.id = ?
            """,
            [conversation_id],
        )
    )
    if not rows:
        raise NotFound(f"conversation {conversation_id} is not in the store")
    conversation = rows[0]
    conversation["custom_attributes"] = _json(conversation["custom_attributes"])
    customers = _records(
        con.execute(
            "SELECT id, name, primary_email, primary_phone FROM customers WHERE id = ?",
            [conversation["customer_id"]],
        )
    )
    newest = "" if limit is None else "ORDER BY timestamp DESC NULLS FIRST, id DESC LIMIT ?"
    items = _records(
        con.execute(
            f"""
            SELECT * FROM (
                SELECT id, timestamp, content_type, initiator_type, initiator_id, responder_type,
                    responder_id, text, redacted
                FROM conversation_items
                WHERE conversation_id = ? AND deleted_at IS NULL
                {newest}
            ) AS items ORDER BY timestamp NULLS LAST, id
            """,
            [conversation_id] if limit is None else [conversation_id, limit],
        )
    )
    for item in items:
        for role in ("initiator", "responder"):
            kind, ident = item.pop(f"{role}_type"), item.pop(f"{role}_id")
            item[role] = {"type": kind, "id": ident} if kind or ident else None
    return {
        "conversation": conversation,
        "customer": customers[0] if customers else None,
        "items": items,
        "outbox": [],
    }


def inbox_names(con: Connection) -> dict[str, str | None]:
    """The stored inboxes (refreshed with the reference lists): id → name."""
    return dict(con.execute("SELECT id, name FROM inboxes ORDER BY name, id").fetchall())


def _cursor_age(updated_at: datetime | None, now: datetime) -> float | None:
    """Seconds since the cursor was last advanced (not since its value: a cursor trails by design)."""
    return round((now - updated_at).total_seconds(), 3) if updated_at else None


def known_gaps(con: Connection) -> list[dict[str, Any]]:
    """What the events poll actually missed and no export job has covered yet.

    The events pass records a gap when its cursor had fallen out of Gladly's 24 h events window
    (from the old cursor to where it restarted); the export pass removes the parts its jobs cover.
    """
    row = con.execute("SELECT cursor FROM sync_state WHERE stream = ?", [GAPS_STREAM]).fetchone()
    gaps = []
    for start, end in json.loads(row[0]) if row and row[0] else []:
        left, right = parse_timestamp(start), parse_timestamp(end)
        hours = round((right - left).total_seconds() / 3600, 2)
        gaps.append({"start": _iso(left), "end": _iso(right), "hours": hours})
    return gaps


def status_report(
    con: Connection, now: datetime, outbox_counts: dict[str, int] | None = None
) -> dict[str, Any]:
    """Cursors and their age, the last run per job, row counts, outbox counts by status (given:
    they come from the outbox database), the earliest item covered, the processed export jobs'
    window, known gaps, and skipped export lines."""
    cursors = {
        stream: {
            "cursor": cursor,
            "updated_at": _iso(updated_at),
            "age_seconds": _cursor_age(updated_at, now),
        }
        for stream, cursor, updated_at in con.execute(
            # the erasure note is not a cursor (upserts.ERASURE_STREAM)
            "SELECT stream, cursor, updated_at FROM sync_state "
            "WHERE stream <> 'erasure_pending' ORDER BY stream"
        ).fetchall()
        if stream not in NOT_CURSORS
    }
    last_runs = {
        run.pop("job"): {**run, "rows": _json(run["rows"])}
        for run in _records(
            con.execute(
                """
                SELECT job, run_id, status, started_at, finished_at, requests, rate_limited, rows, error, pid,
                    host
                FROM sync_runs
                QUALIFY row_number() OVER (PARTITION BY job ORDER BY started_at DESC, run_id DESC) = 1
                ORDER BY job
                """
            )
        )
    }
    counts_sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in COUNTED_TABLES)
    rows = dict(con.execute(counts_sql).fetchall())
    outbox = {status: n for status, n in sorted((outbox_counts or {}).items()) if n}
    rows["outbox"] = sum(outbox.values())
    earliest = con.execute(
        "SELECT min(timestamp) FROM conversation_items WHERE deleted_at IS NULL"
    ).fetchone()
    jobs = con.execute(
        "SELECT count(*), min(start_at), max(end_at), max(processed_at) FROM export_jobs"
    ).fetchone() or (0, None, None, None)
    return {
        "now": _iso(now),
        "cursors": cursors,
        "last_runs": last_runs,
        "rows": rows,
        "outbox": outbox,
        "earliest_item_at": _iso(earliest[0]) if earliest else None,
        "export_jobs": {
            "processed": jobs[0],
            "start_at": _iso(jobs[1]),
            "end_at": _iso(jobs[2]),
            "last_processed_at": _iso(jobs[3]),
        },
        "gaps": known_gaps(con),
        "skipped_export_lines": skipped_export_lines(con),
    }


SKIPPED_SHOWN = 10


def skipped_export_lines(con: Connection) -> dict[str, Any]:
    """How many export file lines were skipped (not valid JSON), and the latest ``SKIPPED_SHOWN``.

    A store not migrated yet (read-only status before the first sync of this version) has none."""
    try:
        row = con.execute("SELECT count(*) FROM export_skipped_lines").fetchone()
    except duckdb.CatalogException:
        return {"total": 0, "latest": []}
    latest = _records(
        con.execute(
            "SELECT job_id, file, line, reason, recorded_at FROM export_skipped_lines "
            "ORDER BY recorded_at DESC, job_id, file, line LIMIT ?",
            [SKIPPED_SHOWN],
        )
    )
    return {"total": int(row[0]) if row else 0, "latest": latest}
