"""The export pass: backfill and gap repair from Gladly's export jobs (kept 14 days).

For each COMPLETED job not processed yet (by id and ``updatedAt``), oldest ``updatedAt`` first:

1. stream ``conversation_items.jsonl`` and ``customers.jsonl`` to a temporary folder and cut them
   into part files of ``PART_LINES`` lines, line by line (never a whole file in memory);
2. resolve each distinct conversation's current inbox with one ``GET /conversations/{id}``, unless
   the store read it from the API after the job's ``parameters.endAt`` (or found it out of scope
   after that); store the in-scope ones, their missing customers, and the exclusions;
3. upsert each items part in its own transaction, then the customers parts (storage keeps newer API
   rows, fields the export lacks, and redactions: we pass ``job_end_at``);
4. record the job, and drop the parts of known gaps that the job's window covers.

``reconcile_once(ctx)`` is the daemon's reconcile job: this pass, the reference lists
(inboxes, agents, topics) and the snapshot.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from gladly_sync.storage import rows as rowmaps
from gladly_sync.storage import upserts
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.context import Context
from gladly_sync.sync.logs import ContextPool
from gladly_sync.sync.pull.coverage import (
    RECONCILE_STREAM,
    extend_coverage,
    load_gaps,
    save_gaps,
    subtract_windows,
)
from gladly_sync.sync.pull.erasure import complete_erasures
from gladly_sync.sync.pull.resolve import BATCH, WORKERS, Batch, Resolver, Tally, chunks
from gladly_sync.sync.runs import publish_snapshot, run_job

from gladly_sync.errors import MalformedResponse

__all__ = ["ExportSummary", "reconcile", "reconcile_once", "refresh_references", "split_lines"]

ITEMS_FILE = "conversation_items.jsonl"
CUSTOMERS_FILE = "customers.jsonl"
PART_LINES = 100_000
BLOCK_BYTES = 8 << 20
CUSTOMER_CHUNK = 5_000
LOOKUP_CHUNK = 5_000
PROGRESS_EVERY = 5.0  # seconds between export_progress log events

Progress = Callable[[dict[str, Any]], None]


@dataclass
class ExportSummary:
    """What one export pass did."""

    jobs_listed: int = 0
    jobs_processed: int = 0
    job_ids: list[str] = field(default_factory=list)
    items: int = 0
    customers: int = 0
    conversations_resolved: int = 0
    conversations_fresh: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    requests: int = 0
    rate_limited: int = 0
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- files


def split_lines(source: Path, folder: Path, *, lines_per_part: int = PART_LINES) -> list[Path]:
    """Cut an ndjson file into parts of at most ``lines_per_part`` lines, streaming it in blocks (never
    the whole file in memory); the source is removed afterwards. Blank lines count toward a part's
    size and stay in it (DuckDB's ndjson reader skips them)."""
    parts: list[Path] = []
    out: BinaryIO | None = None
    count = 0
    last = b"\n"
    try:
        with source.open("rb") as reader:
            while block := reader.read(BLOCK_BYTES):
                last = block[-1:]
                while block:
                    if out is None or count >= lines_per_part:
                        if out is not None:
                            out.close()
                        parts.append(folder / f"{source.stem}.part{len(parts):05d}.jsonl")
                        out = parts[-1].open("wb")
                        count = 0
                    room = lines_per_part - count
                    lines = block.count(b"\n")
                    if lines < room:
                        out.write(block)
                        count += lines
                        break
                    rest = block.split(b"\n", room)[-1]  # C speed: the bytes after the room-th newline
                    out.write(memoryview(block)[: len(block) - len(rest)])
                    count += room
                    block = rest
        if out is not None and last != b"\n":
            out.write(b"\n")  # the last line had no newline
    finally:
        if out is not None:
            out.close()
    source.unlink()
    return parts


def _download(client: GladlyClient, job_id: str, filename: str, folder: Path) -> list[Path]:
    whole = folder / filename
    if not client.download_export_file(job_id, filename, whole):
        return []
    return split_lines(whole, folder)


def _customer_chunks(part: Path) -> Iterator[list[dict[str, Any]]]:
    """The customer objects of one part file, ``CUSTOMER_CHUNK`` at a time, read line by line."""
    chunk: list[dict[str, Any]] = []
    with part.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise MalformedResponse(f"{part.name}: line {number} is not JSON") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                raise MalformedResponse(f"{part.name}: line {number} is not a customer object with an id")
            chunk.append(obj)
            if len(chunk) >= CUSTOMER_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------- jobs


def _job_end(job: dict[str, Any]) -> datetime:
    window = _job_window(job)
    if window is None:
        raise MalformedResponse(f"export job {job.get('id')!r} lacks parameters.startAt/endAt")
    return window[1]


def _job_window(job: dict[str, Any]) -> tuple[datetime, datetime] | None:
    parameters = job.get("parameters") if isinstance(job.get("parameters"), dict) else {}
    try:
        start = rowmaps.parse_timestamp(parameters.get("startAt"))
        end = rowmaps.parse_timestamp(parameters.get("endAt"))
    except (TypeError, ValueError, AttributeError):
        return None
    return (start, end) if start is not None and end is not None else None


def _updated(job: dict[str, Any]) -> datetime | None:
    try:
        return rowmaps.parse_timestamp(job.get("updatedAt"))
    except (TypeError, ValueError):
        return None


def _same_instant(a: Any, b: datetime | None) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, str):
        a = rowmaps.parse_timestamp(a)
    return a == b


