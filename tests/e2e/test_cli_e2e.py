"""The real CLI, end to end, against the bundled Gladly simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from gladly_sync.simulator import Simulator
from gladly_sync.storage.outbox import REPLYABLE_TYPES

from tests.e2e.conftest import Cli, both_backends, run_demo

pytestmark = pytest.mark.e2e


def open_conversations(sim: Simulator) -> list[str]:
    """Open conversations whose customer wrote in a replyable channel, oldest first."""
    found = []
    for conv in sim.world.conversations():
        if conv["status"] == "CLOSED":
            continue
        items = sim.world.items(conv["id"])
        if any(
            i["initiator"]["type"] == "CUSTOMER" and i["content"]["type"] in REPLYABLE_TYPES for i in items
        ):
            found.append(conv["id"])
    return found


@both_backends
class TestSync:
    def test_full_sync_stores_the_seeded_org(self, sim: Simulator, cli: Cli):
        """A full sync stores every conversation, its items and its customer, and the reference lists."""
        summary = cli.json("sync", "--full")
        assert summary["rows"]
        expected = {c["id"] for c in sim.world.conversations()}
        stored = {row[0] for row in cli.query("SELECT id FROM conversations")}
        assert stored == expected
        item_count = sum(len(sim.world.items(c)) for c in expected)
        assert (
            cli.query("SELECT count(*) FROM conversation_items WHERE deleted_at IS NULL")[0][0] == item_count
        )
        assert cli.query("SELECT count(*) FROM inboxes")[0][0] == len(sim.world.inboxes)
        snapshot = Path(str(cli.db_path).replace("gladly.duckdb", "gladly_read.duckdb"))
        assert snapshot.exists() == (cli.backend == "duckdb")  # PostgreSQL's readers need no copy
        assert cli.db_path.exists() == (cli.backend == "duckdb")

    def test_second_sync_changes_nothing(self, cli: Cli):
        """Syncing twice on the same Gladly data leaves the tables identical."""
        cli.ok("sync", "--full")
        tables = ("customers", "conversations", "conversation_items", "events")
        before = {t: cli.table(t, without=("synced_at",)) for t in tables[:3]}
        cli.ok("sync")
        after = {t: cli.table(t, without=("synced_at",)) for t in tables[:3]}
        assert before == after

    def test_incremental_sync_picks_up_changes(self, sim: Simulator, cli: Cli):
        """A new message, a close and a profile update show after one incremental sync."""
        cli.ok("sync", "--full")
        conv_id = open_conversations(sim)[0]
        item_id = sim.world.new_message(conv_id, text="Where is my parcel?")
        other = open_conversations(sim)[1]
        sim.world.close(other)
        summary = cli.json("sync")
        assert summary["requests"] <= 1 + 2 * 2 + 1 + 3
        assert cli.query("SELECT text FROM conversation_items WHERE id = ?", item_id) == [
            ("Where is my parcel?",)
        ]
        assert cli.query("SELECT status FROM conversations WHERE id = ?", other) == [("CLOSED",)]

    def test_merge_and_delete(self, sim: Simulator, cli: Cli):
        """A merged customer keeps its row with merged_into; a deleted profile is erased."""
        cli.ok("sync", "--full")
        customers = [c["id"] for c in sim.world.customers()]
        source, dest, gone = customers[0], customers[1], customers[2]
        sim.world.merge_customers(source, dest)
        for conv in sim.world.conversations(customer_id=gone):
            if conv["status"] != "CLOSED":
                sim.world.close(conv["id"])
        sim.world.delete_profile(gone)
        cli.ok("sync")
        assert cli.query("SELECT merged_into FROM customers WHERE id = ?", source) == [(dest,)]
        assert cli.query("SELECT count(*) FROM conversations WHERE customer_id = ?", source) == [(0,)]
        assert cli.query("SELECT name, raw, deleted_at IS NOT NULL FROM customers WHERE id = ?", gone) == [
            (None, None, True)
        ]

    def test_inbox_filter_skips_other_inboxes(self, sim: Simulator, tmp_path: Path, make_cli):
        """With inboxes.ingest set, only conversations of those inboxes are stored, and skips are counted."""
        chat = sim.world.inbox_id("Chat Support")
        cli = make_cli(tmp_path / "filtered", ingest=[chat])
        cli.ok("sync", "--full")
        stored = {row[0] for row in cli.query("SELECT DISTINCT inbox_id FROM conversations")}
        assert stored == {chat}
        outside = [
            c["id"] for c in sim.world.conversations() if c["inboxId"] != chat and c["status"] != "CLOSED"
        ]
        sim.world.new_message(outside[0], text="hello?")
        summary = cli.json("sync")
        assert summary["skipped_inbox_filter"] >= 1
        assert cli.query("SELECT count(*) FROM conversations WHERE id = ?", outside[0]) == [(0,)]


@both_backends
class TestOutbox:
    def test_reply_note_and_escalation_are_delivered_once(self, sim: Simulator, cli: Cli):
        """Queued actions land in Gladly exactly once, and the escalation moves the conversation."""
        cli.ok("sync", "--full")
        answer, escalate = open_conversations(sim)[:2]
        reply = cli.json(
            "enqueue", "reply", answer, "--body", "Your refund is on its way.", "--dedupe-key", "r1"
        )
        again = cli.json(
            "enqueue", "reply", answer, "--body", "Your refund is on its way.", "--dedupe-key", "r1"
        )
        assert again["id"] == reply["id"] and again["deduplicated"] is True
        cli.ok("enqueue", "note", answer, "--body", "Refund issued.")
        cli.ok("enqueue", "escalate", escalate, "--note", "Needs a supervisor.")
        cli.ok("drain")
        cli.ok("drain")
        agent_items = sim.world.items_by_agent(answer)
        assert [i["content"]["type"] for i in agent_items].count("CONVERSATION_NOTE") == 1
        assert sum(1 for i in agent_items if i["content"]["type"] != "CONVERSATION_NOTE") == 1
        assert sim.world.conversation(escalate)["inboxId"] == sim.world.inbox_id("Escalations")
        statuses = {row["status"] for row in cli.json("outbox", "list")}
        assert statuses == {"sent"}

    def test_lost_response_is_reconciled_not_resent(self, sim: Simulator, cli: Cli):
        """A note whose response was lost after Gladly applied it is reconciled, never sent twice."""
        cli.ok("sync", "--full")
        conv_id = open_conversations(sim)[0]
        sim.faults.add(method="POST", path=r"/notes$", kind="drop_after_apply", times=1)
        queued = cli.json("enqueue", "note", conv_id, "--body", "Checked with the warehouse.")
        cli("drain")
        assert cli.json("outbox", "show", queued["id"])["status"] == "unknown"
        cli.ok("drain")
        assert cli.json("outbox", "show", queued["id"])["status"] == "sent"
        notes = sim.world.items_by_agent(conv_id, content_type="CONVERSATION_NOTE")
        assert [n["content"]["body"] for n in notes].count("Checked with the warehouse.") == 1

    def test_reply_to_closed_conversation_fails_with_gladlys_message(self, sim: Simulator, cli: Cli):
        """A reply refused by Gladly ends failed with Gladly's code and detail."""
        cli.ok("sync", "--full")
        conv_id = open_conversations(sim)[0]
        queued = cli.json("enqueue", "reply", conv_id, "--body", "Hello")
        sim.world.close(conv_id)
        cli("drain")
        row = cli.json("outbox", "show", queued["id"])
        assert row["status"] == "failed"
        assert "closed conversations" in row["last_error"]


