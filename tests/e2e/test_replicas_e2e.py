"""Several ``gladly-sync run`` replicas on one PostgreSQL store, as real processes on separate hosts.

Each replica is a host of its own: its own folder and config (nothing on disk is shared; the store
and its outbox live in PostgreSQL only) and, where the kernel lets us (``unshare``, as on CI), its
own hostname and PID namespace, so both daemons run as PID 1 of different hosts, as two VMs would.
Applied queues its notes through the CLI of a third folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from gladly_sync.simulator import Simulator

from tests.e2e.conftest import ROOT, Cli, write_config
from tests.e2e.daemons import wait_until
from tests.e2e.test_cli_e2e import open_conversations

pytestmark = pytest.mark.e2e

SYNC_EVERY = 2
REPLICA = {
    "GLADLY_SYNC__SCHEDULE__SYNC_EVERY": f"{SYNC_EVERY}s",
    "GLADLY_SYNC__SCHEDULE__DRAIN_EVERY": "1s",
    "GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "6",
    # A note the killed replica was sending is `unknown`: reconciled, and sent again only when its
    # POST never reached Gladly and this long has passed (10 min by default).
    "GLADLY_SYNC__OUTBOX__UNKNOWN_SETTLE": "3s",
}
# Run the CLI under another hostname (in the new UTS namespace unshare made).
_AS_HOST = (
    "import os, socket, sys; socket.sethostname(sys.argv[1]); "
    "os.execv(sys.executable, [sys.executable, '-m', 'gladly_sync', *sys.argv[2:]])"
)
_NAMESPACES = ["unshare", "--uts", "--pid", "--mount-proc", "--fork", "--kill-child=SIGTERM"]


@cache
def hosts_can_be_simulated() -> bool:
    """Whether this machine lets us give a process its own hostname and PID namespace."""
    try:
        done = subprocess.run(
            [*_NAMESPACES, sys.executable, "-c", "import socket; socket.sethostname('probe')"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@dataclass
class Replica:
    """One ``gladly-sync run`` on a host of its own."""

    host: str
    folder: Path
    process: subprocess.Popen
    namespaced: bool

    @property
    def pid(self) -> int:
        """The daemon's PID as this machine sees it (in its namespace it is PID 1)."""
        if not self.namespaced:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return int(children[0])

    def owns(self, run: tuple) -> bool:
        """Whether a ``sync_runs`` row (run_id, pid, host, ...) is this replica's."""
        return run[2] == self.host if self.namespaced else run[1] == self.process.pid

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.communicate(timeout=30)

    def stop(self) -> str:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        return out + err


def start_replica(cli: Cli, sim: Simulator, folder: Path, host: str) -> Replica:
    """``gladly-sync run`` from its own folder and config, on the store ``cli`` uses."""
    config = write_config(folder, sim.base_url, postgres=cli.postgres)
    argv = ["--config", str(config), "run"]
    namespaced = hosts_can_be_simulated()
    command = (
        [*_NAMESPACES, sys.executable, "-c", _AS_HOST, host, *argv]
        if namespaced
        else [sys.executable, "-m", "gladly_sync", *argv]
    )
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GLADLY_API_TOKEN": cli.token, **REPLICA},
        cwd=ROOT,
    )
    return Replica(host, folder, process, namespaced)


def sync_runs(cli: Cli, job: str = "sync") -> list[tuple]:
    """(run_id, pid, host, started_at, finished_at, status) of the job's runs, oldest first."""
    return cli.query(
        "SELECT run_id, pid, host, started_at, finished_at, status FROM sync_runs "
        "WHERE job = ? AND status <> 'skipped' ORDER BY started_at",
        job,
    )


def assert_no_overlap(runs: list[tuple], killed: Replica, killed_at: datetime) -> None:
    """A run's span is [started_at, finished_at]; a run of the killed replica ended when it was
    killed; a run still going now ends now."""
    now = datetime.now(UTC)
    spans = sorted((r[3], r[4] or (killed_at if killed.owns(r) else now)) for r in runs)
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start >= end, f"two runs of one job overlapped: {spans}"


