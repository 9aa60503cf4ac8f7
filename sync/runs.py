"""Every job run (sync, drain, reconcile) is recorded in ``sync_runs``, with its own ``run_id``.

    with run_job(ctx, "sync") as run:      # start_run committed, run_id bound into the logs
        ...                                # the job sets run.rows / run.requests / run.rate_limited
        run.report_progress(state)         # what ``status`` shows of the running run
    # on exit: finish_run with status ok; interrupted (a stop was requested); or failed and the
    # error's message (then re-raised)
    publish_snapshot(ctx, run)             # after the record is final, so the snapshot's copy of
                                           # sync_runs shows how the run ended

A run whose process died (SIGKILL, a crash) stays ``running`` in the table; ``status`` shows it as
``interrupted`` once its process is gone (``run_alive``), and the job's next run records it so. A
run records its host beside its pid: a pid of this host is checked here; one of another host (several
replicas on one PostgreSQL store) is alive while it holds the job's lock on the store.
``record_skipped`` records a cron run that did nothing because the same job was already running.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from gladly_sync.storage import upserts
from gladly_sync.storage.liveness import process_alive, this_host
from gladly_sync.sync.context import Context

from gladly_sync.errors import Interrupted, StorageError

__all__ = [
    "RunHandle",
    "process_alive",
    "run_alive",
    "publish_snapshot",
    "record_skipped",
    "run_job",
]

_ERROR_LIMIT = 2000
PROGRESS_EVERY = 1.0  # seconds between saves of a run's progress


def run_alive(db: Any, job: str, pid: int | None, host: str | None) -> bool:
    """Whether the process that recorded a ``running`` run of ``job`` is still there: by its pid on
    this host; on another host, by whether it still holds the job's lock on the store (a store that
    cannot tell, which no other host can reach anyway, says alive)."""
    if host is None or host == this_host():
        return process_alive(pid)
    held_by = getattr(db, "job_lock_held_by", None)
    return True if held_by is None else bool(held_by(job, host, pid))


@dataclass
class RunHandle:
    """One run in progress. The job fills in what ``finish_run`` records."""

    run_id: str
    job: str
    started_at: datetime
    rows: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    rate_limited: int = 0
    store: Any = None  # where its progress is kept for `status` (the store's save_progress)
    _reported: float = field(default=0.0, repr=False)
    _progress_lost: bool = field(default=False, repr=False)

    def add_rows(self, counts: dict[str, int]) -> None:
        for table, count in counts.items():
            self.rows[table] = self.rows.get(table, 0) + count

    def report_progress(self, state: dict[str, Any], *, force: bool = False) -> None:
        """Keep ``state`` where ``status`` reads it (at most every ``PROGRESS_EVERY`` seconds).
        Progress is a courtesy to ``status``: when it cannot be kept the run goes on, and says so once."""
        now = time.monotonic()
        if self.store is None or (not force and now - self._reported < PROGRESS_EVERY):
            return
        self._reported = now
        try:
            self.store.save_progress(self.job, self.run_id, state)
        except (OSError, StorageError) as exc:
            if not self._progress_lost:
                structlog.get_logger().warning("progress_not_kept", error=str(exc))
            self._progress_lost = True

    def progress_reporter(
        self, show: Callable[[dict[str, Any]], None] | None
    ) -> Callable[[dict[str, Any]], None]:
        """A progress callback that keeps the state for ``status`` and passes it on to ``show``."""

        def report(state: dict[str, Any]) -> None:
            self.report_progress(state, force=state.get("stage") == "finished")
            if show is not None:
                show(state)

        return report

    def clear_progress(self) -> None:
        """Forget the progress this run kept."""
        if self.store is None:
            return
        try:
            self.store.clear_progress(self.job, self.run_id)
        except (OSError, StorageError) as exc:
            structlog.get_logger().warning("progress_not_cleared", error=str(exc))


@contextmanager
def run_job(ctx: Context, job: str) -> Iterator[RunHandle]:
    """Record the run in ``sync_runs`` around the block; bind ``run_id`` and ``job`` into structlog.

    A ``run_id`` the caller bound already (the daemon, so its ``job_started``/``job_finished`` lines
    carry it) becomes the run's id. No run starts once a stop was requested (``Interrupted``)."""
    ctx.shutdown.check()
    run = RunHandle(
        run_id=structlog.contextvars.get_contextvars().get("run_id") or uuid.uuid4().hex,
        job=job,
        started_at=ctx.clock(),
        store=ctx.db,
    )
    with structlog.contextvars.bound_contextvars(run_id=run.run_id, job=job):
        with ctx.db.transaction() as con:
            _record_dead_runs(ctx, con, job)
            upserts.start_run(con, run.run_id, job, run.started_at, os.getpid(), this_host())
        try:
            yield run
        except (Interrupted, KeyboardInterrupt) as exc:
            _finish(ctx, run, status="interrupted", error=error_message(ctx, exc))
            raise
        except BaseException as exc:
            _finish(ctx, run, status="failed", error=error_message(ctx, exc))
            raise
        finally:
            run.clear_progress()
        _finish(ctx, run, status="ok", error=None)


def _record_dead_runs(ctx: Context, con: Any, job: str) -> None:
    """The job's earlier runs still ``running`` whose process is gone become ``interrupted``."""
    dead = [
        run_id
        for run_id, pid, host in upserts.running_runs(con, job)
        if not run_alive(ctx.db, job, pid, host)
    ]
    if dead:
        upserts.mark_interrupted(con, dead, "interrupted: its process ended without recording the run")
        ctx.log.warning("runs_interrupted", job=job, run_ids=dead)


def publish_snapshot(ctx: Context, run: RunHandle) -> None:
    """Publish the read snapshot (when configured) after ``run``'s record is final; a failed publish
    records the run as failed and raises."""
    path = ctx.settings.storage.snapshot_path
    if path is None:
        return
    try:
        ctx.db.publish_snapshot(path)
    except Exception as exc:
        _finish(ctx, run, status="failed", error=f"the snapshot was not published: {error_message(ctx, exc)}")
        raise


def record_skipped(ctx: Context, job: str, reason: str) -> str:
    """Record a run that was skipped (e.g. "already running (pid 123); skipped"); return its run_id."""
    run_id = uuid.uuid4().hex
    now = ctx.clock()
    with ctx.db.transaction() as con:
        upserts.start_run(con, run_id, job, now, os.getpid(), this_host())
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
