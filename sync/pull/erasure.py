"""Erasures leave the disk before the sync that applied them ends.

Gladly erases in two ways: a deleted profile (``CUSTOMER_PROFILE/DELETED``; the profile, its
conversations and items go) and a redacted item (its content emptied, no event). The writes that
apply them blank the rows and note the erasure in the store, in the same transaction
(``upserts.note_erasure``). Blanked rows are not enough: DuckDB keeps the old values in free blocks
of its file, and the snapshot is a byte copy of it. So, before the snapshot is published, every
pass that wrote (``sync``, ``reconcile``) calls :func:`complete_erasures`, which

1. blanks the outbox rows of the erased customers' conversations and of redacted items we sent,
   in the outbox database (SQLite's ``secure_delete`` zeroes the freed bytes; the WAL is then
   checkpointed and truncated);
2. rewrites the store into a fresh file (``Database.rebuild``), so no old block survives, and
   clears the note in that new file before it is swapped in. The publish that follows copies the
   clean file over the snapshot.

A crash anywhere before the swap leaves the note in place and the next pass does it again.
"""

from __future__ import annotations

import time

from gladly_sync.storage import outbox, upserts
from gladly_sync.sync.context import Context

__all__ = ["complete_erasures"]


def complete_erasures(ctx: Context) -> bool:
    """Remove erased values from every file of the store when an erasure is pending; True if one was.

    The store is held from the check to the swap, so an erasure another job writes meanwhile waits
    and keeps its own note for the next pass.
    """
    started, cpu = time.monotonic(), time.process_time()
    with ctx.db.connect() as con:
        if not upserts.erasure_pending(con):
            return False
        conversation_ids = upserts.erased_conversation_ids(con)
        item_ids = upserts.redacted_item_ids(con)
        with ctx.outbox.transaction() as box:
            blanked = outbox.blank_erased_actions(box, conversation_ids, item_ids)
        ctx.outbox.release_erased_bytes()
        rebuilt = ctx.db.rebuild(finish=upserts.clear_erasure)  # the new file; None on PostgreSQL
    ctx.log.info(
        "erasure_completed",
        outbox_rows_blanked=blanked,
        store_bytes=rebuilt.stat().st_size if rebuilt else None,
        duration_seconds=round(time.monotonic() - started, 3),
        cpu_seconds=round(time.process_time() - cpu, 3),
    )
    return True
