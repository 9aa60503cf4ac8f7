"""``gladly-sync``: commands, stdout/stderr discipline, and exit codes for each class of failure.

``main([...])`` runs in-process; Gladly is mocked with respx where a command talks to it, and the
other engineers' jobs (``sync_once``, ``drain_once``) are stubbed where only the wiring is tested.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from gladly_sync.storage import upserts
from gladly_sync.storage.database import Database
from gladly_sync.storage.outbox.database import OutboxDatabase
from gladly_sync.storage.outbox.schema import OUTBOX
from gladly_sync.storage.rows import conversation_row
from gladly_sync.sync.cli.main import main
from gladly_sync.sync.cli.progress import ProgressBar
from gladly_sync.sync.joblock import job_lock
from gladly_sync.sync.outbox.drain import DrainSummary
from gladly_sync.sync.pull.run import SyncSummary
from sqlalchemy import update

from gladly_sync.errors import AuthenticationFailed, NetworkError
from tests.cli import API, TOKEN, reset_logging, write_config

HOLD_DB = (
    "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.readline()"
)

SYNC_ONCE = "gladly_sync.sync.pull.run.sync_once"
DRAIN_ONCE = "gladly_sync.sync.outbox.drain.drain_once"


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    monkeypatch.setenv("GLADLY_API_TOKEN", TOKEN)
    for name in list(os.environ):
        if name.startswith("GLADLY_SYNC"):
            monkeypatch.delenv(name)
    yield
    reset_logging()


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "gladly.duckdb"


def set_outbox_row(db_path, action_id: str, **values) -> None:
    """Change a row of the outbox database (``gladly_outbox.sqlite`` beside the store)."""
    database = OutboxDatabase(db_path.parent / "gladly_outbox.sqlite")
    with database.transaction() as con:
        con.execute(update(OUTBOX).where(OUTBOX.c.id == action_id).values(**values))
    database.dispose()


def gladly_conversation(conversation_id: str) -> dict:
    return {
        "id": conversation_id,
        "customerId": "cust-1",
        "inboxId": "in-1",
        "status": "OPEN",
        "createdAt": "2025-03-01T09:00:00Z",
    }


@pytest.fixture
def store(db_path):
    """A store, filled the way sync fills it: conv-1 (an email from the customer), conv-2 (no items)."""
    db = Database(db_path, lock_wait_seconds=5)
    now = datetime.now(UTC)
    email = {
        "id": "item-1",
        "conversationId": "conv-1",
        "customerId": "cust-1",
        "timestamp": "2025-03-01T10:00:00Z",
        "initiator": {"type": "CUSTOMER", "id": "cust-1"},
        "content": {"type": "EMAIL", "subject": "Order", "content": "Where is my order?"},
    }
    with db.transaction() as con:
        rows = [
            conversation_row(gladly_conversation(c), synced_at=now, source_at=now)
            for c in ("conv-1", "conv-2")
        ]
        upserts.upsert_conversations(con, rows)
        upserts.upsert_items(con, [email], source_at=now, synced_at=now)
    return db


@pytest.fixture
def no_network():
    """Any request to Gladly is answered 500 and recorded, so a test can assert none was made."""
    with respx.mock(assert_all_called=False) as router:
        router.route().respond(500)
        yield router


@pytest.fixture
def run(capsys, config):
    """``run("sync", "--json")`` → (exit code, stdout, stderr); the token must appear in neither."""

    def invoke(*argv: str, config_path=config) -> tuple[int, str, str]:
        args = ["--config", str(config_path), *argv] if config_path is not None else list(argv)
        code = main(args)
        out, err = capsys.readouterr()
        assert TOKEN not in out and TOKEN not in err
        return code, out, err

    return invoke


def log_events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


class TestUsage:
    @pytest.mark.parametrize(
        "argv",
        [
            [],
            ["bogus"],
            ["sync", "--bogus"],
            ["outbox", "list", "--status", "nope"],
            ["sync", "--full", "--since", "x"],
        ],
    )
    def test_argparse_errors_exit_2(self, run, argv):
        """Unknown commands and options are usage errors: exit 2, usage on stderr, nothing on stdout."""
        code, out, err = run(*argv)
        assert (code, out) == (2, "")
        assert "usage: gladly-sync" in err

    def test_help_exits_0(self, run):
        """--help prints the commands on stdout."""
        code, out, _ = run("--help")
        assert code == 0
        for command in ("check", "sync", "drain", "run", "enqueue", "outbox", "status", "context", "demo"):
            assert command in out

    def test_python_dash_m_sync(self):
        """`python -m gladly_sync` is the same program."""
        done = subprocess.run(
            [sys.executable, "-m", "gladly_sync", "--help"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and "usage: gladly-sync" in done.stdout


class TestConfigErrors:
    def test_bad_value_names_file_and_key_before_any_request(self, run, tmp_path, no_network):
        """A bad config exits 2 with a line naming the file and the key; no request is made."""
        config = write_config(tmp_path, gladly={"organization": "https://acme.gladly.com"})
        code, out, err = run("check", config_path=config)
        assert (code, out) == (2, "")
        assert f"{config}: gladly.organization:" in err and "bare subdomain" in err
        assert no_network.calls.call_count == 0

    def test_unknown_key(self, run, tmp_path):
        """An unknown key is named with a suggestion."""
        config = write_config(tmp_path, schedule={"sync_evry": "5m"})
        code, _, err = run("status", config_path=config)
        assert code == 2 and "schedule.sync_evry" in err

    def test_missing_token(self, run, monkeypatch):
        """No token: exit 2 naming gladly.api_token and GLADLY_API_TOKEN."""
        monkeypatch.delenv("GLADLY_API_TOKEN")
        code, _, err = run("status")
        assert code == 2 and "gladly.api_token" in err and "GLADLY_API_TOKEN" in err

    def test_missing_file(self, run, tmp_path):
        """A config path that does not exist: exit 2 naming it."""
        code, _, err = run("status", config_path=tmp_path / "nope.yaml")
        assert code == 2 and "nope.yaml" in err and "file not found" in err

    def test_config_from_environment_and_after_the_command(self, run, config, store, monkeypatch):
        """$GLADLY_SYNC_CONFIG is used without --config; --config also works after the command."""
        monkeypatch.setenv("GLADLY_SYNC_CONFIG", str(config))
        assert run("outbox", "list", config_path=None)[0] == 0
        monkeypatch.delenv("GLADLY_SYNC_CONFIG")
        assert run("outbox", "list", "--config", str(config), config_path=None)[0] == 0


class TestCheck:
    @pytest.fixture
    def gladly(self):
        with respx.mock(base_url=API, assert_all_called=False) as router:
            router.get("/organization").respond(200, json={"id": "org-1", "name": "Acme"})
            router.get("/agents").respond(
                200, json=[{"id": "ag-1", "name": "API", "emailAddress": "api@acme.test"}]
            )
            router.get("/inboxes").respond(
                200, json=[{"id": "in-1", "name": "Support"}, {"id": "esc", "name": "Escalations"}]
            )
            router.get("/inboxes/in-1").respond(200, json={"id": "in-1", "name": "Support"})
            router.get("/inboxes/esc").respond(200, json={"id": "esc", "name": "Escalations"})
            yield router

    def test_all_pass_json(self, run, gladly):
        """check --json prints one JSON document on stdout and exits 0."""
        code, out, _ = run("check", "--json")
        data = json.loads(out)
        assert code == 0 and data["ok"] is True
        assert [c["name"] for c in data["checks"]][:3] == ["environment", "credentials", "api user"]

    def test_all_pass_lines(self, run, gladly):
        """One ✓ line per check."""
        code, out, _ = run("check")
        assert code == 0
        assert (
            out.splitlines()[1]
            == "✓ credentials: authenticated as api@acme.test; organization 'Acme' (org-1)"
        )

    @pytest.mark.parametrize(
        ("status", "message"),
        [
            (401, "authentication failed for api@acme.test at http://gladly.test: check that the API token"),
            (403, "api@acme.test lacks the API User permission"),
        ],
    )
    @pytest.mark.parametrize("debug", [[], ["--debug"]])
    def test_auth_failure_exits_3(self, run, gladly, status, message, debug):
        """401/403 exit 3 with Gladly's meaning on stderr; the token is never printed, even with --debug."""
        gladly.get("/organization").respond(status)
        code, out, err = run(*debug, "check")
        assert code == 3
        assert "✗ credentials" in out
        assert message in err

    def test_unreachable_exits_1(self, run, gladly):
        """A check that fails for another reason (Gladly unreachable) exits 1."""
        gladly.get("/organization").mock(side_effect=httpx.ConnectError("refused"))
        code, out, err = run("check")
        assert code == 1 and "✗ credentials" in out and "1 of 2 checks failed" in err

    def test_failed_lookup_exits_1(self, run, gladly):
        """A missing inbox fails check with exit 1."""
        gladly.get("/inboxes/esc").respond(404, json={"errors": [{"code": "not_exist"}]})
        code, out, _ = run("check")
        assert code == 1 and "✗ escalation inbox: inbox esc not found" in out

    def test_production_test_reply_refused_before_any_request(self, run, no_network):
        """--send-test-reply on production without --yes-production: exit 2, nothing sent."""
        code, out, err = run("check", "--send-test-reply", "conv-1")
        assert (code, out) == (2, "")
        assert "--yes-production" in err
        assert no_network.calls.call_count == 0


