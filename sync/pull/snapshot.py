"""When the read snapshot is published: at the end of every run that changed data, and only then.

``enqueue`` validates against the snapshot and erasures must reach it, so it is never left behind a
change: a run that fails after committing some batches publishes what it committed (unless an
erasure is still pending: erased values must never reach the snapshot, the next run completes the
erasure and publishes). A run that changed nothing leaves it alone (a copy of the whole store per
run is what made writers wait); a run that completed an erasure always publishes. A store without a
snapshot yet gets one. A temp file left by a crashed publish is removed either way. How it is
published (erasure rebuild first, private temp files, the outbox copy) is
:meth:`storage.database.Database.publish_snapshot` and :mod:`sync.pull.erasure`.
"""

from __future__ import annotations

from pathlib import Path

from gladly_sync.storage import upserts
from gladly_sync.storage.database import remove_dead_temp_files
from gladly_sync.sync.context import Context
from gladly_sync.sync.pull.resolve import Tally
from gladly_sync.sync.runs import RunHandle, publish_snapshot

__all__ = ["publish_if_changed"]


def publish_if_changed(
    ctx: Context,
    tally: Tally,
    run: RunHandle | None = None,
    *,
    erased: bool = False,
    failing: bool = False,
) -> bool:
    """Publish the snapshot if ``tally`` recorded a change, an erasure was completed (``erased``) or
    there is no snapshot yet; True if it did.

    ``run`` (its record final): a failed publish records the run as failed and raises.
    ``failing``: the run is raising; a failed publish is logged, never raised over the run's error,
    and nothing is published while an erasure is pending.
    """
    snapshot = ctx.settings.storage.snapshot_path
    if snapshot is None:
        return False
    if not (tally.changed_data() or erased) and snapshot.exists():
        # a crashed publish's temp file goes even when nothing is published (publish removes it too)
        remove_dead_temp_files(snapshot.parent, f".{snapshot.name}.", ".tmp")
        ctx.log.info("snapshot_unchanged", reason="no_rows_changed")
        return False
    if failing:
        return _publish_failing(ctx, snapshot)
    if run is not None:
        publish_snapshot(ctx, run)
    else:
        ctx.db.publish_snapshot(snapshot)
    return True


def _publish_failing(ctx: Context, snapshot: Path) -> bool:
    """Publish what a failing run committed, unless an erasure is pending; never raise."""
    try:
        with ctx.db.connect() as con:
            if upserts.erasure_pending(con):
                ctx.log.warning("snapshot_not_published", reason="erasure_pending")
                return False
        ctx.db.publish_snapshot(snapshot)
    except Exception as exc:
        ctx.log.warning("snapshot_publish_failed", error=type(exc).__name__)
        return False
    return True
