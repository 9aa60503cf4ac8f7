"""The export pass: backfill and gap repair from Gladly's export jobs (kept 14 days).

For each COMPLETED job not processed yet (by id and ``updatedAt``), oldest ``updatedAt`` first:

1. stream ``conversation_items.jsonl`` and ``customers.jsonl`` into part files of ``PART_LINES``
   lines as they download (:mod:`sync.pull.parts`: never a whole file on disk or in memory); each
   items part is meanwhile transformed into typed rows and its conversation ids collected, off the
   store (an in-memory DuckDB); lines that are not valid JSON are skipped and recorded with the job;
2. resolve each distinct conversation's current inbox with one ``GET /conversations/{id}``, unless
   the store read it from the API after the job's ``parameters.endAt`` (or found it out of scope
   after that); store the in-scope ones, their missing customers, and the exclusions;
3. upsert each items part in its own transaction, then the customers parts (storage keeps newer API
   rows, fields the export lacks, and redactions: we pass ``job_end_at``);
4. record the job, and drop the parts of known gaps that the job's window covers.

``reconcile_once(ctx)`` is the daemon's reconcile job: this pass, the reference lists
(inboxes, agents, topics) and the snapshot when the job changed data.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
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
from gladly_sync.sync.pull.parts import (
    PART_LINES,
    PartCutter,
    SkippedLine,
    customer_chunks,
    prepare_items_part,
)
from gladly_sync.sync.pull.resolve import BATCH, WORKERS, Batch, Resolver, Tally, chunks
from gladly_sync.sync.pull.snapshot import publish_if_changed
from gladly_sync.sync.runs import run_job

from gladly_sync.errors import MalformedResponse

__all__ = ["ExportSummary", "JobFiles", "reconcile", "reconcile_once", "refresh_references"]

ITEMS_FILE = "conversation_items.jsonl"
CUSTOMERS_FILE = "customers.jsonl"
SCAN_MEMORY = "150MB"  # the in-memory DuckDB that prepares the items parts (off the store)
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
    skipped_lines: int = 0
    requests: int = 0
    rate_limited: int = 0
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- files


@dataclass
class JobFiles:
    """A job's files cut into parts, the conversation ids its items name, and the lines skipped."""

    item_parts: list[Path] = field(default_factory=list)
    customer_parts: list[Path] = field(default_factory=list)
    lines_per_part: int = PART_LINES
    conversation_ids: list[str] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)

    def first_line(self, index: int) -> int:
        return index * self.lines_per_part + 1


def _download_items(client: GladlyClient, job_id: str, folder: Path, files: JobFiles) -> None:
    """Download the items file into parts; each finished part is prepared (transformed into typed
    rows, its conversation ids collected) by an in-memory DuckDB in a worker thread while the
    download goes on."""
    scans: dict[tuple[int, int], Future[tuple[Path, list[str], list[SkippedLine]]]] = {}
    with (
        duckdb.connect(config={"threads": 2, "memory_limit": SCAN_MEMORY}) as scanner,
        ThreadPoolExecutor(1, thread_name_prefix="export-scan") as pool,
    ):

        def scan(part: Path, index: int) -> None:
            first = files.first_line(index)
            scans[(cutter.attempt, index)] = pool.submit(
                prepare_items_part, scanner, part, first, job_id=job_id, filename=ITEMS_FILE
            )

        cutter = PartCutter(job_id, ITEMS_FILE, folder, lines_per_part=files.lines_per_part, on_part=scan)
        if not client.download_export_file(job_id, ITEMS_FILE, cutter):
            return
        parts = cutter.finish()
        seen: dict[str, None] = {}
        for index in range(len(parts)):  # an earlier attempt's scans are ignored
            prepared, ids, skipped = scans[(cutter.attempt, index)].result()
            files.item_parts.append(prepared)
            seen.update(dict.fromkeys(ids))
            files.skipped += skipped
        files.conversation_ids = list(seen)