class TestDatabaseLocked:
    def test_locked_store_exits_4_naming_the_pid(self, run, tmp_path, db_path):
        """Another process holding the DuckDB file past lock_wait_seconds: exit 4 with its PID."""
        config = write_config(tmp_path, storage={"lock_wait_seconds": 0.3})
        db_path.parent.mkdir(parents=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_DB, str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "held"
            code, out, err = run("enqueue", "note", "conv-1", "--body", "hi", config_path=config)
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)
            proc.stdout.close()
        assert (code, out) == (4, "")
        assert f"process {proc.pid}" in err and "lock_wait_seconds" in err


class TestSync:
    def summary(self) -> SyncSummary:
        return SyncSummary(
            run_id="run-1",
            mode="incremental",
            rows={"conversations": 2, "conversation_items": 7},
            requests=5,
            rate_limited=1,
            skipped_inbox_filter=3,
            duration_seconds=1.25,
        )

    def test_json_summary_alone_on_stdout(self, run, monkeypatch):
        """sync --json prints the summary as the only thing on stdout."""
        calls = []
        monkeypatch.setattr(SYNC_ONCE, lambda ctx, **kw: calls.append(kw) or self.summary())
        code, out, _ = run("sync", "--json")
        assert code == 0 and json.loads(out) == self.summary().to_dict()
        assert calls == [{"full": False, "since": None, "progress": None}]

    def test_summary_lines(self, run, monkeypatch):
        """Without --json: rows per table, requests, 429s, inbox-filter skips, duration."""
        monkeypatch.setattr(SYNC_ONCE, lambda ctx, **kw: self.summary())
        code, out, _ = run("sync")
        assert code == 0
        assert out.splitlines() == [
            "sync incremental finished in 1.2s: 5 requests, 1 answered 429, "
            "3 conversations skipped by the inbox filter",
            "  conversation_items         7",
            "  conversations              2",
        ]

    def test_since_is_parsed_as_utc(self, run, monkeypatch):
        """--since takes ISO 8601; a naive time is UTC."""
        calls = []
        monkeypatch.setattr(SYNC_ONCE, lambda ctx, **kw: calls.append(kw) or self.summary())
        assert run("sync", "--since", "2025-03-01T10:00:00")[0] == 0
        assert calls[0]["since"] == datetime(2025, 3, 1, 10, tzinfo=UTC)

    def test_bad_since_exits_2(self, run):
        """--since that is not a time: exit 2 with an example."""
        code, _, err = run("sync", "--since", "yesterday")
        assert code == 2 and "ISO 8601" in err

    def test_since_beyond_the_events_window_exits_2(self, run, no_network):
        """--since more than 23 h back: exit 2 suggesting --full (the real sync_once, no request)."""
        since = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        code, _, err = run("sync", "--since", since)
        assert code == 2 and "--full" in err
        assert no_network.calls.call_count == 0

    def test_full_on_a_tty_shows_progress(self, run, monkeypatch):
        """sync --full on a TTY passes a progress callback that draws on stderr."""

        class TTY(io.StringIO):
            def isatty(self) -> bool:
                return True

        tty = TTY()
        monkeypatch.setattr(sys, "stderr", tty)

        def fake_sync(ctx, **kw):
            kw["progress"]({"jobs_total": 2, "jobs_done": 1, "stage": "done", "conversations_total": 0})
            return self.summary()

        monkeypatch.setattr(SYNC_ONCE, fake_sync)
        assert run("sync", "--full")[0] == 0
        assert "export jobs 1/2" in tty.getvalue()

    def test_progress_bar_draws_one_line(self):
        """The bar shows export jobs, items, conversations resolved and the estimate, on one line."""
        stream = io.StringIO()
        bar = ProgressBar(stream, every=0)
        state = {"jobs_total": 4, "jobs_done": 1, "stage": "items", "items_done": 1200}
        bar({**state, "conversations_total": 10, "conversations_resolved": 5, "eta_seconds": 90})
        bar.close()
        text = stream.getvalue()
        assert text.startswith("\r\x1b[K[######") and text.endswith("\n")
        assert "export jobs 1/4 · items 1,200 · conversations 5/10 · ~1m30s left" in text

    def test_no_progress_callback_off_a_tty(self, run, monkeypatch):
        """Off a TTY the export pass logs progress events itself; no bar."""
        calls = []
        monkeypatch.setattr(SYNC_ONCE, lambda ctx, **kw: calls.append(kw) or self.summary())
        run("sync", "--full")
        assert calls[0]["progress"] is None

    @pytest.mark.parametrize(
        ("error", "code"),
        [
            (NetworkError("GET /events to gladly.test failed in transport (ReadError)"), 1),
            (AuthenticationFailed("authentication failed for api@acme.test at http://gladly.test"), 3),
        ],
    )
    def test_failures_exit_with_their_class(self, run, monkeypatch, error, code):
        """Gladly unreachable exits 1, authentication exits 3; one clean event (the JSON log's format,
        like every stderr line), no traceback."""

        def fail(ctx, **kw):
            raise error

        monkeypatch.setattr(SYNC_ONCE, fail)
        result, out, err = run("sync")
        assert (result, out) == (code, "")
        assert all(line.startswith("{") for line in err.splitlines())
        last = log_events(err)[-1]
        assert (last["event"], last["level"], last["message"]) == (
            "command_failed",
            "error",
            f"gladly-sync: error: {error}",
        )
        assert "Traceback" not in err

    def test_debug_traceback_without_the_token(self, run, monkeypatch):
        """--debug adds the traceback; the token is scrubbed from it like from everything else."""

        def fail(ctx, **kw):
            raise RuntimeError(f"boom with {TOKEN}")

        monkeypatch.setattr(SYNC_ONCE, fail)
        code, _, err = run("--debug", "sync")
        assert code == 1
        assert "Traceback" in err and "boom with ***" in err

    def test_unexpected_error_without_debug(self, run, monkeypatch):
        """An unexpected error is one line and a hint to use --debug."""
        monkeypatch.setattr(SYNC_ONCE, lambda ctx, **kw: 1 / 0)
        code, _, err = run("sync")
        assert code == 1 and "ZeroDivisionError" in err and "--debug" in err and "Traceback" not in err


