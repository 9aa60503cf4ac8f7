"""The daemon (``gladly-sync run``): APScheduler 3 calling the same plain functions the CLI calls.

    sync       sync_once(ctx)       every schedule.sync_every
    drain      drain_once(ctx)      every schedule.drain_every
    reconcile  reconcile_once(ctx)  every schedule.reconcile_every

Each job runs once at start, then on its interval, with ``max_instances=1`` and ``coalesce=True``
(a late or overrun tick becomes one run, never a pile-up). A job that raises is logged
(``job_failed``) and simply runs again at its next tick; an ``AuthError`` is logged at critical level
and stops nothing, so fixing the token needs no restart.

Stopping. SIGINT/SIGTERM request the context's ``shutdown``: no job starts after it, the running
ones stop at their next step boundary (before the next request to Gladly, between write batches and
export parts; each keeps what it wrote and the next run resumes from there), and the daemon exits 0,
within ``Shutdown.force_after`` seconds whatever the jobs are doing (the CLI sets 8 s).
Every line a run logs carries its ``run_id``, the daemon's ``job_started``/``job_finished`` too.

Taking turns with the store. The jobs share one process, and DuckDB lets threads of one process
open the same file (``duckdb.connect`` reuses one database instance), but two write transactions that
touch the same rows conflict ("Conflict on update!"). ``sync`` and ``reconcile`` write the same
tables, so they take turns (the first sync goes first: on a fresh store it does the backfill, which
is also a reconcile pass); ``drain`` writes only the outbox and runs beside them. The store is
opened (and migrated) once before the first job, so two jobs never race to create it. Every job also
holds the cron job lock (``sync.joblock``) so a cron ``sync`` and the daemon's sync never overlap.

Deadlines: each run's Gladly client stops sending after twice the job's interval (at least
``MIN_DEADLINE``, at most ``MAX_DEADLINE``), so a hung run cannot block its job forever.

One rate budget: every run's client comes from the context's factory, so all of them share the
context's one ``Pacer`` (``Context.from_settings``): sync, drain and reconcile running side by side
stay within ``requests_per_second`` per method together, not each.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from gladly_sync.sync.context import Context
from gladly_sync.sync.joblock import JobAlreadyRunning, store_job_lock

from gladly_sync.errors import AuthError, GladlySyncError, Interrupted

__all__ = ["Daemon", "Job", "default_jobs", "run_deadline"]

MIN_DEADLINE = timedelta(minutes=2)
MAX_DEADLINE = timedelta(hours=1)
PULL_JOBS = frozenset({"sync", "reconcile"})


class _ReplacedByEvents(logging.Filter):
    """Drops APScheduler's sentences about a skipped or missed tick: ``job_tick_skipped`` says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "maximum number of running instances" not in text and "was missed by" not in text


class _Stopping(Exception):
    """The daemon stopped while a job waited for its turn."""


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Context], object]
    every: timedelta


def default_jobs(ctx: Context) -> list[Job]:
    from gladly_sync.sync.outbox.drain import drain_once
    from gladly_sync.sync.pull.export import reconcile_once
    from gladly_sync.sync.pull.run import sync_once

    schedule = ctx.settings.schedule
    return [
        Job("sync", sync_once, schedule.sync_every),
        Job("drain", drain_once, schedule.drain_every),
        Job("reconcile", reconcile_once, schedule.reconcile_every),
    ]


def run_deadline(every: timedelta) -> timedelta:
    """Twice the interval, kept between ``MIN_DEADLINE`` and ``MAX_DEADLINE``."""
    return max(MIN_DEADLINE, min(2 * every, MAX_DEADLINE))