class TestOperatorExperience:
    def test_bad_token_exits_3_without_echoing_it(self, cli: Cli):
        """A wrong token is an authentication error (exit 3) whose message never contains the token."""
        done = cli("sync", env={"GLADLY_API_TOKEN": "wrong-secret-token"})
        assert done.returncode == 3
        assert "authentication failed" in done.stderr
        assert "wrong-secret-token" not in done.stdout + done.stderr

    def test_check_passes_against_the_simulator(self, cli: Cli):
        """check prints one passing line per check and exits 0."""
        done = cli.ok("check")
        assert "✗" not in done.stdout

    @both_backends
    def test_status_and_context(self, sim: Simulator, cli: Cli):
        """status reports cursors and counts; context returns a conversation's ordered items."""
        cli.ok("sync", "--full")
        status = cli.json("status")
        assert status
        conv_id = open_conversations(sim)[0]
        context = cli.json("context", conv_id)
        stamps = [item["timestamp"] for item in context["items"]]
        assert stamps == sorted(stamps) and len(stamps) == len(sim.world.items(conv_id))
        assert cli("context", "no-such-conversation").returncode == 2

    def test_demo_runs_offline(self, tmp_path: Path):
        """gladly-sync demo runs the whole product against the simulator and exits 0."""
        done = run_demo(tmp_path)
        assert "gladly_read.duckdb" in done.stdout
        assert (tmp_path / "gladly-sync-demo" / "gladly.duckdb").exists()