def jobs_to_process(
    jobs: list[dict[str, Any]],
    processed: dict[str, Any],
    *,
    full: bool = False,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Jobs not processed yet (a new ``updatedAt`` counts as new), all with ``full``, those updated
    since ``since`` too; oldest ``updatedAt`` first."""
    chosen = []
    for job in jobs:
        if not isinstance(job.get("id"), str) or job.get("status", "COMPLETED") != "COMPLETED":
            continue
        updated = _updated(job)
        new = job["id"] not in processed or not _same_instant(processed[job["id"]], updated)
        if full or new or (since is not None and updated is not None and updated >= since):
            chosen.append(job)
    latest = datetime.max.replace(tzinfo=UTC)
    return sorted(chosen, key=lambda job: (_updated(job) or latest, job["id"]))


class _Progress:
    """Counts for the progress bar and the ``export_progress`` log event (every few seconds).

    ``eta_seconds`` estimates the whole pass: the lookups left in the job in progress at the rate
    budget, plus each job not started yet at the average duration of the jobs done (before the first
    is done: the projected duration of the one in progress)."""

    def __init__(self, ctx: Context, callback: Progress | None, jobs_total: int):
        self.ctx = ctx
        self.callback = callback
        self._job_started: float | None = None
        self._job_seconds: list[float] = []
        self.state: dict[str, Any] = {
            "jobs_total": jobs_total,
            "jobs_done": 0,
            "job_id": None,
            "stage": "listing",
            "items_done": 0,
            "conversations_total": 0,
            "conversations_resolved": 0,
            "eta_seconds": None,
        }
        self._logged = time.monotonic()

    def update(self, *, force: bool = False, **changes: Any) -> None:
        if changes.get("stage") == "downloading":
            self._job_started = time.monotonic()
        elif changes.get("stage") == "done" and self._job_started is not None:
            self._job_seconds.append(time.monotonic() - self._job_started)
            self._job_started = None
        self.state.update(changes)
        self.state["eta_seconds"] = self._estimate()
        if self.callback is not None:
            self.callback(dict(self.state))
        if force or time.monotonic() - self._logged >= PROGRESS_EVERY:
            self._logged = time.monotonic()
            self.ctx.log.info("export_progress", **self.state)

    def _estimate(self) -> float | None:
        rate = self.ctx.settings.gladly.requests_per_second
        if not rate:
            return None
        remaining = self.state["conversations_total"] - self.state["conversations_resolved"]
        current = remaining / rate if self._job_started is not None else 0.0
        not_started = self.state["jobs_total"] - self.state["jobs_done"] - (self._job_started is not None)
        if self._job_seconds:
            per_job = sum(self._job_seconds) / len(self._job_seconds)
        elif self._job_started is not None:
            per_job = time.monotonic() - self._job_started + current
        else:
            per_job = 0.0
        return round(current + max(0, not_started) * per_job, 1)


def reconcile(
    ctx: Context,
    client: GladlyClient,
    *,
    full: bool = False,
    since: datetime | None = None,
    progress: Progress | None = None,
    resolver: Resolver | None = None,
) -> ExportSummary:
    """The export pass. ``resolver`` shares the ids already fetched in this run (the events pass)."""
    if resolver is None:
        with ContextPool(WORKERS) as pool:
            resolver = Resolver(ctx, client, Tally(), pool)
            return reconcile(ctx, client, full=full, since=since, progress=progress, resolver=resolver)
    started = time.monotonic()
    summary = ExportSummary()
    jobs = client.list_export_jobs(status="COMPLETED")
    summary.jobs_listed = len(jobs)
    with ctx.db.connect() as con:
        processed = upserts.processed_export_jobs(con)
    todo = jobs_to_process(jobs, processed, full=full, since=since)
    ctx.log.info("export_jobs_listed", jobs=len(jobs), to_process=len(todo), full=full)
    meter = _Progress(ctx, progress, len(todo))
    for job in todo:
        ctx.shutdown.check()  # a stopped pass resumes with this job: it is not recorded yet
        _process_job(ctx, resolver, job, summary, meter)
        processed[job["id"]] = job.get("updatedAt")
        summary.jobs_processed += 1
        summary.job_ids.append(job["id"])
        meter.update(jobs_done=summary.jobs_processed, stage="done")
    if todo:
        meter.update(force=True, stage="finished")

    # Gaps covered by jobs we have processed (now or before) are repaired.
    windows = [w for job in jobs if job.get("id") in processed and (w := _job_window(job))]
    now = ctx.clock()
    with ctx.db.transaction() as con:
        gaps = load_gaps(con)
        if gaps:
            left = subtract_windows(gaps, windows)
            if left != gaps:
                save_gaps(con, left, now)
                ctx.log.info("gaps_repaired", before=len(gaps), after=len(left))
    summary.rows = dict(resolver.tally.rows)
    summary.requests, summary.rate_limited = client.requests, client.rate_limited
    summary.duration_seconds = round(time.monotonic() - started, 3)
    return summary


def _process_job(
    ctx: Context, resolver: Resolver, job: dict[str, Any], summary: ExportSummary, meter: _Progress
) -> None:
    client, db, log = resolver.client, ctx.db, ctx.log
    job_id, end_at = job["id"], _job_end(job)
    files = job.get("files")
    log.info("export_job_started", job_id=job_id, end_at=end_at.isoformat())
    meter.update(
        job_id=job_id,
        stage="downloading",
        items_done=0,
        conversations_total=0,
        conversations_resolved=0,
    )
    with tempfile.TemporaryDirectory(prefix=f"gladly-export-{job_id}-") as tmp:
        folder = Path(tmp)
        listed = files if isinstance(files, list) else [ITEMS_FILE, CUSTOMERS_FILE]
        item_parts = _download(client, job_id, ITEMS_FILE, folder) if ITEMS_FILE in listed else []
        customer_parts = _download(client, job_id, CUSTOMERS_FILE, folder) if CUSTOMERS_FILE in listed else []

        # Which conversations need their current inbox read from the API (local reads only).
        conversation_ids: dict[str, None] = {}
        stored: set[str] = set()
        todo: list[str] = []
        with db.connect() as con:
            for part in item_parts:
                conversation_ids.update(dict.fromkeys(upserts.export_file_conversation_ids(con, part)))
            ids = [cid for cid in conversation_ids if cid not in resolver.fetched_conversations]
            for chunk in chunks(ids, LOOKUP_CHUNK):
                stored_rows = upserts.stored_conversations(con, chunk)
                exclusions = upserts.scope_exclusions(con, chunk)
                stored.update(stored_rows)
                todo += [
                    cid for cid in chunk if _needs_lookup(stored_rows.get(cid), exclusions.get(cid), end_at)
                ]
        summary.conversations_fresh += len(conversation_ids) - len(todo)
        meter.update(stage="resolving", conversations_total=len(todo))
        for batch_ids in chunks(todo, BATCH):
            # Resolved batches are stored: resumed, the job looks up only the conversations left.
            ctx.shutdown.check()
            conversations, customers = resolver.resolve(batch_ids, stored=stored, items=False)
            with db.transaction() as con:
                resolver.write(con, Batch(customers=customers, conversations=conversations), stored)
            stored.update(c.id for c in conversations if c.in_scope and c.conversation is not None)
            summary.conversations_resolved += len(conversations)
            meter.update(conversations_resolved=meter.state["conversations_resolved"] + len(conversations))

        synced_at = ctx.clock()
        items = 0
        meter.update(stage="items")
        for part in item_parts:
            ctx.shutdown.check()
            with db.transaction() as con:
                items += upserts.upsert_export_items(con, part, job_end_at=end_at, synced_at=synced_at) or 0
            meter.update(items_done=items)
        # Customers chunk by chunk; the last chunk commits with the job's record.
        customers = 0
        pending: list[dict[str, Any]] = []
        for part in customer_parts:
            for chunk in _customer_chunks(part):
                ctx.shutdown.check()
                if pending:
                    with db.transaction() as con:
                        customers += upserts.merge_export_customers(con, pending, end_at) or 0
                pending = [
                    rowmaps.export_customer_row(o, synced_at=synced_at, source_at=end_at) for o in chunk
                ]
        now = ctx.clock()
        with db.transaction() as con:
            if pending:
                customers += upserts.merge_export_customers(con, pending, end_at) or 0
            upserts.record_export_job(con, job, items, customers, now)
            window = _job_window(job)
            if window is not None:
                extend_coverage(con, window[0], now)
    resolver.tally.add("conversation_items", items)
    resolver.tally.add("customers", customers)
    summary.items += items
    summary.customers += customers
    log.info(
        "export_job_processed",
        job_id=job_id,
        items=items,
        customers=customers,
        conversations=len(conversation_ids),
        resolved=len(todo),
    )


def _needs_lookup(stored: dict[str, Any] | None, exclusion: tuple[Any, Any] | None, end_at: datetime) -> bool:
    """A conversation in a job needs ``GET /conversations/{id}`` unless the store has it deleted, or
    read it from the API (or found it out of scope) after the job's ``endAt``."""
    if stored is not None and (
        stored.get("deleted_at") is not None or _after(stored.get("source_at"), end_at)
    ):
        return False
    return not (exclusion is not None and _after(exclusion[1], end_at))


def _after(moment: Any, end_at: datetime) -> bool:
    if moment is None:
        return False
    if isinstance(moment, str):
        moment = rowmaps.parse_timestamp(moment)
    return moment > end_at


# --------------------------------------------------------------------------- reference lists


def refresh_references(ctx: Context, client: GladlyClient) -> dict[str, int]:
    """Replace the organization, inboxes, agents and topics with Gladly's current ones (4 requests)."""
    organization = client.get_organization()
    inboxes, agents, topics = client.list_inboxes(), client.list_agents(), client.list_topics()
    now = ctx.clock()
    with ctx.db.transaction() as con:
        upserts.replace_organization(con, rowmaps.organization_row(organization, synced_at=now))
        upserts.replace_inboxes(con, [rowmaps.inbox_row(raw, synced_at=now) for raw in inboxes])
        upserts.replace_agents(con, [rowmaps.agent_row(raw, synced_at=now) for raw in agents])
        upserts.replace_topics(con, [rowmaps.topic_row(raw, synced_at=now) for raw in topics])
    ctx.log.info(
        "references_refreshed",
        organization_id=organization.get("id"),
        inboxes=len(inboxes),
        agents=len(agents),
        topics=len(topics),
    )
    return {"organization": 1, "inboxes": len(inboxes), "agents": len(agents), "topics": len(topics)}


def reconcile_once(ctx: Context, *, progress: Progress | None = None) -> ExportSummary:
    """The reconcile job: the export pass, the reference lists, the ``reconcile`` cursor, the snapshot."""
    started = time.monotonic()
    with (
        run_job(ctx, "reconcile") as run,
        ctx.client_factory() as client,
        ContextPool(WORKERS) as pool,
    ):
        tally = Tally()
        try:
            resolver = Resolver(ctx, client, tally, pool)
            summary = reconcile(ctx, client, progress=run.progress_reporter(progress), resolver=resolver)
            tally.rows.update(refresh_references(ctx, client))
            summary.rows = dict(tally.rows)
            with ctx.db.transaction() as con:
                upserts.save_cursor(con, RECONCILE_STREAM, ctx.clock().isoformat(), ctx.clock())
        finally:
            run.rows = dict(tally.rows)
            run.requests, run.rate_limited = client.requests, client.rate_limited
        complete_erasures(ctx)  # before the snapshot: erased values must not reach it
        summary.requests, summary.rate_limited = client.requests, client.rate_limited
    publish_snapshot(ctx, run)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    ctx.log.info(
        "reconcile_finished",
        run_id=run.run_id,
        jobs=summary.jobs_processed,
        items=summary.items,
        customers=summary.customers,
        requests=summary.requests,
        duration_seconds=summary.duration_seconds,
    )
    return summary
