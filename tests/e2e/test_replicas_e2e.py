"""Several ``gladly-sync run`` replicas on one PostgreSQL store, as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest
from gladly_sync.simulator import Simulator

from tests.e2e.conftest import Cli
from tests.e2e.test_cli_e2e import open_conversations
from tests.e2e.test_daemon_e2e import start

pytestmark = pytest.mark.e2e

SYNC_EVERY = 2
REPLICA = {
    "GLADLY_SYNC__SCHEDULE__SYNC_EVERY": f"{SYNC_EVERY}s",
    "GLADLY_SYNC__SCHEDULE__DRAIN_EVERY": "1s",
    "GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "6",
}


def wait_until(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def sync_runs(cli: Cli, job: str = "sync") -> list[tuple[str, int, datetime, datetime | None, str]]:
    return cli.query(
        "SELECT run_id, pid, started_at, finished_at, status FROM sync_runs "
        "WHERE job = ? AND status <> 'skipped' ORDER BY started_at",
        job,
    )


def assert_no_overlap(runs, killed_pid: int, killed_at: datetime) -> None:  # type: ignore[no-untyped-def]
    """A run's span is [started_at, finished_at]; a run of the killed process ended when it was
    killed; a run still going now ends now."""
    now = datetime.now(UTC)
    spans = sorted((r[2], r[3] or (killed_at if r[1] == killed_pid else now)) for r in runs)
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start >= end, f"two runs of one job overlapped: {spans}"


def enqueue_notes(cli: Cli, conversations: list[str], tag: str) -> dict[str, str]:
    """One note per conversation; returns {outbox id: body}."""
    queued = {}
    for n, conv_id in enumerate(conversations):
        body = f"{tag} note {n}"
        queued[cli.json("enqueue", "note", conv_id, "--body", body)["id"]] = body
    return queued


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return out + err


@pytest.mark.parametrize("backend", ["postgres"])
class TestReplicas:
    def test_the_sync_holder_dies_and_the_other_replica_takes_over(self, sim: Simulator, cli: Cli):
        """Two daemons on one store: each job runs on one at a time; when the sync's holder is killed
        (-9), the other runs it within about one interval and stores the new messages, draining goes
        on, every queued note reaches Gladly exactly once, and no two runs of a job overlap."""
        cli.ok("sync", "--full")
        conversations = open_conversations(sim)
        for conv_id in conversations[:6]:  # a sync slow enough (~13 requests at 6/s) to be caught in
            sim.world.new_message(conv_id, text="Any news?")
        queued = enqueue_notes(cli, conversations[:4], "before")
        replicas = [start(cli, "run", env=REPLICA) for _ in range(2)]
        by_pid = {p.pid: p for p in replicas}
        try:
            running = wait_until(
                lambda: [r for r in sync_runs(cli) if r[4] == "running" and r[1] in by_pid],
                60,
                "a replica's sync run",
            )
            holder = by_pid[running[-1][1]]
            survivor = next(p for p in replicas if p is not holder)
            os.kill(holder.pid, signal.SIGKILL)
            holder.communicate(timeout=30)
            killed_at = datetime.now(UTC)
            item_id = sim.world.new_message(conversations[6], text="Still waiting")
            queued.update(enqueue_notes(cli, conversations[4:8], "after"))
            wait_until(
                lambda: cli.query("SELECT 1 FROM conversation_items WHERE id = ?", item_id),
                SYNC_EVERY + 30,
                "the surviving replica's sync of the new message",
            )
            wait_until(
                lambda: all(row["status"] == "sent" for row in cli.json("outbox", "list")),
                60,
                "every queued note sent",
            )
            runs, drains = sync_runs(cli), sync_runs(cli, "drain")
            killed = [r for r in runs if r[0] == running[-1][0]]
            # killed mid-sync: its record never finished; the next run of the job marks it interrupted
            assert killed[0][4] in ("running", "interrupted"), "the holder was killed mid-sync"
            taken_over = [r for r in runs if r[1] == survivor.pid and r[2] > killed_at]
            assert taken_over and (taken_over[0][2] - killed_at).total_seconds() <= SYNC_EVERY + 10
        finally:
            output = "".join(stop(p) for p in replicas if p.returncode is None)
        assert_no_overlap(runs, holder.pid, killed_at)
        assert_no_overlap(drains, holder.pid, killed_at)
        posted = [r.body.decode() for r in sim.requests if r.method == "POST" and r.path.endswith("/notes")]
        for body in queued.values():
            assert sum(body in sent for sent in posted) == 1, f"{body!r} was POSTed {posted}"
        notes = [
            n["content"]["body"]
            for conv_id in conversations[:8]
            for n in sim.world.items_by_agent(conv_id, content_type="CONVERSATION_NOTE")
        ]
        assert sorted(n for n in notes if "note" in n) == sorted(queued.values())
        assert cli.token not in output
