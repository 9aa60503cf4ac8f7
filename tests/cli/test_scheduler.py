"""The daemon: APScheduler runs sync, drain and reconcile; failures are logged, never fatal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta

import pytest
from gladly_sync.storage.database import Database
from gladly_sync.sync.context import Context
from gladly_sync.sync.daemon import MAX_DEADLINE, MIN_DEADLINE, Daemon, Job, run_deadline
from gladly_sync.sync.joblock import job_lock
from structlog.testing import capture_logs

from gladly_sync.errors import AuthenticationFailed
from tests.cli import make_settings, write_config

HOUR = timedelta(hours=1)


@pytest.fixture
def ctx(tmp_path):
    settings = make_settings(tmp_path)
    return Context(
        settings=settings,
        db=Database(settings.storage.path, lock_wait_seconds=5),
        client_factory=lambda: pytest.fail("no client expected"),
    )


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Recorder:
    """A fake job: counts its calls, optionally raising or sleeping."""

    def __init__(self, *, error: Exception | None = None, sleep: float = 0.0):
        self.calls = 0
        self.error = error
        self.sleep = sleep
        self.lock = threading.Lock()

    def __call__(self, ctx: Context) -> None:
        with self.lock:
            self.calls += 1
        time.sleep(self.sleep)
        if self.error is not None:
            raise self.error


def serve_in_thread(daemon: Daemon) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.serve(install_signals=False)))
    thread.start()
    return thread, result


class TestRegistration:
    def test_jobs_on_their_intervals_with_one_instance_and_coalescing(self, ctx):
        """sync, drain and reconcile are registered on settings.schedule, max_instances=1, coalesce."""
        daemon = Daemon(ctx)
        jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
        assert sorted(jobs) == ["drain", "reconcile", "sync"]
        schedule = ctx.settings.schedule
        expected = {
            "sync": schedule.sync_every,
            "drain": schedule.drain_every,
            "reconcile": schedule.reconcile_every,
        }
        for name, job in jobs.items():
            assert job.trigger.interval == expected[name]
            assert (job.max_instances, job.coalesce) == (1, True)
            assert job.misfire_grace_time >= 1
            assert job.next_run_time is not None  # runs once at start, not after one interval

    def test_job_functions_are_the_plain_ones(self, ctx):
        """The daemon calls the same functions as the CLI."""
        from gladly_sync.sync.outbox.drain import drain_once
        from gladly_sync.sync.pull.export import reconcile_once
        from gladly_sync.sync.pull.run import sync_once

        assert {job.name: job.run for job in Daemon(ctx).jobs} == {
            "sync": sync_once,
            "drain": drain_once,
            "reconcile": reconcile_once,
        }

    @pytest.mark.parametrize(
        ("every", "deadline"),
        [
            (timedelta(seconds=30), MIN_DEADLINE),
            (timedelta(minutes=5), timedelta(minutes=10)),
            (6 * HOUR, MAX_DEADLINE),
        ],
    )
    def test_run_deadline(self, every, deadline):
        """A run may take twice its interval, at least MIN_DEADLINE and at most MAX_DEADLINE."""
        assert run_deadline(every) == deadline


class TestRunning:
    def test_each_job_runs_once_at_start(self, ctx):
        """Every job runs right away, not after its first interval, and then stops cleanly."""
        fakes = {name: Recorder() for name in ("sync", "drain", "reconcile")}
        daemon = Daemon(ctx, [Job(name, fake, HOUR) for name, fake in fakes.items()])
        thread, result = serve_in_thread(daemon)
        wait_for(lambda: all(fake.calls for fake in fakes.values()))
        daemon.stop()
        thread.join(10)
        assert {name: fake.calls for name, fake in fakes.items()} == {"sync": 1, "drain": 1, "reconcile": 1}
        assert result == [0]

    def test_failing_job_is_logged_and_runs_again(self, ctx):
        """A job that raises is logged as job_failed and retried at its next tick; others keep running."""
        failing = Recorder(error=RuntimeError("gladly unreachable"))
        healthy = Recorder()
        daemon = Daemon(
            ctx, [Job("sync", failing, timedelta(seconds=1)), Job("drain", healthy, timedelta(seconds=1))]
        )
        with capture_logs() as logs:
            thread, result = serve_in_thread(daemon)
            wait_for(lambda: failing.calls >= 2 and healthy.calls >= 2)
            daemon.stop()
            thread.join(10)
        assert result == [0]
        failures = [e for e in logs if e["event"] == "job_failed"]
        assert failures and failures[0]["job"] == "sync" and failures[0]["error"] == "gladly unreachable"
        assert failures[0]["log_level"] == "error"

    def test_auth_error_is_loud_and_stops_nothing(self, ctx):
        """An AuthError is logged at critical level with the fix; the daemon keeps scheduling."""
        failing = Recorder(error=AuthenticationFailed("authentication failed for api@acme.test at http://x"))
        daemon = Daemon(ctx, [Job("drain", failing, timedelta(seconds=1))])
        with capture_logs() as logs:
            thread, _ = serve_in_thread(daemon)
            wait_for(lambda: failing.calls >= 2)
            daemon.stop()
            thread.join(10)
        loud = [e for e in logs if e["event"] == "job_auth_failed"]
        assert loud and loud[0]["log_level"] == "critical" and "fix" in loud[0]

    def test_cron_run_holding_the_lock_makes_the_daemon_skip(self, ctx):
        """While a cron `sync` holds the sync lock, the daemon's sync is skipped and recorded."""
        fake = Recorder()
        daemon = Daemon(ctx, [Job("sync", fake, HOUR)])
        with capture_logs() as logs, job_lock(ctx.settings.storage.path, "sync"):
            daemon.run_job(daemon.jobs[0])
        assert fake.calls == 0
        assert [e["reason"] for e in logs if e["event"] == "job_skipped"] == [
            f"already running (pid {os.getpid()}); skipped"
        ]
        with ctx.db.connect() as con:
            rows = con.execute("SELECT job, status, error FROM sync_runs").fetchall()
        assert rows == [("sync", "skipped", f"already running (pid {os.getpid()}); skipped")]

    def test_sync_and_reconcile_take_turns_drain_runs_beside(self, ctx):
        """The two pull jobs never overlap in one process; drain may run at the same time."""
        active: set[str] = set()
        overlaps: list[set[str]] = []
        guard = threading.Lock()

        def job(name: str):
            def run(_ctx: Context) -> None:
                with guard:
                    active.add(name)
                    overlaps.append(set(active))
                time.sleep(0.2)
                with guard:
                    active.discard(name)

            return Job(name, run, HOUR)

        daemon = Daemon(ctx, [job("sync"), job("reconcile"), job("drain")])
        threads = [threading.Thread(target=daemon.run_job, args=[j]) for j in daemon.jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not any({"sync", "reconcile"} <= seen for seen in overlaps)
        assert any("drain" in seen and len(seen) > 1 for seen in overlaps)

    def test_first_sync_goes_before_reconcile(self, ctx):
        """At start reconcile waits for the first sync (whose backfill is also a reconcile pass)."""
        order: list[str] = []
        daemon = Daemon(
            ctx,
            [
                Job("sync", lambda c: order.append("sync"), HOUR),
                Job("reconcile", lambda c: order.append("reconcile"), HOUR),
            ],
        )
        first = threading.Thread(target=daemon.run_job, args=[daemon.jobs[1]])
        first.start()
        time.sleep(0.3)
        assert order == []
        daemon.run_job(daemon.jobs[0])
        first.join(10)
        assert order == ["sync", "reconcile"]

    def test_waiting_job_gives_up_when_the_daemon_stops(self, ctx):
        """A reconcile still waiting for the first sync does not hold up shutdown."""
        fake = Recorder()
        daemon = Daemon(ctx, [Job("sync", Recorder(), HOUR), Job("reconcile", fake, HOUR)])
        with capture_logs() as logs:
            waiting = threading.Thread(target=daemon.run_job, args=[daemon.jobs[1]])
            waiting.start()
            daemon.stop()
            waiting.join(10)
        assert not waiting.is_alive() and fake.calls == 0
        assert [e["event"] for e in logs] == ["job_not_started"]

    def test_clients_get_the_run_deadline(self, ctx):
        """Each run's Gladly client stops sending at the run's deadline."""
        deadlines: list[float] = []

        class Client:
            def set_deadline(self, deadline: float) -> None:
                deadlines.append(deadline)

        ctx.client_factory = Client
        daemon = Daemon(ctx, [Job("reconcile", lambda c: c.client_factory(), 6 * HOUR)])
        before = time.monotonic()
        daemon.run_job(daemon.jobs[0])
        [deadline] = deadlines
        assert (
            before + MAX_DEADLINE.total_seconds()
            <= deadline
            <= time.monotonic() + MAX_DEADLINE.total_seconds()
        )


DAEMON = textwrap.dedent(
    """
    import sys, time
    from datetime import timedelta
    from pathlib import Path
    from gladly_sync.config import load_settings
    from gladly_sync.sync.context import Context
    from gladly_sync.sync.logs import configure_logging
    from gladly_sync.sync.daemon import Daemon, Job

    marks = Path(sys.argv[2])

    def slow_job(ctx):
        with marks.open("a") as f:
            f.write("started\\n")
        time.sleep(1.5)
        with marks.open("a") as f:
            f.write("finished\\n")

    settings = load_settings(sys.argv[1])
    configure_logging("info", "json")
    daemon = Daemon(Context.from_settings(settings), [Job("sync", slow_job, timedelta(hours=1))])
    sys.exit(daemon.serve())
    """
)


class TestSignals:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_signal_during_a_job_finishes_it_and_exits_0(self, tmp_path, signum):
        """SIGTERM/SIGINT while a job runs: the job finishes, then the daemon exits 0."""
        config = write_config(tmp_path)
        marks = tmp_path / "marks.txt"
        env = {**os.environ, "GLADLY_API_TOKEN": "tok-daemon-test"}
        proc = subprocess.Popen(
            [sys.executable, "-c", DAEMON, str(config), str(marks)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: marks.exists() and "started" in marks.read_text(), timeout=30)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert marks.read_text().split() == ["started", "finished"]
        assert out == ""  # logs go to stderr
        assert '"event": "daemon_stopped"' in err
