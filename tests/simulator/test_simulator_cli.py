"""`python -m gladly_sync.simulator`: prints its base URL first, serves, and stops cleanly on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


class TestCommandLine:
    @pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
    def test_serves_until_signalled(self, stop_signal: signal.Signals) -> None:
        """The first stdout line is the base URL; the flags apply; a signal exits 0."""
        process = subprocess.Popen(
            [sys.executable, "-m", "gladly_sync.simulator", "--seed", "4", "--customers", "3",
             "--conversations", "4", "--rate-limit", "7", "--api-token", "cli-token"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            response = httpx.get(f"{base_url}/api/v1/organization",
                                 auth=("api-user@demo.example", "cli-token"), timeout=5)
            assert response.status_code == 200
            assert response.headers["Ratelimit-Limit-Second"] == "7"
            process.send_signal(stop_signal)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def test_help_lists_the_flags(self) -> None:
        """--help documents the sizes, the rate limit and the bulk export."""
        result = subprocess.run([sys.executable, "-m", "gladly_sync.simulator", "--help"], cwd=REPO,
                                capture_output=True, text=True, timeout=30, check=True)
        for flag in ("--port", "--seed", "--conversations", "--rate-limit",
                     "--items-per-conversation", "--bulk-export-items"):
            assert flag in result.stdout
