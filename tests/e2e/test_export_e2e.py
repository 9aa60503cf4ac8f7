"""Export files that are odd, met the way a user meets them: ``sync --full`` as a real process
against the simulator serving a malformed line or an HTML page in place of an export file."""

from __future__ import annotations

import json

import pytest
from gladly_sync.simulator import Simulator

from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e

ITEMS = "conversation_items.jsonl"


def _job_with_items(sim: Simulator, lines: int) -> tuple[dict, list[dict]]:
    """The newest retained export job whose items file has at least ``lines`` lines, and its items."""
    for job in reversed(sim.world.export_jobs()):
        body = b"".join(sim.world.export_file(job["id"], ITEMS))
        items = [json.loads(line) for line in body.splitlines() if line.strip()]
        if len(items) >= lines:
            return job, items
    raise AssertionError(f"no export job with {lines} items lines")


class TestMalformedExportLine:
    def test_the_line_is_skipped_and_recorded_and_the_rest_stored(self, sim: Simulator, cli: Cli):
        """One line that is not JSON: sync --full exits 0, every other line of the file is stored,
        the job is recorded as processed, and status shows the skipped line (job, file, line, reason)."""
        job, items = _job_with_items(sim, 3)
        sim.faults.add("GET", rf"/export/jobs/{job['id']}/files/{ITEMS}$", kind="corrupt_line", line=2)
        done = cli.ok("sync", "--full")
        assert "InvalidInputException" not in done.stderr
        assert cli.query("SELECT id FROM export_jobs WHERE id = ?", job["id"]) == [(job["id"],)]
        stored = {row[0] for row in cli.query("SELECT id FROM conversation_items")}
        assert {item["id"] for n, item in enumerate(items, 1) if n != 2} <= stored
        assert cli.query("SELECT job_id, file, line FROM export_skipped_lines") == [(job["id"], ITEMS, 2)]
        skipped = cli.json("status")["skipped_export_lines"]
        assert skipped["total"] == 1
        assert [(s["job_id"], s["file"], s["line"]) for s in skipped["latest"]] == [(job["id"], ITEMS, 2)]
        assert skipped["latest"][0]["reason"].startswith("not valid JSON")
        assert "skipped_export_lines:" in cli.ok("status").stdout

    def test_a_later_sync_does_not_fail_on_the_job_again(self, sim: Simulator, cli: Cli):
        """The job with the bad line is processed once; the next sync --full stores the line that
        Gladly now serves whole and forgets the skipped one."""
        job, items = _job_with_items(sim, 3)
        sim.faults.add("GET", rf"/export/jobs/{job['id']}/files/{ITEMS}$", kind="corrupt_line", line=2)
        cli.ok("sync", "--full")
        cli.ok("sync", "--full")
        assert cli.query("SELECT count(*) FROM export_skipped_lines") == [(0,)]
        stored = {row[0] for row in cli.query("SELECT id FROM conversation_items")}
        assert {item["id"] for item in items} <= stored


class TestHtmlInsteadOfExportFile:
    def test_the_job_fails_naming_the_job_the_file_and_what_came_back(self, sim: Simulator, cli: Cli):
        """An HTML page served as an export file: exit 1, the message names the job, the file and
        the page; the job is not recorded, so the next sync tries it again."""
        job, _ = _job_with_items(sim, 1)
        sim.faults.add("GET", rf"/export/jobs/{job['id']}/files/{ITEMS}$", kind="html_body")
        done = cli("sync", "--full")
        assert done.returncode == 1, done.stderr
        assert job["id"] in done.stderr and ITEMS in done.stderr
        assert "text/html" in done.stderr and "<!DOCTYPE html>" in done.stderr
        assert "InvalidInputException" not in done.stderr and "unexpected error" not in done.stderr
        assert cli.query("SELECT count(*) FROM export_jobs WHERE id = ?", job["id"]) == [(0,)]
        cli.ok("sync", "--full")
        assert cli.query("SELECT count(*) FROM export_jobs WHERE id = ?", job["id"]) == [(1,)]