def _download(client: GladlyClient, job: dict[str, Any], folder: Path) -> JobFiles:
    """The job's items and customers files, as parts in ``folder``."""
    files = JobFiles(lines_per_part=PART_LINES)
    listed = job["files"] if isinstance(job.get("files"), list) else [ITEMS_FILE, CUSTOMERS_FILE]
    if ITEMS_FILE in listed:
        _download_items(client, job["id"], folder, files)
    if CUSTOMERS_FILE in listed:
        cutter = PartCutter(job["id"], CUSTOMERS_FILE, folder, lines_per_part=files.lines_per_part)
        if client.download_export_file(job["id"], CUSTOMERS_FILE, cutter):
            files.customer_parts = cutter.finish()
    return files


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
    """Download, resolve the conversations' inboxes, ingest items then customers, record the job."""
    job_id, end_at = job["id"], _job_end(job)
    ctx.log.info("export_job_started", job_id=job_id, end_at=end_at.isoformat())
    meter.update(
        job_id=job_id, stage="downloading", items_done=0, conversations_total=0, conversations_resolved=0
    )
    with tempfile.TemporaryDirectory(prefix=f"gladly-export-{job_id}-") as tmp:
        files = _download(resolver.client, job, Path(tmp))
        todo, stored = _conversations_to_resolve(ctx, resolver, files.conversation_ids, end_at)
        summary.conversations_fresh += len(files.conversation_ids) - len(todo)
        _resolve_conversations(ctx, resolver, todo, stored, summary, meter)
        synced_at = ctx.clock()
        items = _ingest_items(ctx, files.item_parts, end_at, synced_at, meter)
        customers = _ingest_customers_and_record(ctx, job, files, end_at, synced_at, items)
    resolver.tally.add("conversation_items", items)
    resolver.tally.add("customers", customers)
    summary.items += items
    summary.customers += customers
    summary.skipped_lines += len(files.skipped)
    if files.skipped:
        ctx.log.warning("export_lines_skipped", job_id=job_id, lines=len(files.skipped))
    ctx.log.info(
        "export_job_processed",
        job_id=job_id,
        items=items,
        customers=customers,
        conversations=len(files.conversation_ids),
        resolved=len(todo),
        skipped_lines=len(files.skipped),
    )


def _conversations_to_resolve(
    ctx: Context, resolver: Resolver, conversation_ids: list[str], end_at: datetime
) -> tuple[list[str], set[str]]:
    """Which conversations need their current inbox read from the API, and which are stored (local
    reads only, the store opened per chunk of ids)."""
    stored: set[str] = set()
    todo: list[str] = []
    ids = [cid for cid in conversation_ids if cid not in resolver.fetched_conversations]
    for chunk in chunks(ids, LOOKUP_CHUNK):
        with ctx.db.connect() as con:
            stored_rows = upserts.stored_conversations(con, chunk)
            exclusions = upserts.scope_exclusions(con, chunk)
        stored.update(stored_rows)
        todo += [cid for cid in chunk if _needs_lookup(stored_rows.get(cid), exclusions.get(cid), end_at)]
    return todo, stored


def _resolve_conversations(
    ctx: Context,
    resolver: Resolver,
    todo: list[str],
    stored: set[str],
    summary: ExportSummary,
    meter: _Progress,
) -> None:
    """Read the conversations (and their missing customers) from the API and store them, in batches."""
    meter.update(stage="resolving", conversations_total=len(todo))
    for batch_ids in chunks(todo, BATCH):
        # Resolved batches are stored: resumed, the job looks up only the conversations left.
        ctx.shutdown.check()
        conversations, customers = resolver.resolve(batch_ids, stored=stored, items=False)
        with ctx.db.transaction() as con:
            resolver.write(con, Batch(customers=customers, conversations=conversations), stored)
        stored.update(c.id for c in conversations if c.in_scope and c.conversation is not None)
        summary.conversations_resolved += len(conversations)
        meter.update(conversations_resolved=meter.state["conversations_resolved"] + len(conversations))


