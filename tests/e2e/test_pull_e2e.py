"""The pull as a user meets it through the CLI: a conversation longer than Gladly's 1000-item list."""

from __future__ import annotations

from gladly_sync.simulator import Simulator

from tests.e2e.conftest import Cli


class TestLongConversation:
    def test_sync_stores_the_newest_message_and_enqueue_replies_to_it(self, cli: Cli, sim: Simulator):
        """A 1500-item conversation: each new message is stored by a plain `sync`, the summary counts
        the cut list, and `enqueue reply` targets the newest customer message."""
        world = sim.world
        customer_id = world.new_customer(phone="+14155550142")
        conversation_id = world.new_long_conversation(customer_id, world.inbox_id("SMS"), 1500)
        cli.ok("sync")

        first = world.new_message(conversation_id, text="Where is my parcel?")
        summary = cli.json("sync")
        assert (summary["lists_cut"], summary["items_completed"]) == (1, 1)
        newest = world.new_message(conversation_id, text="Hello? Anyone?")
        human = cli.ok("sync").stdout
        assert "item lists cut at 1000 by Gladly: 1 conversations; 1 newer items" in human

        stored = cli.query(
            "SELECT id, text FROM conversation_items WHERE id IN (?, ?) ORDER BY timestamp", first, newest
        )
        assert stored == [(first, "Where is my parcel?"), (newest, "Hello? Anyone?")]
        queued = cli.json("enqueue", "reply", conversation_id, "--body", "It is on its way.")
        assert cli.json("outbox", "show", queued["id"])["reply_to_item_id"] == newest
