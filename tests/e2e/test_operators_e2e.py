"""What an operator meets, as real processes against the simulator: a prompt stop mid-backfill, an
honest status after a crash, errors a script can read, a pipe closed early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from gladly_sync.simulator import DEFAULT_API_TOKEN, Simulator
from gladly_sync.sync.pull.resolve import BATCH

from tests.e2e.conftest import ROOT, Cli, both_backends, write_config
from tests.e2e.daemons import kill, killed_if_failing, start, stop, wait_until

pytestmark = pytest.mark.e2e

STOP_WITHIN = 10.0  # seconds: SPEC, Operators
# A backfill of a few hundred conversations at 25 requests/s takes well over the stop bound.
SLOW = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "25"}
CONVERSATION = "/api/v1/conversations/"


@pytest.fixture
def big() -> Iterator[Simulator]:
    with Simulator(seed=7, customers=80, conversations=360, history_days=6) as simulator:
        yield simulator


@pytest.fixture
def slow_cli(big: Simulator, tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Cli:
    postgres = request.getfixturevalue("postgres_schema") if backend == "postgres" else None
    config = write_config(tmp_path, big.base_url, postgres=postgres)
    db_path = tmp_path / "store" / "gladly.duckdb"
    return Cli(config=config, db_path=db_path, token=DEFAULT_API_TOKEN, postgres=postgres)


def conversation_reads(sim: Simulator) -> Counter:
    """``GET /conversations/{id}`` (not its items) per conversation id."""
    ids = (r.path.removeprefix(CONVERSATION) for r in sim.requests if r.method == "GET")
    return Counter(cid for cid in ids if not cid.startswith("/") and "/" not in cid)


def export_progress(cli: Cli) -> dict | None:
    """The last sync as ``status --json`` shows it, if it is running with conversations resolved."""
    done = cli("status", "--json", timeout=30)
    if done.returncode != 0:
        return None
    sync = json.loads(done.stdout)["last_runs"].get("sync") or {}
    progress = sync.get("progress") or {}
    resolving = sync.get("status") == "running" and (progress.get("conversations_resolved") or 0) > 0
    return sync if resolving else None


def wait_for_progress(cli: Cli, process: subprocess.Popen, timeout: float = 60) -> dict:
    """Poll ``status --json`` until the running sync shows export progress with conversations resolved."""
    return wait_until(
        lambda: export_progress(cli), "export progress in status", timeout=timeout, every=0.3, process=process
    )


def snapshot_runs(cli: Cli) -> list[tuple]:
    """``sync_runs`` as readers see it: the snapshot's copy (PostgreSQL has none: the store)."""
    if cli.postgres:
        return cli.query("SELECT job, status FROM sync_runs ORDER BY started_at")
    snapshot = str(cli.db_path).replace("gladly.duckdb", "gladly_read.duckdb")
    con = duckdb.connect(snapshot, read_only=True)
    try:
        return con.execute("SELECT job, status FROM sync_runs ORDER BY started_at").fetchall()
    finally:
        con.close()


@both_backends
class TestStopMidBackfill:
    def test_daemon_stops_within_10s_and_a_sync_resumes(self, big: Simulator, slow_cli: Cli):
        """SIGTERM to `run` mid-backfill: exit 0 within 10 s, no job starts after it, and `sync`
        finishes the backfill without reading again what the stopped run stored."""
        daemon = start(slow_cli, "run", env=SLOW)
        with killed_if_failing(daemon):
            running = wait_for_progress(slow_cli, daemon)
        progress = running["progress"]
        assert progress["jobs_total"] >= 1 and progress["jobs_done"] < progress["jobs_total"]
        assert progress["eta_seconds"] > 0
        took, _, err = stop(daemon)
        assert daemon.returncode == 0, err[-3000:]
        assert took < STOP_WITHIN, f"the daemon took {took:.1f}s to stop"
        events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        signalled = next(i for i, e in enumerate(events) if e["event"] == "stop_requested")
        assert not [e for e in events[signalled:] if e["event"] == "job_started"]
        assert {e["job"] for e in events if e["event"] == "job_interrupted"} == {"sync"}
        runs = slow_cli.query("SELECT job, status FROM sync_runs WHERE job <> 'drain' ORDER BY started_at")
        assert runs == [("sync", "interrupted")]
        first_reads = conversation_reads(big)

        big.reset_requests()
        summary = slow_cli.json("sync")
        assert summary["export_jobs"] >= 1
        expected = {c["id"] for c in big.world.conversations()}
        assert {cid for (cid,) in slow_cli.query("SELECT id FROM conversations")} == expected
        again = conversation_reads(big)
        reread = set(first_reads) & set(again)
        # only the batch in flight when the stop came (fetched, not yet written) is read again
        assert len(reread) <= BATCH, f"{len(reread)} conversations read again after the resume"
        assert set(first_reads) | set(again) == expected

    def test_cron_sync_stops_within_10s_exit_143(self, big: Simulator, slow_cli: Cli):
        """SIGTERM to a cron `sync` mid-backfill: exit 143 within 10 s, the run is `interrupted`,
        the snapshot is not left saying `running`, and the next sync completes."""
        sync = start(slow_cli, "sync", env=SLOW)
        with killed_if_failing(sync):
            wait_for_progress(slow_cli, sync)
        took, out, err = stop(sync)
        assert sync.returncode == 143, err[-3000:]
        assert took < STOP_WITHIN
        assert out == ""
        failed = [json.loads(line) for line in err.splitlines() if '"command_failed"' in line]
        assert failed and "stopped by SIGTERM" in failed[-1]["message"]
        assert slow_cli.query("SELECT status FROM sync_runs") == [("interrupted",)]
        slow_cli.ok("sync")
        assert [status for _, status in snapshot_runs(slow_cli)] == ["interrupted", "ok"]