class TestCronLock:
    @pytest.mark.parametrize(
        ("command", "target"), [("sync", SYNC_ONCE), ("drain", DRAIN_ONCE)]
    )
    def test_second_run_is_skipped_exit_0_and_recorded(self, run, monkeypatch, db_path, command, target):
        """A cron run while the same job runs: 'already running (pid N); skipped', exit 0, skipped row."""
        monkeypatch.setattr(target, lambda ctx, **kw: pytest.fail("the job must not run"))
        with job_lock(db_path, command):
            code, out, err = run(command)
        reason = f"already running (pid {os.getpid()}); skipped"
        assert (code, out) == (0, "")
        assert f"{command} {reason}" in err
        with Database(db_path).connect() as con:
            assert con.execute("SELECT job, status, error FROM sync_runs").fetchall() == [
                (command, "skipped", reason)
            ]

    def test_skipped_json(self, run, db_path):
        """With --json the skip is reported on stdout too."""
        with job_lock(db_path, "sync"):
            code, out, _ = run("sync", "--json")
        assert code == 0 and json.loads(out)["status"] == "skipped"


class TestDrain:
    def test_json(self, run, monkeypatch):
        """drain --json prints the drain summary."""
        monkeypatch.setattr(DRAIN_ONCE, lambda ctx: DrainSummary(sent=2, failed=1, requests=3))
        code, out, _ = run("drain", "--json")
        assert code == 0 and json.loads(out) | {} == {**DrainSummary(sent=2, failed=1, requests=3).__dict__}

    def test_lines(self, run, monkeypatch):
        """The human summary counts each outcome; a disabled outbox says so."""
        monkeypatch.setattr(DRAIN_ONCE, lambda ctx: DrainSummary(sent=2, requests=2))
        assert run("drain")[1].strip() == (
            "drain: sent 2, retried 0, unknown 0, failed 0, reconciled 0 (2 requests, 0 answered 429)"
        )
        monkeypatch.setattr(DRAIN_ONCE, lambda ctx: DrainSummary(skipped_disabled=True))
        assert "outbox.enabled is false" in run("drain")[1]


