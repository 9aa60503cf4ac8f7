"""The pull path: one ``sync_once(ctx)`` keeps the store up to date with Gladly.

A run, in order:

1. **Events pass.** Poll ``GET /events`` from the saved cursor to Gladly's now (its ``Date``
   header is the end; the cursor trails it by a 2 min margin, so late events are re-read).
   Events whose id is already known (stored in ``events`` or remembered in ``skipped_events``)
   change nothing. The new ones name the dirty conversations, customers,
   merges and deleted profiles (``changes.py``, pure; ``events.py`` runs the poll).
2. **Resolve** (``resolve.py``, shared with the export pass). Each dirty conversation is read
   once (``GET /conversations/{id}``, and its items when it is in scope), then customers that
   became known and customers that changed (``GET /customer-profiles/{id}``, following 301 merges).
   Work is written in short transactions of ``BATCH`` conversations; each stores the events it
   covers, so a failed run loses nothing and a retry does not redo what was stored. A conversation
   whose item list Gladly cut at 1000 is completed from the item ids its events name. The events
   cursor moves only in the last transaction, to ``endAt - 2 min``, also when no event came.
3. **Export pass** (``export.py``) when the store is fresh, on ``--full``/``--since``, after a
   cursor fell out of Gladly's 24 h window, or when ``reconcile_every`` has passed: backfill and
   gap repair from export jobs, then the reference lists. It counts as a reconcile pass.
4. When the run applied an erasure (a deleted profile, a redacted item), remove the erased values
   from disk: the outbox rows are blanked and the store rewritten (``erasure.py``).
5. Publish the read snapshot, when the run changed data or completed an erasure (``snapshot.py``).

Local work is never the bottleneck: requests go out on a small thread pool and the client's pacer
keeps them at the rate budget; the database is opened per batch, never across a request. The run's
deadline belongs to the caller (the daemon's client factory sets it on the client); a run stopped by
it keeps every batch it wrote, and the next run carries on from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gladly_sync.storage import upserts
from gladly_sync.storage.read import inbox_names
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.context import Context
from gladly_sync.sync.logs import ContextPool
from gladly_sync.sync.pull.coverage import RECONCILE_STREAM, utc_iso
from gladly_sync.sync.pull.erasure import complete_erasures
from gladly_sync.sync.pull.events import CURSOR_EXPIRY, EVENTS_STREAM, FIRST_LOOKBACK, events_pass
from gladly_sync.sync.pull.export import reconcile, refresh_references
from gladly_sync.sync.pull.resolve import WORKERS, Resolver, Tally
from gladly_sync.sync.pull.snapshot import publish_if_changed
from gladly_sync.sync.runs import RunHandle, run_job

from gladly_sync.errors import UsageError

SINCE_LIMIT = timedelta(hours=23)

Mode = Literal["incremental", "full", "since"]


@dataclass
class SyncSummary:
    """What one ``sync`` did; ``to_dict()`` is what ``sync --json`` prints."""

    run_id: str
    mode: Mode
    rows: dict[str, int] = field(default_factory=dict)
    events_seen: int = 0
    events_new: int = 0
    conversations_fetched: int = 0
    customers_fetched: int = 0
    skipped_inbox_filter: int = 0
    lists_cut: int = 0
    items_completed: int = 0
    requests: int = 0
    rate_limited: int = 0
    duration_seconds: float = 0.0
    export_jobs: int = 0
    reconciled: bool = False
    snapshot_published: bool = False
    events_start_at: str | None = None
    events_end_at: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_cursor(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_since(since: datetime, now: datetime) -> datetime:
    """``--since`` must lie within the last 23 h (Gladly keeps events 24 h); older needs ``--full``."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if since > now:
        raise UsageError(f"--since {utc_iso(since)} is in the future; give a time within the last 23 h")
    if now - since > SINCE_LIMIT:
        raise UsageError(
            f"--since {utc_iso(since)} is more than 23 h ago and Gladly keeps events for 24 h only; "
            "use `gladly-sync sync --full` to re-read the export jobs (14 days) instead"
        )
    return since


@dataclass(frozen=True)
class _Plan:
    """Where one run's events poll starts and which export work is due."""

    mode: Mode
    start_at: datetime
    fresh: bool
    expired_from: datetime | None
    reconcile_due: bool
    export_due: bool


def plan_run(ctx: Context, now: datetime, *, full: bool, since: datetime | None) -> _Plan:
    """The poll's start (cursor, ``--since``, or 23 h back) and whether export/reconcile are due."""
    with ctx.db.connect() as con:
        cursor = _parse_cursor(upserts.load_cursor(con, EVENTS_STREAM))
        last_reconcile = _parse_cursor(upserts.load_cursor(con, RECONCILE_STREAM))
    fresh = cursor is None
    mode: Mode = "full" if (full or fresh) else ("since" if since is not None else "incremental")
    expired_from = None
    if since is not None:
        start_at = since
    elif cursor is None:
        start_at = now - FIRST_LOOKBACK
    elif now - cursor > CURSOR_EXPIRY:
        expired_from, start_at = cursor, now - FIRST_LOOKBACK
    else:
        start_at = min(cursor, now - timedelta(seconds=1))
    reconcile_due = (
        full
        or fresh
        or expired_from is not None
        or last_reconcile is None
        or now - last_reconcile >= ctx.settings.schedule.reconcile_every
    )
    return _Plan(mode, start_at, fresh, expired_from, reconcile_due, reconcile_due or since is not None)


