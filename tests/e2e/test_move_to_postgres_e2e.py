"""An install moves from DuckDB to PostgreSQL: actions queued in the local SQLite outbox move into the
PostgreSQL store's outbox on first use, and are sent once from there."""

from __future__ import annotations

import pytest
from gladly_sync.simulator import DEFAULT_API_TOKEN, Simulator

from tests.conftest import PostgresSchema
from tests.e2e.conftest import Cli, write_config
from tests.e2e.test_cli_e2e import open_conversations

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


class TestMoveToPostgres:
    def test_queued_actions_follow_the_store_and_are_sent_once(
        self, sim: Simulator, cli: Cli, postgres_schema: PostgresSchema
    ):
        """A note queued (pending) and one sent on DuckDB: once the config names PostgreSQL, the
        first command moves both rows into its outbox with their ids and states, deletes the SQLite
        file, and the drain sends the pending note once (the sent one is not sent again)."""
        cli.ok("sync", "--full")
        first, second = open_conversations(sim)[:2]
        sent = cli.json("enqueue", "note", first, "--body", "sent before the move")["id"]
        cli.ok("drain")
        pending = cli.json("enqueue", "note", second, "--body", "queued before the move")["id"]
        folder = cli.config.parent
        assert list(folder.rglob("gladly_outbox.sqlite")), "queued in the local SQLite outbox"
        config = write_config(folder, sim.base_url, postgres=postgres_schema)
        moved = Cli(config, cli.db_path, DEFAULT_API_TOKEN, postgres=postgres_schema)
        rows = {row["id"]: row["status"] for row in moved.json("outbox", "list")}
        assert rows == {sent: "sent", pending: "pending"}
        assert not list(folder.rglob("gladly_outbox.sqlite*")), "the local outbox file is gone"
        moved.ok("sync", "--full")
        moved.ok("drain")
        rows = {row["id"]: row["status"] for row in moved.json("outbox", "list")}
        assert rows == {sent: "sent", pending: "sent"}
        posted = [r.body.decode() for r in sim.requests if r.method == "POST" and r.path.endswith("/notes")]
        assert sum("sent before the move" in body for body in posted) == 1
        assert sum("queued before the move" in body for body in posted) == 1