class TestEnqueue:
    def test_reply_json(self, run, store):
        """enqueue reply --json prints {id, status, deduplicated, ...}; the log line goes to stderr."""
        code, out, err = run("enqueue", "reply", "conv-1", "--body", "Thanks, on its way!", "--json")
        data = json.loads(out)
        assert code == 0
        assert (data["status"], data["deduplicated"], data["kind"]) == ("pending", False, "reply")
        assert data["reply_to_item_id"] == "item-1"
        [event] = [e for e in log_events(err) if e["event"] == "action_enqueued"]
        assert event["action_id"] == data["id"] and "Thanks" not in err

    def test_dedupe_key_returns_the_first_row(self, run, store):
        """A second enqueue of the same action with the same dedupe key returns the existing row,
        deduplicated."""
        first = json.loads(run("enqueue", "note", "conv-1", "--body", "a", "--dedupe-key", "k1", "--json")[1])
        second = json.loads(
            run("enqueue", "note", "conv-1", "--body", "a", "--dedupe-key", "k1", "--json")[1]
        )
        assert second["id"] == first["id"] and (first["deduplicated"], second["deduplicated"]) == (
            False,
            True,
        )

    def test_queue_commands_need_no_token(self, run, store, monkeypatch):
        """With GLADLY_API_TOKEN unset, enqueue, outbox and context work; sync still asks for it."""
        monkeypatch.delenv("GLADLY_API_TOKEN")
        queued = json.loads(run("enqueue", "note", "conv-1", "--body", "hi", "--json")[1])
        assert queued["status"] == "pending"
        assert [r["id"] for r in json.loads(run("outbox", "list", "--json")[1])] == [queued["id"]]
        assert run("outbox", "cancel", queued["id"])[0] == 0
        assert json.loads(run("context", "conv-1")[1])["outbox"][0]["status"] == "cancelled"
        code, _, err = run("sync")
        assert code == 2 and "no API token" in err

    def test_dedupe_key_reused_for_another_body_exits_2(self, run, store):
        """A dedupe key reused for a different body is refused with exit 2, naming the existing row."""
        first = json.loads(run("enqueue", "note", "conv-1", "--body", "a", "--dedupe-key", "k1", "--json")[1])
        code, out, err = run("enqueue", "note", "conv-1", "--body", "b", "--dedupe-key", "k1")
        assert code == 2 and out == ""
        assert f"already used by outbox action {first['id']}" in err and "different body" in err
        assert len(json.loads(run("outbox", "list", "--json")[1])) == 1

    def test_escalate_uses_the_configured_inbox_or_inbox_option(self, run, store):
        """The escalation inbox comes from config, or --inbox."""
        default = json.loads(run("enqueue", "escalate", "conv-1", "--note", "VIP", "--json")[1])
        chosen = json.loads(run("enqueue", "escalate", "conv-2", "--inbox", "in-9", "--json")[1])
        assert (default["target_inbox_id"], chosen["target_inbox_id"]) == ("esc", "in-9")

    def test_body_from_stdin(self, run, store, monkeypatch):
        """--body - reads the body from stdin."""
        monkeypatch.setattr(sys, "stdin", io.StringIO("line one\nline two\n"))
        data = json.loads(run("enqueue", "note", "conv-1", "--body", "-", "--json")[1])
        assert data["body"] == "line one\nline two\n"

    @pytest.mark.parametrize(
        "argv",
        [
            ["enqueue", "note", "conv-unknown", "--body", "hi"],
            ["enqueue", "reply", "conv-2", "--body", "hi"],  # nothing to reply to
            ["enqueue", "note", "conv-1", "--body", "   "],
        ],
    )
    def test_validation_errors_exit_2(self, run, store, argv):
        """Enqueue validation errors exit 2 with the reason; nothing is printed on stdout."""
        code, out, err = run(*argv)
        assert (code, out) == (2, "") and "gladly-sync: error:" in err