def enqueue_notes(cli: Cli, conversations: list[str], tag: str) -> dict[str, str]:
    """One note per conversation; returns {outbox id: body}."""
    queued = {}
    for n, conv_id in enumerate(conversations):
        body = f"{tag} note {n}"
        queued[cli.json("enqueue", "note", conv_id, "--body", body)["id"]] = body
    return queued


@pytest.mark.parametrize("backend", ["postgres"])
class TestReplicas:
    def test_the_sync_holder_dies_and_the_other_replica_takes_over(
        self, sim: Simulator, cli: Cli, tmp_path: Path
    ):
        """Two daemons on two hosts share one store: each job runs on one at a time; when the sync's
        holder is killed (-9), the other runs it within about one interval, stores the new
        messages and records the dead run as interrupted; draining goes on; every note Applied
        queued (from a third host) reaches Gladly exactly once; no two runs of a job overlap; and
        no host keeps an outbox file of its own."""
        cli.ok("sync", "--full")
        conversations = open_conversations(sim)
        for conv_id in conversations[:6]:  # a sync slow enough (~13 requests at 6/s) to be caught in
            sim.world.new_message(conv_id, text="Any news?")
        queued = enqueue_notes(cli, conversations[:4], "before")
        replicas = [start_replica(cli, sim, tmp_path / name, name) for name in ("replica-a", "replica-b")]
        try:
            running = wait_until(
                lambda: [r for r in sync_runs(cli) if r[5] == "running" and any(p.owns(r) for p in replicas)],
                "replica's sync run",
                timeout=60,
            )[-1]
            holder = next(p for p in replicas if p.owns(running))
            survivor = next(p for p in replicas if p is not holder)
            holder.kill()
            killed_at = datetime.now(UTC)
            item_id = sim.world.new_message(conversations[6], text="Still waiting")
            queued.update(enqueue_notes(cli, conversations[4:8], "after"))
            wait_until(
                lambda: cli.query("SELECT 1 FROM conversation_items WHERE id = ?", item_id),
                "sync of the new message by the surviving replica",
                timeout=SYNC_EVERY + 30,
            )
            try:
                wait_until(
                    lambda: all(row["status"] == "sent" for row in cli.json("outbox", "list")),
                    "sending of every queued note",
                    timeout=60,
                )
            except AssertionError:
                rows = [(r["id"], r["status"], r["last_error"]) for r in cli.json("outbox", "list")]
                raise AssertionError(f"not every queued note was sent within 60 s: {rows}") from None
            runs, drains = sync_runs(cli), sync_runs(cli, "drain")
            taken_over = [r for r in runs if survivor.owns(r) and r[3] > killed_at]
            assert taken_over and (taken_over[0][3] - killed_at).total_seconds() <= SYNC_EVERY + 10
            killed = next(r for r in runs if r[0] == running[0])
            assert killed[5] == "interrupted", "the survivor's sync records the dead holder's run"
        finally:
            output = "".join(p.stop() for p in replicas if p.process.returncode is None)
        assert_no_overlap(runs, holder, killed_at)
        assert_no_overlap(drains, holder, killed_at)
        posted = [r.body.decode() for r in sim.requests if r.method == "POST" and r.path.endswith("/notes")]
        for body in queued.values():
            assert sum(body in sent for sent in posted) == 1, f"{body!r} was POSTed {posted}"
        notes = [
            n["content"]["body"]
            for conv_id in conversations[:8]
            for n in sim.world.items_by_agent(conv_id, content_type="CONVERSATION_NOTE")
        ]
        assert sorted(n for n in notes if "note" in n) == sorted(queued.values())
        assert list(tmp_path.rglob("*.sqlite*")) == [], "the outbox lives in PostgreSQL only"
        assert cli.token not in output
        if holder.namespaced:  # each replica recorded its runs under its own host name
            assert {holder.host, survivor.host} <= {r[2] for r in runs}
