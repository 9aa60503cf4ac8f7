"""Read models: what ``context`` (Applied's read path) and ``status`` show, as JSON-ready dicts.

Times are ISO 8601 strings in UTC; JSON columns are parsed; nothing here writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from gladly_sync.storage.rows import parse_timestamp

from gladly_sync.errors import NotFound

Connection = duckdb.DuckDBPyConnection

# A gap in the event polls longer than Gladly's events window loses events for good.
EVENTS_WINDOW = timedelta(hours=24)
# The job whose successful runs are event polls (see sync/pull.py).
POLL_JOB = "sync"
COUNTED_TABLES = (
    "customers",
    "conversations",
    "conversation_items",
    "events",
    "inboxes",
    "agents",
    "topics",
    "outbox",
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


def conversation_context(con: Connection, conversation_id: str) -> dict[str, Any]:
    """The conversation, its customer, its items in time order (readable ``text`` each) and its
    outbox actions not yet ``sent``. Raises :class:`NotFound` for an unknown conversation."""
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
    items = _records(
        con.execute(
            """
            SELECT id, timestamp, content_type, initiator_type, initiator_id, responder_type,
                responder_id, text, redacted
            FROM conversation_items
            WHERE conversation_id = ? AND deleted_at IS NULL
            ORDER BY timestamp NULLS LAST, id
            """,
            [conversation_id],
        )
    )
    for item in items:
        for role in ("initiator", "responder"):
            kind, ident = item.pop(f"{role}_type"), item.pop(f"{role}_id")
            item[role] = {"type": kind, "id": ident} if kind or ident else None
    outbox = _records(
        con.execute(
            """
            SELECT id, kind, status, body, dedupe_key, created_at, last_error
            FROM outbox WHERE conversation_id = ? AND status <> 'sent'
            ORDER BY created_at NULLS LAST, seq NULLS LAST, id
            """,
            [conversation_id],
        )
    )
    return {
        "conversation": conversation,
        "customer": customers[0] if customers else None,
        "items": items,
        "outbox": outbox,
    }


def _cursor_age(cursor: str | None, updated_at: datetime | None, now: datetime) -> float | None:
    """Seconds between ``now`` and the cursor's instant (or its last update when not a time)."""
    moment: datetime | None = None
    if cursor:
        try:
            moment = parse_timestamp(cursor)
        except ValueError:
            moment = None
    moment = moment or updated_at
    return round((now - moment).total_seconds(), 3) if moment else None


def _subtract(span: tuple[datetime, datetime], covers: list[tuple[datetime, datetime]]) -> list:
    pieces = [span]
    for start, end in covers:
        pieces = [
            piece
            for left, right in pieces
            for piece in ((left, min(right, start)), (max(left, end), right))
            if piece[0] < piece[1]
        ]
    return pieces


def known_gaps(con: Connection, now: datetime) -> list[dict[str, Any]]:
    """Downtime the events API can no longer repair, not yet covered by an export job.

    Simple by design: a gap is a span longer than 24 h (Gladly's events window) between two
    consecutive successful ``sync`` runs (or from the last one until ``now``), from the end of one
    to the start of the next. The parts of it inside a processed export job's ``[start, end)``
    are removed; what is left is reported.
    """
    runs = con.execute(
        f"""
        SELECT started_at, finished_at FROM sync_runs
        WHERE job = '{POLL_JOB}' AND status = 'ok' AND finished_at IS NOT NULL
        ORDER BY started_at
        """
    ).fetchall()
    covers = [
        (start, end)
        for start, end in con.execute(
            "SELECT start_at, end_at FROM export_jobs WHERE start_at IS NOT NULL AND end_at IS NOT NULL "
            "ORDER BY start_at"
        ).fetchall()
    ]
    spans = [(runs[i][1], runs[i + 1][0]) for i in range(len(runs) - 1)]
    if runs:
        spans.append((runs[-1][1], now))
    gaps = []
    for start, end in spans:
        if end - start <= EVENTS_WINDOW:
            continue
        for left, right in _subtract((start, end), covers):
            gaps.append(
                {
                    "start": _iso(left),
                    "end": _iso(right),
                    "hours": round((right - left).total_seconds() / 3600, 2),
                }
            )
    return gaps


def status_report(con: Connection, now: datetime) -> dict[str, Any]:
    """Cursors and their age, the last run per job, row counts, outbox counts by status, the
    earliest item covered, the processed export jobs' window, known gaps, and skipped export lines."""
    cursors = {
        stream: {
            "cursor": cursor,
            "updated_at": _iso(updated_at),
            "age_seconds": _cursor_age(cursor, updated_at, now),
        }
        for stream, cursor, updated_at in con.execute(
            "SELECT stream, cursor, updated_at FROM sync_state ORDER BY stream"
        ).fetchall()
    }
    last_runs = {
        run.pop("job"): {**run, "rows": _json(run["rows"])}
        for run in _records(
            con.execute(
                """
                SELECT job, run_id, status, started_at, finished_at, requests, rate_limited, rows, error, pid
                FROM sync_runs
                QUALIFY row_number() OVER (PARTITION BY job ORDER BY started_at DESC, run_id DESC) = 1
                ORDER BY job
                """
            )
        )
    }
    counts_sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in COUNTED_TABLES)
    rows = dict(con.execute(counts_sql).fetchall())
    outbox = dict(
        con.execute("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status").fetchall()
    )
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
        "gaps": known_gaps(con, now),
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