class TestOutbox:
    @pytest.fixture
    def queued(self, run, store):
        return json.loads(run("enqueue", "note", "conv-1", "--body", "hi", "--dedupe-key", "k", "--json")[1])

    def test_list(self, run, queued):
        """outbox list --json lists rows; --status filters; the table has a header."""
        assert [r["id"] for r in json.loads(run("outbox", "list", "--json")[1])] == [queued["id"]]
        assert json.loads(run("outbox", "list", "--status", "failed", "--json")[1]) == []
        lines = run("outbox", "list")[1].splitlines()
        assert lines[0].startswith("id  kind  status") and lines[1].startswith(queued["id"])

    def test_show_by_id_and_by_key(self, run, queued):
        """outbox show ID and --dedupe-key K show the same row."""
        by_id = json.loads(run("outbox", "show", queued["id"], "--json")[1])
        by_key = json.loads(run("outbox", "show", "--dedupe-key", "k", "--json")[1])
        assert by_id == by_key and by_id["id"] == queued["id"]

    @pytest.mark.parametrize(
        ("argv", "code"),
        [
            (["outbox", "show"], 2),
            (["outbox", "show", "nope"], 2),
            (["outbox", "show", "--dedupe-key", "zz"], 2),
        ],
    )
    def test_show_errors(self, run, queued, argv, code):
        """Neither id nor key is a usage error; an unknown id or key exits 2, like every unknown id."""
        assert run(*argv)[0] == code

    def test_cancel_then_retry_refused(self, run, queued):
        """cancel moves a pending row to cancelled; retrying a cancelled row is refused (exit 2)."""
        code, out, _ = run("outbox", "cancel", queued["id"], "--json")
        assert code == 0 and json.loads(out)["status"] == "cancelled"
        code, _, err = run("outbox", "retry", queued["id"])
        assert code == 2 and "cancelled" in err


