"""``status`` and ``status --check``: what the store's report means for an operator.

    live_runs(report, db)        a ``running`` run whose process is gone becomes ``interrupted``;
                                 a live one gets the progress it last reported
    assess_status(...)           problems (``--check`` exits 1) and warnings

The events cursor's age is measured from when it was last advanced: a sync that just succeeded
makes it young, whatever its value (which trails Gladly's clock by design).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gladly_sync.storage.liveness import this_host
from gladly_sync.sync.cli.render import age
from gladly_sync.sync.runs import run_alive

from gladly_sync.config import EVENTS_WINDOW, Settings

__all__ = ["assess_status", "live_runs"]

EVENTS_WARN_AGE = timedelta(hours=20)  # warn well before the cursor leaves Gladly's 24 h window
STALE_SYNCS = 3  # status --check: the events cursor may be this many sync intervals old...
STALE_FLOOR = timedelta(minutes=5)  # ...and at least this old (a short sync_every, a long sync)
STUCK_UNKNOWN = timedelta(minutes=10)  # status --check: an unknown row this old is stuck


def live_runs(
    report: dict[str, Any],
    db: Any,
    *,
    alive: Callable[[Any, str, int | None, str | None], bool] = run_alive,
) -> dict[str, Any]:
    """The report with each ``running`` last run checked against its process (``run_alive``)."""
    for job, run in (report.get("last_runs") or {}).items():
        if run.get("status") != "running":
            continue
        if not alive(db, job, run.get("pid"), run.get("host")):
            where = f" on {run['host']}" if run.get("host") not in (None, this_host()) else ""
            run["status"] = "interrupted"
            run["error"] = (
                f"process {run.get('pid')}{where} is gone and the run never recorded how it ended; "
                f"the next {job} carries on"
            )
        else:
            progress = db.load_progress(job, run.get("run_id", ""))
            if progress:
                run["progress"] = progress
    return report


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return _as_datetime(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _run_problems(report: dict[str, Any]) -> list[str]:
    problems = []
    for job, run in sorted((report.get("last_runs") or {}).items()):
        what = f"the last {job} (run {run.get('run_id', '?')}, started {run.get('started_at')})"
        if run.get("status") == "failed":
            problems.append(f"{what} failed: {run.get('error') or 'no error recorded'}")
        elif run.get("status") == "interrupted":
            problems.append(f"{what} was interrupted: {run.get('error') or 'stopped'}")
    return problems


def _cursor_findings(
    report: dict[str, Any], settings: Settings, now: datetime
) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    age_seconds = ((report.get("cursors") or {}).get("events") or {}).get("age_seconds")
    if age_seconds is None:
        return ["no events cursor yet: run `gladly-sync sync` (or start the daemon)"], warnings
    cursor_age = timedelta(seconds=age_seconds)
    allowed = max(STALE_SYNCS * settings.schedule.sync_every, STALE_FLOOR)
    sync = (report.get("last_runs") or {}).get("sync") or {}
    running_since = _as_datetime(sync.get("started_at")) if sync.get("status") == "running" else None
    if running_since is not None:
        allowed += max(timedelta(0), now - running_since)  # a long sync in progress is not a stale one
    if cursor_age > allowed:
        problems.append(
            f"the events cursor was last advanced {age(age_seconds)} ago, more than "
            f"{age(allowed.total_seconds())} (schedule.sync_every is "
            f"{age(settings.schedule.sync_every.total_seconds())}): syncs are not running or failing"
        )
    if cursor_age >= EVENTS_WINDOW:
        warnings.append(
            "the events cursor is older than Gladly's 24 h events window; the next sync restarts "
            "23 h back and repairs the gap from export jobs"
        )
    elif cursor_age >= EVENTS_WARN_AGE:
        warnings.append(
            f"the events cursor is {age(age_seconds)} old and nears Gladly's 24 h events window; "
            "run `gladly-sync sync` soon"
        )
    return problems, warnings


def _outbox_problems(
    report: dict[str, Any], unknown_rows: Sequence[dict[str, Any]], settings: Settings, now: datetime
) -> list[str]:
    problems = []
    failed = (report.get("outbox") or {}).get("failed")
    if failed:
        problems.append(f"{failed} outbox actions failed: see `gladly-sync outbox list --status failed`")
    # an unknown row is looked at again by every drain until outbox.unknown_settle has passed
    settle = settings.outbox.unknown_settle
    stuck_after = max(STALE_SYNCS * settings.schedule.drain_every, STUCK_UNKNOWN) + settle
    stuck = [
        row
        for row in unknown_rows
        if (attempted := _as_datetime(row.get("last_attempt_at") or row.get("created_at"))) is not None
        and now - attempted > stuck_after
    ]
    if stuck:
        problems.append(
            f"{len(stuck)} outbox actions stuck in unknown for more than "
            f"{age(stuck_after.total_seconds())}: see `gladly-sync outbox list --status unknown`"
        )
    return problems


def assess_status(
    report: dict[str, Any], unknown_rows: Sequence[dict[str, Any]], settings: Settings, now: datetime
) -> tuple[list[str], list[str]]:
    """``status --check``: problems (exit 1) and warnings, from ``storage.read.status_report``."""
    cursor_problems, warnings = _cursor_findings(report, settings, now)
    problems = _run_problems(report) + cursor_problems + _outbox_problems(report, unknown_rows, settings, now)
    for gap in report.get("gaps") or []:
        warnings.append(
            f"the events poll missed {gap.get('start')} .. {gap.get('end')}; no export job covers it yet"
        )
    return problems, warnings
