"""Every job run (sync, drain, reconcile) is recorded in ``sync_runs``, with its own ``run_id``.

    with run_job(ctx, "sync") as run:      # start_run committed, run_id bound into the logs
        ...                                # the job sets run.rows / run.requests / run.rate_limited
    # on exit: finish_run with status ok, or failed and the error's message (then re-raised)

``record_skipped`` records a cron run that did nothing because the same job was already running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from gladly_sync.storage import upserts
from gladly_sync.sync.context import Context

__all__ = ["RunHandle", "record_skipped", "run_job"]

_ERROR_LIMIT = 2000


@dataclass
class RunHandle:
    """One run in progress. The job fills in what ``finish_run`` records."""

    run_id: str
    job: str
    started_at: datetime
    rows: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    rate_limited: int = 0

    def add_rows(self, counts: dict[str, int]) -> None:
        for table, count in counts.items():
            self.rows[table] = self.rows.get(table, 0) + count


@contextmanager
def run_job(ctx: Context, job: str) -> Iterator[RunHandle]:
    """Record the run in ``sync_runs`` around the block; bind ``run_id`` and ``job`` into structlog."""
    run = RunHandle(run_id=uuid.uuid4().hex, job=job, started_at=ctx.clock())
    with structlog.contextvars.bound_contextvars(run_id=run.run_id, job=job):
        with ctx.db.transaction() as con:
            upserts.start_run(con, run.run_id, job, run.started_at, os.getpid())
        try:
            yield run
        except BaseException as exc:
            _finish(ctx, run, status="failed", error=error_message(ctx, exc))
            raise
        _finish(ctx, run, status="ok", error=None)


def record_skipped(ctx: Context, job: str, reason: str) -> str:
    """Record a run that was skipped (e.g. "already running (pid 123); skipped"); return its run_id."""
    run_id = uuid.uuid4().hex
    now = ctx.clock()
    with ctx.db.transaction() as con:
        upserts.start_run(con, run_id, job, now, os.getpid())
        upserts.finish_run(
            con, run_id, status="skipped", finished_at=now, requests=0, rate_limited=0, rows={}, error=reason
        )
    ctx.log.info("run_skipped", run_id=run_id, job=job, reason=reason)
    return run_id


def error_message(ctx: Context, exc: BaseException) -> str:
    """The error's message for ``sync_runs.error``: no traceback, and never the API token."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    token = ctx.settings.gladly.api_token
    if token and len(token) >= 4:
        text = text.replace(token, "***")
    return text[:_ERROR_LIMIT]


def _finish(ctx: Context, run: RunHandle, *, status: str, error: str | None) -> None:
    try:
        with ctx.db.transaction() as con:
            upserts.finish_run(
                con,
                run.run_id,
                status=status,
                finished_at=ctx.clock(),
                requests=run.requests,
                rate_limited=run.rate_limited,
                rows=dict(run.rows),
                error=error,
            )
    except Exception as exc:
        if status == "ok":
            raise
        # The run already failed; that error is the one the caller must see.
        ctx.log.error("run_record_failed", run_id=run.run_id, error=str(exc))
