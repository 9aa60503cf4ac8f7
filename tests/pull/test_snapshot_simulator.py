"""When the read snapshot is published, against the simulator: after every sync or reconcile that
changed data, and only then."""

from __future__ import annotations

import duckdb
import pytest
from gladly_sync.sync.pull.export import reconcile_once
from gladly_sync.sync.pull.run import sync_once

from .test_pull_simulator import clock, make_ctx, sim  # noqa: F401  (fixtures)


@pytest.fixture
def ctx(tmp_path, sim, clock):  # noqa: F811
    return make_ctx(tmp_path, sim, clock, snapshot="read.duckdb")


def _published(ctx) -> tuple[int, int]:
    """The snapshot file's identity (inode, mtime): a publish renames a new file into place."""
    stat = ctx.settings.storage.snapshot_path.stat()
    return stat.st_ino, stat.st_mtime_ns


def _snapshot_rows(ctx, sql: str) -> list[tuple]:
    with duckdb.connect(str(ctx.settings.storage.snapshot_path), read_only=True) as con:
        return con.execute(sql).fetchall()


class TestSnapshotPublish:
    def test_a_sync_that_changed_nothing_leaves_the_snapshot_alone(self, ctx, clock):  # noqa: F811
        """The first sync publishes; a sync that wrote no row does not copy the store again."""
        first = sync_once(ctx)
        assert first.snapshot_published and first.rows
        before = _published(ctx)
        clock.advance(minutes=1)
        again = sync_once(ctx)
        assert not again.snapshot_published
        assert _published(ctx) == before

    def test_a_sync_that_stored_a_message_publishes_it(self, ctx, sim, clock):  # noqa: F811
        """A new message stored by a sync is in the snapshot at the end of that sync."""
        sync_once(ctx)
        talk = next(c["id"] for c in sim.world.conversations() if c["status"] != "CLOSED")
        clock.advance(minutes=1)
        message_id = sim.world.new_message(talk, text="Any news on my order?")
        clock.advance(minutes=1)
        summary = sync_once(ctx)
        assert summary.snapshot_published
        count = f"SELECT count(*) FROM conversation_items WHERE id = '{message_id}'"
        assert _snapshot_rows(ctx, count) == [(1,)]

    def test_a_reconcile_without_news_leaves_the_snapshot_alone(self, ctx, clock):  # noqa: F811
        """The reconcile job re-reads the export jobs and lists; nothing new: no publish."""
        sync_once(ctx)
        before = _published(ctx)
        clock.advance(minutes=1)
        reconcile_once(ctx)
        assert _published(ctx) == before

    def test_a_store_without_a_snapshot_gets_one(self, ctx, clock):  # noqa: F811
        """A snapshot removed (or never made) is published by the next sync even without changes."""
        sync_once(ctx)
        ctx.settings.storage.snapshot_path.unlink()
        clock.advance(minutes=1)
        assert sync_once(ctx).snapshot_published
        assert ctx.settings.storage.snapshot_path.exists()
