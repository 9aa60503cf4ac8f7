"""Operator-facing pieces, unit by unit: the stop request, run records, status health, the progress
line, errors for scripts, ``init``, ``context --limit``, colours and log context."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import respx
import structlog
from gladly_sync.storage import upserts
from gladly_sync.storage.database import Database
from gladly_sync.storage.progress import progress_path
from gladly_sync.storage.rows import conversation_row, inbox_row
from gladly_sync.sync.cli.health import assess_status, live_runs
from gladly_sync.sync.cli.main import main, starter_config
from gladly_sync.sync.cli.progress import ERASE_LINE, ProgressBar, StatusLine
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.context import Context
from gladly_sync.sync.daemon import Daemon, Job
from gladly_sync.sync.logs import ContextPool, configure_logging
from gladly_sync.sync.pull.export import _Progress
from gladly_sync.sync.pull.run import unknown_ingest_inboxes
from gladly_sync.sync.runs import publish_snapshot, run_job
from gladly_sync.sync.shutdown import Shutdown
from structlog.testing import capture_logs

from gladly_sync.errors import Interrupted
from tests.cli import API, TOKEN, make_settings, reset_logging, write_config

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def json_logs() -> Iterator[list[dict]]:
    """The JSON log lines written inside the block (the full processor chain, contextvars included)."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    events: list[dict] = []
    try:
        yield events
    finally:
        events.extend(json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{"))


@pytest.fixture(autouse=True)
def _logging():
    yield
    reset_logging()


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, storage={"snapshot_path": "data/gladly_read.duckdb"})


@pytest.fixture
def ctx(settings):
    return Context(
        settings=settings,
        db=Database(settings.storage.path, lock_wait_seconds=5),
        client_factory=lambda: pytest.fail("no client expected"),
    )


class TestShutdown:
    def test_check_raises_once_requested(self):
        """Before a request check() passes; after SIGTERM it raises Interrupted with exit 143."""
        shutdown = Shutdown()
        shutdown.check()
        shutdown.request(15)
        with pytest.raises(Interrupted) as caught:
            shutdown.check()
        assert caught.value.exit_code == 143 and "SIGTERM" in str(caught.value)

    def test_sleep_ends_at_the_request(self):
        """A wait through the shutdown ends (raising) as soon as the stop is requested."""
        shutdown = Shutdown()
        threading.Timer(0.1, shutdown.request).start()
        began = time.monotonic()
        with pytest.raises(Interrupted):
            shutdown.sleep(30)
        assert time.monotonic() - began < 5

    def test_client_sends_nothing_once_stopped(self, settings):
        """A stopped client raises Interrupted before the request leaves: Gladly receives nothing."""
        shutdown = Shutdown()
        shutdown.request()
        with respx.mock(base_url=API, assert_all_called=False) as router:
            route = router.get("/organization").respond(200, json={})
            with GladlyClient(settings.gladly, shutdown=shutdown) as client, pytest.raises(Interrupted):
                client.get_organization()
        assert route.call_count == 0


class TestRunRecords:
    def test_an_interrupted_run_is_recorded_interrupted(self, ctx):
        """A run ended by a stop request is `interrupted`, with the reason, not `failed`."""
        with pytest.raises(Interrupted), run_job(ctx, "sync"):
            ctx.shutdown.request(15)
            ctx.shutdown.check()
        with ctx.db.connect() as con:
            assert con.execute("SELECT status, error FROM sync_runs").fetchall() == [
                ("interrupted", "stopped by SIGTERM; the next run carries on from where this one stopped")
            ]

    def test_no_run_starts_after_a_stop(self, ctx):
        """Once a stop was requested no run starts (nothing is recorded)."""
        ctx.shutdown.request()
        with pytest.raises(Interrupted), run_job(ctx, "sync"):
            pytest.fail("the run started")
        with ctx.db.connect() as con:
            assert con.execute("SELECT count(*) FROM sync_runs").fetchone() == (0,)

    def test_a_dead_run_is_recorded_interrupted_by_the_next(self, ctx):
        """A `running` row whose process is gone becomes `interrupted` when the job runs again."""
        with ctx.db.transaction() as con:
            upserts.start_run(con, "dead", "sync", ctx.clock() - timedelta(minutes=5), 2**22 + 12345)
            upserts.start_run(con, "alive", "sync", ctx.clock() - timedelta(minutes=1), os.getpid())
        with run_job(ctx, "sync"):
            pass
        with ctx.db.connect() as con:
            rows = dict(con.execute("SELECT run_id, status FROM sync_runs").fetchall())
        assert rows.pop("dead") == "interrupted" and rows.pop("alive") == "running"
        assert list(rows.values()) == ["ok"]

    def test_the_snapshot_holds_the_finished_record(self, ctx, settings):
        """The snapshot is published after the run's record is final: its sync_runs says `ok`."""
        with run_job(ctx, "sync") as run:
            pass
        publish_snapshot(ctx, run)
        snapshot = Database(settings.storage.snapshot_path)
        with snapshot.connect(read_only=True) as con:
            assert con.execute("SELECT status FROM sync_runs").fetchall() == [("ok",)]

    def test_progress_file_while_running_only(self, ctx, settings):
        """A run's progress is written for `status` while it runs and removed when it ends."""
        path = progress_path(settings.storage.path, "sync")
        with run_job(ctx, "sync") as run:
            run.progress_reporter(None)({"stage": "resolving", "jobs_total": 3})
            assert json.loads(path.read_text()) == {
                "run_id": run.run_id,
                "stage": "resolving",
                "jobs_total": 3,
            }
            assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert not path.exists()


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def report(*, cursor_age: float | None = 1.0, sync: dict | None = None) -> dict:
    cursors = {} if cursor_age is None else {"events": {"cursor": "x", "age_seconds": cursor_age}}
    return {"cursors": cursors, "last_runs": {"sync": sync} if sync else {}, "outbox": {}, "gaps": []}


class TestStatusHealth:
    def test_a_gone_process_is_interrupted_and_a_live_one_shows_progress(self, tmp_path):
        """`running` with a dead pid shows as interrupted; a live run gets its reported progress."""
        db = Database(tmp_path / "gladly.duckdb")
        progress_path(db.path, "drain").write_text(json.dumps({"run_id": "r2", "stage": "items"}))
        data = {
            "last_runs": {
                "sync": {"run_id": "r1", "status": "running", "pid": 111},
                "drain": {"run_id": "r2", "status": "running", "pid": 222},
            }
        }
        live_runs(data, db, alive=lambda store, job, pid, host: pid == 222)
        assert data["last_runs"]["sync"]["status"] == "interrupted"
        assert "process 111 is gone" in data["last_runs"]["sync"]["error"]
        assert data["last_runs"]["drain"]["progress"] == {"stage": "items"}

    def test_check_names_an_interrupted_run(self, settings):
        """status --check fails on an interrupted last run and names it."""
        sync = {"run_id": "r1", "status": "interrupted", "started_at": "2026-03-01T11:00:00Z", "error": "x"}
        problems, _ = assess_status(report(sync=sync), [], settings, NOW)
        assert problems == ["the last sync (run r1, started 2026-03-01T11:00:00Z) was interrupted: x"]

    @pytest.mark.parametrize("sync_every", ["5s", "20s", "5m"])
    def test_a_fresh_cursor_is_healthy_for_any_sync_every(self, tmp_path, sync_every):
        """Right after a successful sync (cursor advanced seconds ago) --check passes, however short
        sync_every is."""
        settings = make_settings(tmp_path, schedule={"sync_every": sync_every})
        assert assess_status(report(cursor_age=30), [], settings, NOW) == ([], [])

    def test_a_long_running_sync_is_not_stale(self, settings):
        """A sync in progress for 20 minutes (an export pass) does not make the cursor stale."""
        sync = {"run_id": "r1", "status": "running", "started_at": (NOW - timedelta(minutes=20)).isoformat()}
        assert assess_status(report(cursor_age=21 * 60, sync=sync), [], settings, NOW)[0] == []
        assert assess_status(report(cursor_age=21 * 60), [], settings, NOW)[0]


def terminal(written: str) -> list[str]:
    """The rows a terminal shows for ``written``: ERASE_LINE clears the row the cursor is on."""
    rows, current = [], ""
    for index, piece in enumerate(written.split(ERASE_LINE)):
        if index:
            current = ""
        *done, current = (current + piece).split("\n")
        rows += done
    return rows + ([current] if current else [])


class TestProgressLine:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    def test_log_lines_never_share_the_progress_line(self):
        """A log line written while the bar shows is printed on its own line and the bar redrawn below."""
        tty = self.TTY()
        line = StatusLine(tty)
        bar = ProgressBar(line, every=0)
        bar({"jobs_total": 2, "jobs_done": 0, "conversations_total": 10, "conversations_resolved": 5})
        configure_logging("info", "json", stream=line)
        structlog.get_logger().info("export_job_started", job_id="j1")
        bar({"jobs_total": 2, "jobs_done": 1, "conversations_total": 10, "conversations_resolved": 10})
        structlog.get_logger().info("export_job_processed", job_id="j1")
        bar.close()
        screen = terminal(tty.getvalue())
        assert [row[:2] for row in screen] == ['{"', '{"', "[#"]
        assert "export jobs 1/2" in screen[-1]

    def test_estimate_covers_every_job_of_the_run(self, settings):
        """With 3 jobs to go and the first still resolving, the estimate counts the jobs not started."""
        meter = _Progress(Context(settings=settings, db=None, client_factory=None), None, 3)
        meter.update(stage="downloading", job_id="j1")
        meter.update(stage="resolving", conversations_total=80, conversations_resolved=0)
        rate = settings.gladly.requests_per_second
        one_job = 80 / rate
        assert meter.state["eta_seconds"] == pytest.approx(3 * one_job, rel=0.05, abs=0.2)
        meter.update(jobs_done=1, stage="done")
        meter.update(stage="downloading", job_id="j2")
        assert meter.state["eta_seconds"] >= 0


class TestErrorsForScripts:
    def test_json_error_object_on_stdout(self, ctx, tmp_path, capsys):
        """With --json an error is {"error": {"code", "message"}} on stdout, same exit code."""
        with ctx.db.connect():  # the store exists; the action does not
            pass
        config = write_config(tmp_path)
        os.environ["GLADLY_API_TOKEN"] = TOKEN
        try:
            code = main(["--config", str(config), "outbox", "show", "nope", "--json"])
        finally:
            del os.environ["GLADLY_API_TOKEN"]
        out = json.loads(capsys.readouterr().out)
        assert code == 2 and out["error"]["code"] == "not_found" and "nope" in out["error"]["message"]

    def test_config_error_as_json(self, tmp_path, capsys):
        """A config error with --json is a JSON error object too (exit 2)."""
        code = main(["--config", str(tmp_path / "missing.yaml"), "status", "--json"])
        error = json.loads(capsys.readouterr().out)["error"]
        assert code == 2 and error["code"] == "config_error" and "missing.yaml" in error["message"]


class TestInit:
    def test_writes_the_starter_config(self, tmp_path, capsys):
        """init PATH writes the shipped config.yaml there (0600) and says what to do next."""
        target = tmp_path / "etc" / "config.yaml"
        assert main(["init", str(target)]) == 0
        assert target.read_text() == (ROOT / "config.yaml").read_text()
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        assert "check" in capsys.readouterr().out

    def test_refuses_to_replace_without_force(self, tmp_path):
        """An existing file is kept (exit 2) unless --force."""
        target = tmp_path / "config.yaml"
        target.write_text("mine")
        assert main(["init", str(target)]) == 2 and target.read_text() == "mine"
        assert main(["init", str(target), "--force"]) == 0 and target.read_text() != "mine"

    def test_the_package_ships_the_repository_config(self, tmp_path):
        """The built wheel carries gladly_sync/config.yaml, byte for byte the repository's config.yaml."""
        assert starter_config() == (ROOT / "config.yaml").read_text()
        import subprocess
        import sys

        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert built.returncode == 0, built.stderr[-2000:]
        [wheel] = tmp_path.glob("gladly_sync-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            assert archive.read("gladly_sync/config.yaml") == (ROOT / "config.yaml").read_bytes()


class TestContextLimit:
    def test_newest_n_items_in_time_order(self, ctx, tmp_path, capsys):
        """context --limit N prints the newest N items, still oldest first."""
        now = datetime.now(UTC)
        items = [
            {
                "id": f"item-{n}",
                "conversationId": "conv-1",
                "timestamp": f"2025-03-01T10:0{n}:00Z",
                "initiator": {"type": "CUSTOMER", "id": "c"},
                "content": {"type": "CHAT_MESSAGE", "content": f"m{n}"},
            }
            for n in range(5)
        ]
        conversation = {"id": "conv-1", "customerId": "c", "inboxId": "in-1", "status": "OPEN"}
        with ctx.db.transaction() as con:
            upserts.upsert_conversations(con, [conversation_row(conversation, synced_at=now, source_at=now)])
            upserts.upsert_items(con, items, source_at=now, synced_at=now)
        config = write_config(
            tmp_path, storage={"path": str(ctx.settings.storage.path), "snapshot_path": None}
        )
        os.environ["GLADLY_API_TOKEN"] = TOKEN
        try:
            assert main(["--config", str(config), "context", "conv-1", "--limit", "2"]) == 0
            limited = json.loads(capsys.readouterr().out)
            assert main(["--config", str(config), "context", "conv-1", "--limit", "0"]) == 2
        finally:
            del os.environ["GLADLY_API_TOKEN"]
        assert [item["id"] for item in limited["items"]] == ["item-3", "item-4"]


class TestLogs:
    def test_no_color_turns_colours_off(self, monkeypatch):
        """On a terminal the console log is coloured, unless NO_COLOR is set."""
        tty = TestProgressLine.TTY()
        configure_logging("info", "console", stream=tty)
        structlog.get_logger().info("coloured")
        assert "\x1b[" in tty.getvalue()
        monkeypatch.setenv("NO_COLOR", "1")
        plain = TestProgressLine.TTY()
        configure_logging("info", "console", stream=plain)
        structlog.get_logger().info("plain")
        assert "plain" in plain.getvalue() and "\x1b[" not in plain.getvalue()

    def test_pool_threads_log_with_the_run_id(self):
        """Tasks on a ContextPool (the drain's and the pull's workers) log with the run's run_id."""

        def task(n: int) -> None:
            structlog.get_logger().info("outbox_sent", n=n)

        with (
            json_logs() as logs,
            structlog.contextvars.bound_contextvars(run_id="r-7"),
            ContextPool(2) as pool,
        ):
            list(pool.map(task, range(3)))
        assert [entry.get("run_id") for entry in logs] == ["r-7"] * 3


class TestDaemonStop:
    def test_duration_counts_from_the_turn_not_the_tick(self, ctx):
        """A reconcile that waited for the first sync logs its own duration, not the wait."""

        def slow(_ctx):
            time.sleep(1.0)

        daemon = Daemon(
            ctx, [Job("sync", slow, timedelta(hours=1)), Job("reconcile", lambda c: None, timedelta(hours=1))]
        )
        with capture_logs() as logs:
            thread = threading.Thread(target=daemon.serve, kwargs={"install_signals": False})
            thread.start()
            deadline = time.monotonic() + 10
            while sum(e["event"] == "job_finished" for e in logs) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            daemon.stop()
            thread.join(10)
        finished = {e["job"]: e["duration_seconds"] for e in logs if e["event"] == "job_finished"}
        assert finished["sync"] >= 1.0 and finished["reconcile"] < 0.5

    def test_no_job_starts_after_the_stop_and_running_ones_stop(self, ctx):
        """After stop(): the running job ends at its next check, the waiting one never starts."""
        started = threading.Event()

        def long_sync(job_ctx):
            started.set()
            while True:
                job_ctx.shutdown.sleep(0.05)

        daemon = Daemon(
            ctx,
            [
                Job("sync", long_sync, timedelta(hours=1)),
                Job("reconcile", lambda c: None, timedelta(hours=1)),
            ],
        )
        with capture_logs() as logs:
            thread = threading.Thread(target=daemon.serve, kwargs={"install_signals": False})
            thread.start()
            assert started.wait(10)
            began = time.monotonic()
            daemon.stop()
            thread.join(10)
        assert not thread.is_alive() and time.monotonic() - began < 5
        events = {(e["event"], e.get("job")) for e in logs}
        assert ("job_interrupted", "sync") in events and ("job_not_started", "reconcile") in events
        assert ("job_started", "reconcile") not in events

    def test_a_skipped_tick_is_our_event_not_apschedulers_sentence(self, ctx):
        """A tick that finds its job still running logs job_tick_skipped; APScheduler's warning is dropped."""

        def slow(job_ctx):
            job_ctx.shutdown.wait(30)  # runs until the daemon stops: every later tick finds it running

        with json_logs() as logs:
            daemon = Daemon(ctx, [Job("sync", slow, timedelta(seconds=0.3))])
            thread = threading.Thread(target=daemon.serve, kwargs={"install_signals": False})
            thread.start()
            time.sleep(3)
            daemon.stop()
            thread.join(10)
        assert any(e["event"] == "job_tick_skipped" and e["reason"] == "still running" for e in logs)
        assert not [e for e in logs if "maximum number of running instances" in e["event"]]

    def test_daemon_lines_carry_the_run_id(self, ctx):
        """job_started and job_finished carry the run_id the job's own lines and record use."""
        seen = []

        def job(job_ctx):
            with run_job(job_ctx, "drain") as run:
                seen.append(run.run_id)

        with json_logs() as logs:
            daemon = Daemon(ctx, [Job("drain", job, timedelta(hours=1))])  # binds its logger now
            thread = threading.Thread(target=daemon.serve, kwargs={"install_signals": False})
            thread.start()
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            daemon.stop()
            thread.join(10)
        ids = {e.get("run_id") for e in logs if e["event"] in ("job_started", "job_finished")}
        assert ids == set(seen) and len(seen) == 1


class TestIngestInboxWarning:
    def test_an_unknown_ingest_id_is_warned_about(self, ctx):
        """sync warns when an inboxes.ingest id is not an inbox of the organization."""
        now = datetime.now(UTC)
        with ctx.db.transaction() as con:
            upserts.replace_inboxes(con, [inbox_row({"id": "in-2", "name": "Sales"}, synced_at=now)])
        with capture_logs() as logs:
            warnings = unknown_ingest_inboxes(ctx)
        assert len(warnings) == 1 and "inboxes.ingest names in-1" in warnings[0]
        assert [e["event"] for e in logs] == ["ingest_inbox_unknown"]