class TestStatus:
    def record(self, db_path, *, cursor_age: timedelta | None, sync_status: str = "ok") -> None:
        now = datetime.now(UTC)
        with Database(db_path).transaction() as con:
            if cursor_age is not None:  # last advanced cursor_age ago (its value trails by 2 min more)
                moved = now - cursor_age
                upserts.save_cursor(con, "events", (moved - timedelta(minutes=2)).isoformat(), moved)
            upserts.start_run(con, "run-1", "sync", now - timedelta(seconds=5), os.getpid())
            upserts.finish_run(
                con,
                "run-1",
                status=sync_status,
                finished_at=now,
                requests=1,
                rate_limited=0,
                rows={},
                error="boom" if sync_status == "failed" else None,
            )

    def test_healthy_check_exits_0(self, run, store, db_path):
        """A recent cursor and an ok sync: status --check exits 0; --json parses."""
        self.record(db_path, cursor_age=timedelta(minutes=1))
        code, out, _ = run("status", "--check", "--json")
        data = json.loads(out)
        assert code == 0 and data["ok"] is True and data["problems"] == []
        assert "cursors" in data and "last_runs" in data

    @pytest.mark.parametrize(
        ("cursor_age", "sync_status", "problem"),
        [
            (None, "ok", "no events cursor"),
            (timedelta(minutes=1), "failed", "the last sync"),
            (timedelta(minutes=16), "ok", "was last advanced 16m00s ago, more than 15m00s"),
        ],
    )
    def test_check_problems_exit_1(self, run, store, db_path, cursor_age, sync_status, problem):
        """status --check exits 1 for a failed last sync or a stale cursor; without --check it exits 0."""
        self.record(db_path, cursor_age=cursor_age, sync_status=sync_status)
        code, out, err = run("status", "--check")
        assert code == 1 and problem in out and problem in err
        assert run("status")[0] == 0

    def test_cursor_near_the_24h_limit_warns(self, run, store, db_path):
        """An events cursor over 20 h old is warned about."""
        self.record(db_path, cursor_age=timedelta(hours=21))
        data = json.loads(run("status", "--json")[1])
        assert any("nears Gladly's 24 h events window" in w for w in data["warnings"])

    @pytest.mark.parametrize(
        ("status", "attempted_ago", "problem"),
        [
            ("failed", timedelta(0), "1 outbox actions failed"),
            ("unknown", timedelta(hours=1), "stuck in unknown"),
        ],
    )
    def test_outbox_problems_exit_1(self, run, store, db_path, status, attempted_ago, problem):
        """Failed rows, and unknown rows older than the stuck limit, fail status --check."""
        self.record(db_path, cursor_age=timedelta(minutes=1))
        queued = json.loads(run("enqueue", "note", "conv-1", "--body", "hi", "--json")[1])
        attempted = datetime.now(UTC) - attempted_ago
        set_outbox_row(db_path, queued["id"], status=status, last_attempt_at=attempted)
        code, out, _ = run("status", "--check")
        assert code == 1 and problem in out

    def test_recent_unknown_is_not_stuck(self, run, store, db_path):
        """An unknown row attempted a moment ago is not a problem yet (the next drain reconciles it)."""
        self.record(db_path, cursor_age=timedelta(minutes=1))
        queued = json.loads(run("enqueue", "note", "conv-1", "--body", "hi", "--json")[1])
        set_outbox_row(db_path, queued["id"], status="unknown", last_attempt_at=datetime.now(UTC))
        assert run("status", "--check")[0] == 0