def _ingest_items(
    ctx: Context, parts: list[Path], end_at: datetime, synced_at: datetime, meter: _Progress
) -> int:
    """Each items part in its own transaction (the store is handed over in between)."""
    items = 0
    meter.update(stage="items")
    for part in parts:
        ctx.shutdown.check()
        with ctx.db.transaction() as con:
            items += upserts.upsert_export_items(con, part, job_end_at=end_at, synced_at=synced_at) or 0
        meter.update(items_done=items)
    return items


def _ingest_customers_and_record(
    ctx: Context, job: dict[str, Any], files: JobFiles, end_at: datetime, synced_at: datetime, items: int
) -> int:
    """Customers chunk by chunk; the last chunk commits with the job's record, its skipped lines and
    the coverage its window gives. Returns the customers written."""
    customers = 0
    pending: list[dict[str, Any]] = []
    for index, part in enumerate(files.customer_parts):
        for chunk in customer_chunks(part, files.first_line(index), CUSTOMERS_FILE, files.skipped):
            ctx.shutdown.check()
            if pending:
                with ctx.db.transaction() as con:
                    customers += upserts.merge_export_customers(con, pending, end_at) or 0
            pending = [rowmaps.export_customer_row(o, synced_at=synced_at, source_at=end_at) for o in chunk]
    now = ctx.clock()
    with ctx.db.transaction() as con:
        if pending:
            customers += upserts.merge_export_customers(con, pending, end_at) or 0
        upserts.record_export_job(con, job, items, customers, now)
        upserts.record_skipped_lines(con, job["id"], [(s.file, s.line, s.reason) for s in files.skipped], now)
        window = _job_window(job)
        if window is not None:
            extend_coverage(con, window[0], now)
    return customers


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


def refresh_references(ctx: Context, client: GladlyClient, tally: Tally | None = None) -> dict[str, int]:
    """Replace the organization, inboxes, agents and topics with Gladly's current ones (4 requests);
    returns how many each holds, and counts the rows new or changed in ``tally.reference_changes``."""
    organization = client.get_organization()
    inboxes, agents, topics = client.list_inboxes(), client.list_agents(), client.list_topics()
    now = ctx.clock()
    lists = (
        ("inboxes", [rowmaps.inbox_row(raw, synced_at=now) for raw in inboxes]),
        ("agents", [rowmaps.agent_row(raw, synced_at=now) for raw in agents]),
        ("topics", [rowmaps.topic_row(raw, synced_at=now) for raw in topics]),
    )
    changes = 0
    with ctx.db.transaction() as con:
        changes += upserts.replace_organization(con, rowmaps.organization_row(organization, synced_at=now))
        for table, rows in lists:
            changes += upserts.replace_reference_list(con, table, rows)
    if tally is not None:
        tally.reference_changes += changes
    ctx.log.info(
        "references_refreshed",
        organization_id=organization.get("id"),
        inboxes=len(inboxes),
        agents=len(agents),
        topics=len(topics),
        changed=changes,
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
            tally.rows.update(refresh_references(ctx, client, tally))
            summary.rows = dict(tally.rows)
            with ctx.db.transaction() as con:
                upserts.save_cursor(con, RECONCILE_STREAM, ctx.clock().isoformat(), ctx.clock())
        except BaseException:
            publish_if_changed(ctx, tally, failing=True)
            raise
        finally:
            run.rows = dict(tally.rows)
            run.requests, run.rate_limited = client.requests, client.rate_limited
        erased = complete_erasures(ctx)  # before the snapshot: erased values must not reach it
        summary.requests, summary.rate_limited = client.requests, client.rate_limited
    publish_if_changed(ctx, tally, run, erased=erased)  # after the run's record is final
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