@both_backends
class TestKilledRun:
    def test_status_shows_a_killed_sync_as_interrupted(self, big: Simulator, slow_cli: Cli):
        """A sync killed with SIGKILL: `status` shows it interrupted (never running), `status --check`
        names it; the next sync records it so in the store and in the snapshot."""
        sync = start(slow_cli, "sync", env=SLOW)
        try:
            wait_for_progress(slow_cli, sync)
        finally:
            kill(sync)
        assert slow_cli.query("SELECT status, pid FROM sync_runs") == [("running", sync.pid)]

        status = slow_cli.json("status")
        assert status["last_runs"]["sync"]["status"] == "interrupted"
        assert f"process {sync.pid} is gone" in status["last_runs"]["sync"]["error"]
        check = slow_cli("status", "--check")
        assert check.returncode == 1
        run_id = status["last_runs"]["sync"]["run_id"]
        assert f"the last sync (run {run_id}" in check.stdout and "was interrupted" in check.stdout

        slow_cli.ok("sync")
        assert slow_cli.query("SELECT status FROM sync_runs ORDER BY started_at") == [
            ("interrupted",),
            ("ok",),
        ]
        assert [status for _, status in snapshot_runs(slow_cli)] == ["interrupted", "ok"]
        assert slow_cli("status", "--check").returncode == 0


class TestHealthyStatus:
    def test_check_passes_right_after_a_sync_with_a_short_sync_every(self, cli: Cli):
        """With sync_every 5 s, `status --check` right after a successful sync exits 0: the cursor's
        age counts from when it was last advanced."""
        env = {"GLADLY_SYNC__SCHEDULE__SYNC_EVERY": "5s"}
        cli.ok("sync", env=env)
        cli.ok("sync", env=env)
        done = cli("status", "--check", "--json", env=env)
        assert done.returncode == 0, done.stdout
        report = json.loads(done.stdout)
        assert report["cursors"]["events"]["age_seconds"] < 60
        assert report["gaps"] == [] and report["problems"] == []


UNKNOWN_CONVERSATION = [
    ("context", "no-such-conversation"),
    ("enqueue", "note", "no-such-conversation", "--body", "hi"),
    ("enqueue", "reply", "no-such-conversation", "--body", "hi"),
    ("enqueue", "escalate", "no-such-conversation"),
]


class TestErrorsForScripts:
    def test_unknown_conversation_is_exit_2_everywhere(self, cli: Cli):
        """An unknown conversation id is exit 2 for every command; with --json the error is a JSON
        object on stdout."""
        cli.ok("sync")
        for argv in UNKNOWN_CONVERSATION:
            plain = cli(*argv)
            assert (plain.returncode, plain.stdout) == (2, ""), argv
            as_json = cli(*argv, "--json")
            assert as_json.returncode == 2, argv
            error = json.loads(as_json.stdout)["error"]
            assert set(error) == {"code", "message"} and "no-such-conversation" in error["message"]

    def test_usage_error_with_json(self, cli: Cli):
        """A command-line mistake with --json is exit 2 and a JSON error too."""
        done = cli("sync", "--since", "yesterday", "--json")
        assert done.returncode == 2
        assert json.loads(done.stdout)["error"]["code"] == "usage_error"
        done = cli("status", "--json", "--bogus")
        assert done.returncode == 2 and json.loads(done.stdout)["error"]["code"] == "usage_error"

    def test_closed_pipe_ends_quietly(self, sim: Simulator, cli: Cli):
        """`context ID | head -c 100` ends without an error message."""
        cli.ok("sync")
        conversation = max(sim.world.conversations(), key=lambda c: len(sim.world.items(c["id"])))
        command = (
            f"{sys.executable} -m gladly_sync --config {cli.config} context {conversation['id']}"
            " | head -c 100;"
            ' echo " rc=${PIPESTATUS[0]}" >&2'
        )
        done = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            env={**os.environ, "GLADLY_API_TOKEN": cli.token},
            cwd=ROOT,
            timeout=60,
        )
        assert len(done.stdout) == 100
        assert done.stderr.strip() in ("rc=141", "rc=0"), done.stderr
        assert "BrokenPipe" not in done.stderr and "Exception" not in done.stderr

    def test_quiet_sync_prints_nothing(self, cli: Cli):
        """`sync --quiet` prints no result: cron mails nothing when all is well."""
        done = cli.ok("sync", "--quiet")
        assert done.stdout == ""
