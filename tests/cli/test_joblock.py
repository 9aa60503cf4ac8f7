"""Cron job locks: one run of a job at a time, the second is skipped naming the holder's PID."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from gladly_sync.sync.joblock import JobAlreadyRunning, job_lock, lock_path

HOLDER = textwrap.dedent(
    """
    import sys, time
    from gladly_sync.sync.joblock import job_lock
    with job_lock(sys.argv[1], sys.argv[2]):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "gladly.duckdb"


@pytest.fixture
def holder(db_path):
    """Another process holding the ``sync`` lock until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path), "sync"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()


class TestJobLock:
    def test_lock_file_beside_the_store_holds_the_pid(self, db_path):
        """The lock is <store>.<job>.lock (its folder created) and names the holder while held."""
        with job_lock(db_path, "sync") as path:
            assert path == lock_path(db_path, "sync") == db_path.with_name("gladly.duckdb.sync.lock")
            assert path.read_text().strip() == str(os.getpid())

    def test_second_holder_in_another_process_is_skipped_with_the_pid(self, db_path, holder):
        """While a cron run holds the job, a second run is refused at once, naming that run's PID."""
        with pytest.raises(JobAlreadyRunning) as caught, job_lock(db_path, "sync"):
            pytest.fail("the second holder must not run")
        assert caught.value.holder_pid == holder.pid
        assert caught.value.reason == f"already running (pid {holder.pid}); skipped"
        assert str(caught.value) == f"sync already running (pid {holder.pid}); skipped"

    def test_second_holder_in_the_same_process_is_skipped(self, db_path):
        """The daemon's threads and a cron run in one process see the lock too (flock per open file)."""
        with (
            job_lock(db_path, "drain"),
            pytest.raises(JobAlreadyRunning) as caught,
            job_lock(db_path, "drain"),
        ):
            pass
        assert caught.value.holder_pid == os.getpid()

    def test_jobs_do_not_block_each_other(self, db_path):
        """sync, drain and reconcile have separate locks."""
        with job_lock(db_path, "sync"), job_lock(db_path, "drain"), job_lock(db_path, "reconcile"):
            pass

    def test_released_after_the_block_and_after_the_holder_exits(self, db_path, holder):
        """The lock is free again when the block ends, and when the holding process is gone."""
        holder.stdin.close()
        holder.wait(timeout=10)
        with job_lock(db_path, "sync"):
            pass
        with job_lock(db_path, "sync"):
            pass
        assert lock_path(db_path, "sync").read_text() == ""

    def test_released_when_the_block_raises(self, db_path):
        """An exception in the job still releases its lock."""
        with pytest.raises(RuntimeError), job_lock(db_path, "sync"):
            raise RuntimeError("job failed")
        with job_lock(db_path, "sync"):
            pass

    def test_killed_holder_leaves_no_stale_lock(self, db_path):
        """A crashed (SIGKILLed) holder's lock is released by the kernel; the stale PID is ignored."""
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db_path), "sync"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout.readline().strip() == b"held"
        proc.kill()
        proc.wait(timeout=10)
        proc.stdin.close()
        proc.stdout.close()
        with job_lock(db_path, "sync"):
            assert lock_path(db_path, "sync").read_text().strip() == str(os.getpid())
