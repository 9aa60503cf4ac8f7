"""When the read snapshot is published: at the end of every run that changed data, and only then.

``enqueue`` validates against the snapshot and erasures must reach it, so it is never left behind a
change: a run that fails after committing some batches publishes what it committed. A run that
changed nothing leaves it alone (a copy of the whole store per run is what made writers wait). A
store without a snapshot yet gets one.
"""

from __future__ import annotations

from gladly_sync.sync.context import Context
from gladly_sync.sync.pull.resolve import Tally

__all__ = ["publish_if_changed"]


def publish_if_changed(ctx: Context, tally: Tally, *, failing: bool = False) -> bool:
    """Publish the snapshot if ``tally`` recorded a change (or there is none yet); True if it did.

    ``failing``: the run is raising; a failed publish is logged, never raised over the run's error.
    """
    snapshot = ctx.settings.storage.snapshot_path
    if snapshot is None:
        return False
    if not tally.changed_data() and snapshot.exists():
        ctx.log.info("snapshot_unchanged", reason="no_rows_changed")
        return False
    try:
        ctx.db.publish_snapshot(snapshot)
    except Exception as exc:
        if not failing:
            raise
        ctx.log.warning("snapshot_publish_failed", error=type(exc).__name__)
        return False
    return True