class Daemon:
    """Owns the scheduler; ``serve()`` blocks until SIGINT/SIGTERM (or ``stop()``) and returns 0."""

    def __init__(self, ctx: Context, jobs: list[Job] | None = None):
        self.ctx = ctx
        self.jobs = default_jobs(ctx) if jobs is None else list(jobs)
        self.log = ctx.log.bind(component="daemon")
        self._pull = threading.Lock()
        self._stopping = ctx.shutdown
        # The first sync takes the pull turn before reconcile: on a fresh store it does the
        # backfill, which is also a reconcile pass, so reconcile then finds nothing left to redo.
        self._first_sync = threading.Event()
        if not any(job.name == "sync" for job in self.jobs):
            self._first_sync.set()
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        self.scheduler = self._build()

    def _build(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max(1, len(self.jobs)))},
            timezone=UTC,
        )
        now = datetime.now(UTC)
        for job in self.jobs:
            seconds = job.every.total_seconds()
            scheduler.add_job(
                self.run_job,
                trigger=IntervalTrigger(seconds=seconds, timezone=UTC),
                args=[job],
                id=job.name,
                name=job.name,
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(seconds)),
            )
        # A tick that finds its job still running is normal (coalesce): our event, not APScheduler's
        # warning sentence.
        scheduler.add_listener(self._tick_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        library = logging.getLogger("apscheduler.scheduler")
        if not any(isinstance(f, _ReplacedByEvents) for f in library.filters):
            library.addFilter(_ReplacedByEvents())
        return scheduler

    def _tick_skipped(self, event: JobEvent) -> None:
        reason = "still running" if event.code == EVENT_JOB_MAX_INSTANCES else "missed its time"
        self.log.info("job_tick_skipped", job=event.job_id, reason=reason)

    # ------------------------------------------------------------------ one run of one job

    def run_job(self, job: Job) -> None:
        """One run: take the locks, call the job, log the outcome. Never raises (but for BaseException).

        ``duration_seconds`` counts from when the job got its turn and locks, not from its tick."""
        log = self.log.bind(job=job.name)
        started: float | None = None
        with structlog.contextvars.bound_contextvars(run_id=uuid.uuid4().hex):
            try:
                with self._turn(job), store_job_lock(self.ctx.db, job.name), self._marked(job):
                    if self._stopping.requested:
                        raise _Stopping
                    started = time.monotonic()
                    log.info("job_started")
                    job.run(self._job_context(job))
            except JobAlreadyRunning as exc:
                log.info("job_skipped", reason=exc.reason, holder_pid=exc.holder_pid)
                self._record_skipped(job, exc.reason)
            except _Stopping:
                log.info("job_not_started", reason="the daemon is stopping")
            except Interrupted:
                log.info("job_interrupted", duration_seconds=_since(started), resumes="at its next run")
            except AuthError as exc:
                log.critical(
                    "job_auth_failed",
                    error=str(exc),
                    fix="check gladly.email and the API token, then wait for the next run; no restart needed",
                )
            except Exception as exc:
                # Our own errors explain themselves; anything else gets its traceback.
                trace = None if isinstance(exc, GladlySyncError) else exc
                log.error("job_failed", error=str(exc), error_type=type(exc).__name__, exc_info=trace)
            else:
                log.info("job_finished", duration_seconds=_since(started))

    @contextmanager
    def _marked(self, job: Job) -> Iterator[None]:
        with self._active_lock:
            self._active.add(job.name)
        try:
            yield
        finally:
            with self._active_lock:
                self._active.discard(job.name)

    @contextmanager
    def _turn(self, job: Job) -> Iterator[None]:
        """sync and reconcile hold ``_pull`` in turn (the first sync first); drain needs no turn."""
        if job.name not in PULL_JOBS:
            yield
            return
        if job.name != "sync":
            while not self._first_sync.wait(0.1):
                if self._stopping.requested:
                    raise _Stopping
        while not self._pull.acquire(timeout=0.1):
            if self._stopping.requested:
                raise _Stopping
        try:
            if job.name == "sync":
                self._first_sync.set()
            yield
        finally:
            self._pull.release()

    def _job_context(self, job: Job) -> Context:
        """The shared context with a client factory whose clients stop at this run's deadline."""
        deadline = time.monotonic() + run_deadline(job.every).total_seconds()
        make_client = self.ctx.client_factory

        def client_factory() -> Any:
            client = make_client()
            client.set_deadline(deadline)
            return client

        return dataclasses.replace(self.ctx, client_factory=client_factory)

    def _record_skipped(self, job: Job, reason: str) -> None:
        from gladly_sync.sync.runs import record_skipped

        try:
            record_skipped(self.ctx, job.name, reason)
        except Exception as exc:
            self.log.warning("run_record_failed", job=job.name, error=str(exc))

    # ------------------------------------------------------------------ lifecycle

    def serve(self, *, install_signals: bool = True) -> int:
        """Open (and migrate) the store, start the jobs, wait for a signal, let the running jobs stop."""
        with self.ctx.db.connect():
            pass
        signals = self._stopping.on_signals(self.log) if install_signals else nullcontext()
        with signals:
            self.scheduler.start()
            self.log.info("daemon_started", jobs={job.name: job.every.total_seconds() for job in self.jobs})
            try:
                while not self._stopping.wait(0.5):
                    pass
                with self._active_lock:
                    running = sorted(self._active)
                self.log.info("daemon_stopping", running=running)
            finally:
                self.scheduler.shutdown(wait=True)
        self.log.info("daemon_stopped")
        return 0

    def stop(self) -> None:
        self._stopping.request()


def _since(started: float | None) -> float | None:
    return None if started is None else round(time.monotonic() - started, 3)