class TestContext:
    def test_context_is_json(self, run, store):
        """context prints the conversation, its items and open actions as JSON (no --json needed)."""
        code, out, _ = run("context", "conv-1")
        data = json.loads(out)
        assert code == 0 and data["conversation"]["id"] == "conv-1"
        assert [item["id"] for item in data["items"]] == ["item-1"]

    def test_unknown_conversation_exits_2(self, run, store):
        """An unknown conversation exits 2 with a message and nothing on stdout."""
        code, out, err = run("context", "conv-nope")
        assert (code, out) == (2, "") and "conv-nope" in err


class TestDaemonAndDemo:
    def test_run_serves_the_daemon(self, run, monkeypatch):
        """run builds the daemon from the config and returns what serve() returns."""
        served = []
        monkeypatch.setattr("gladly_sync.sync.daemon.Daemon.serve", lambda self: served.append(self) or 0)
        assert run("run")[0] == 0
        assert [job.name for job in served[0].jobs] == ["sync", "drain", "reconcile"]

    def test_demo_needs_no_config(self, run, monkeypatch, tmp_path):
        """demo runs run_demo(main) with no config file and no token."""
        monkeypatch.delenv("GLADLY_API_TOKEN")
        monkeypatch.chdir(tmp_path)
        calls = []
        fake = types.ModuleType("gladly_sync.sync.cli.demo")
        fake.run_demo = lambda cli: calls.append("demo") or 0
        monkeypatch.setitem(sys.modules, "gladly_sync.sync.cli.demo", fake)
        assert run("demo", config_path=None)[0] == 0 and calls == ["demo"]