def sync_once(
    ctx: Context,
    *,
    full: bool = False,
    since: datetime | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SyncSummary:
    """One incremental pull (plus backfill / gap repair when due); returns what it did.

    ``progress`` receives the export pass's counts (jobs, items, conversations resolved, an
    estimate from the rate budget) as they change, for a progress bar.
    """
    started = time.monotonic()
    now = ctx.clock()
    if since is not None:
        since = check_since(since, now)
    plan = plan_run(ctx, now, full=full, since=since)
    with run_job(ctx, "sync") as run, ctx.client_factory() as client, ContextPool(WORKERS) as pool:
        summary = SyncSummary(run_id=run.run_id, mode=plan.mode)
        tally = Tally()
        resolver = Resolver(ctx, client, tally, pool)
        log = ctx.log.bind(mode=plan.mode)
        if plan.expired_from is not None:
            _warn_expired(log, tally, plan)
        try:
            report = run.progress_reporter(progress)
            _passes(ctx, resolver, plan, summary, now=now, full=full, since=since, progress=report)
            tally.warnings += unknown_ingest_inboxes(ctx)
        except BaseException:
            publish_if_changed(ctx, tally, failing=True)
            raise
        finally:
            _fill(summary, run, tally, client, started)
        erased = complete_erasures(ctx)  # before the snapshot: erased values must not reach it
    # after the run's record is final: the snapshot's copy says how it ended
    summary.snapshot_published = publish_if_changed(ctx, tally, run, erased=erased)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    _log_finished(log, summary)
    return summary


def unknown_ingest_inboxes(ctx: Context) -> list[str]:
    """A warning per ``inboxes.ingest`` id that is not an inbox of the organization (once the
    reference lists were read): its conversations would silently never be stored."""
    ingest = ctx.settings.inboxes.ingest
    if not ingest:
        return []
    with ctx.db.connect() as con:
        known = inbox_names(con)
    if not known:
        return []
    warnings = []
    for inbox_id in ingest:
        if inbox_id not in known:
            ctx.log.warning("ingest_inbox_unknown", inbox_id=inbox_id, inboxes=len(known))
            warnings.append(
                f"inboxes.ingest names {inbox_id}, which is not one of the organization's {len(known)} "
                f"inboxes: no conversation of it is stored; `gladly-sync check` lists the inbox ids"
            )
    return warnings


def _passes(
    ctx: Context,
    resolver: Resolver,
    plan: _Plan,
    summary: SyncSummary,
    *,
    now: datetime,
    full: bool,
    since: datetime | None,
    progress: Callable[[dict[str, Any]], None] | None,
) -> None:
    """The events pass, then the export pass and the reference lists when they are due."""
    outcome = events_pass(
        ctx, resolver, start_at=plan.start_at, expired_from=plan.expired_from, fresh=plan.fresh
    )
    summary.events_seen, summary.events_new = outcome.seen, outcome.new
    summary.events_start_at = utc_iso(plan.start_at)
    summary.events_end_at = utc_iso(outcome.end_at) if outcome.end_at else None
    client = resolver.client
    if plan.export_due:
        exported = reconcile(
            ctx, client, full=full or plan.fresh, since=since, progress=progress, resolver=resolver
        )
        summary.export_jobs = exported.jobs_processed
    if plan.reconcile_due:
        resolver.tally.rows.update(refresh_references(ctx, client, resolver.tally))
        with ctx.db.transaction() as con:
            upserts.save_cursor(con, RECONCILE_STREAM, utc_iso(now), ctx.clock())
        summary.reconciled = True


def _warn_expired(log: Any, tally: Tally, plan: _Plan) -> None:
    assert plan.expired_from is not None
    tally.warnings.append(
        f"the events cursor {utc_iso(plan.expired_from)} is older than Gladly's 24 h window; "
        f"restarting at {utc_iso(plan.start_at)} and repairing the gap from export jobs"
    )
    log.warning("events_cursor_expired", cursor=utc_iso(plan.expired_from), restart_at=utc_iso(plan.start_at))


def _log_finished(log: Any, summary: SyncSummary) -> None:
    log.info(
        "sync_finished",
        run_id=summary.run_id,
        rows=summary.rows,
        events=summary.events_seen,
        new_events=summary.events_new,
        conversations=summary.conversations_fetched,
        customers=summary.customers_fetched,
        skipped_inbox_filter=summary.skipped_inbox_filter,
        lists_cut=summary.lists_cut,
        items_completed=summary.items_completed,
        requests=summary.requests,
        rate_limited=summary.rate_limited,
        export_jobs=summary.export_jobs,
        duration_seconds=summary.duration_seconds,
    )


def _fill(summary: SyncSummary, run: RunHandle, tally: Tally, client: GladlyClient, started: float) -> None:
    summary.rows = dict(tally.rows)
    summary.conversations_fetched = tally.conversations_fetched
    summary.customers_fetched = tally.customers_fetched
    summary.skipped_inbox_filter = tally.skipped_inbox_filter
    summary.lists_cut = tally.lists_cut
    summary.items_completed = tally.items_completed
    summary.warnings = list(tally.warnings)
    summary.requests, summary.rate_limited = client.requests, client.rate_limited
    summary.duration_seconds = round(time.monotonic() - started, 3)
    run.rows = dict(tally.rows)
    run.requests, run.rate_limited = client.requests, client.rate_limited
