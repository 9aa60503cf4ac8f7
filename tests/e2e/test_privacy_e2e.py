"""Erased means gone from disk, and the store is its owner's alone: the real CLI, end to end."""

from __future__ import annotations

import os
import random
import re
import stat
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from gladly_sync.simulator import Simulator

from tests.e2e.conftest import Cli, run_demo
from tests.e2e.test_cli_e2e import open_conversations
from tests.privacy import dead_pid, umask

pytestmark = pytest.mark.e2e


# DuckDB compresses strings with FSST: a character that is not one of the segment's learned symbols
# is written as the escape byte 0xFF followed by the character. A marker made only of characters no
# Gladly text or id here contains is therefore on disk either verbatim or with escape bytes between
# its characters, and the search below finds both (it is checked to find the marker before erasure).
_MARKER_ALPHABET = "~^|`"
_FSST_ESCAPE = b"\xff"


def new_marker() -> str:
    """A distinctive string that occurs nowhere else (64 random characters of a rare alphabet)."""
    rng = random.Random(uuid.uuid4().int)
    return "".join(rng.choice(_MARKER_ALPHABET) for _ in range(64))


def files_holding(folder: Path, marker: str) -> list[str]:
    """Every file under ``folder`` whose bytes hold ``marker``, plain or FSST-escaped, by relative path."""
    escaped = (re.escape(_FSST_ESCAPE) + b"?" + re.escape(bytes([c])) for c in marker.encode())
    pattern = re.compile(b"".join(escaped))
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and pattern.search(path.read_bytes())
    )


def customer_with_open_conversation(sim: Simulator) -> tuple[str, str]:
    """(customer id, conversation id) of an open conversation with a customer message we can reply to."""
    found = open_conversations(sim)
    assert found, "the seeded org has no open conversation to write to"
    conversation = sim.world.conversation(found[0])
    assert conversation is not None
    return conversation["customerId"], conversation["id"]


class TestErasureLeavesNoBytes:
    def test_profile_deletion(self, sim: Simulator, cli: Cli):
        """After the sync that applies a profile deletion, the customer's profile and messages are in
        no file under the data folder: store, snapshot, WAL, anything else."""
        data = cli.config.parent  # every folder the product writes (store/, data/)
        cli.ok("sync", "--full")
        customer_id, conversation_id = customer_with_open_conversation(sim)
        marker = new_marker()
        sim.world.update_profile(customer_id, name=f"Ada {marker}")
        sim.world.new_message(conversation_id, text=f"My card number is {marker}")
        cli.ok("sync")
        assert files_holding(data, marker), "the marker must be on disk before the erasure"

        sim.world.delete_profile(customer_id)
        cli.ok("sync")
        assert cli.query("SELECT name, deleted_at IS NOT NULL FROM customers WHERE id = ?", customer_id) == [
            (None, True)
        ]
        assert files_holding(data, marker) == []

    @pytest.mark.parametrize("discovered_by", ["a new message", "an export job"])
    def test_item_redaction(self, sim: Simulator, cli: Cli, discovered_by: str):
        """After the sync that applies an item redaction (seen when the conversation is read again,
        or in an export job), the message's text is in no file under the data folder."""
        data = cli.config.parent  # every folder the product writes (store/, data/)
        cli.ok("sync", "--full")
        _, conversation_id = customer_with_open_conversation(sim)
        marker = new_marker()
        item_id = sim.world.new_message(conversation_id, text=f"My password is {marker}")
        cli.ok("sync")
        assert files_holding(data, marker)

        sim.world.redact_item(item_id)
        if discovered_by == "a new message":
            sim.world.new_message(conversation_id, text="Sorry, please delete that")
            cli.ok("sync")
        else:
            now = sim.world.now()
            sim.world.create_export_job(now - timedelta(hours=1), now)
            cli.ok("sync", "--full")
        assert cli.query("SELECT redacted FROM conversation_items WHERE id = ?", item_id) == [(True,)]
        assert files_holding(data, marker) == []

    def test_erased_customers_outbox_rows(self, sim: Simulator, cli: Cli):
        """The deletion also blanks the customer's outbox rows: a sent reply keeps its row without
        the body, a queued note is cancelled without it, and neither body is left in any file (the
        store, the snapshot's outbox copy, the outbox database and its -wal/-shm)."""
        data = cli.config.parent  # the store's folder and the outbox database's (data/)
        cli.ok("sync", "--full")
        customer_id, conversation_id = customer_with_open_conversation(sim)
        sent_marker, queued_marker = new_marker(), new_marker()
        sent = cli.json("enqueue", "reply", conversation_id, "--body", f"Your code is {sent_marker}")
        cli.ok("drain")
        queued = cli.json("enqueue", "note", conversation_id, "--body", f"Customer said {queued_marker}")
        assert files_holding(data, sent_marker) and files_holding(data, queued_marker)

        sim.world.delete_profile(customer_id)
        cli.ok("sync")
        rows = {row["id"]: (row["status"], row["body"]) for row in cli.json("outbox", "list")}
        assert rows == {sent["id"]: ("sent", None), queued["id"]: ("cancelled", None)}
        assert files_holding(data, sent_marker) == []
        assert files_holding(data, queued_marker) == []


def loose_modes(folder: Path) -> dict[str, str]:
    """Everything under ``folder`` (and itself) that is not 0700 (folders) or 0600 (files)."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            found[str(path.relative_to(folder.parent))] = f"{mode:04o}"
    return found


class TestPrivateFiles:
    def test_everything_created_is_private_under_umask_022(self, sim: Simulator, cli: Cli):
        """Under the usual 022 umask, every file and folder sync, enqueue, drain and the reads create
        (store, WAL, snapshot, lock files, the data folder itself) is 0600 / 0700."""
        data = cli.db_path.parent
        with umask(0o022):
            cli.ok("sync", "--full")
            _, conversation_id = customer_with_open_conversation(sim)
            cli.ok("enqueue", "note", conversation_id, "--body", "Checked the order.")
            cli.ok("drain")
            cli.ok("status")
            cli.ok("context", conversation_id)
            cli.ok("sync")
        created = {path.name for path in data.iterdir()}
        assert {"gladly.duckdb", "gladly_read.duckdb", "gladly.duckdb.sync.lock"} <= created
        outbox_folder = cli.config.parent / "data"
        assert "gladly_outbox.sqlite" in {path.name for path in outbox_folder.iterdir()}
        assert loose_modes(data) == {}
        assert loose_modes(outbox_folder) == {}

    def test_demo_folder_is_private(self, tmp_path: Path):
        """`gladly-sync demo` under a 022 umask leaves a 0700 folder of 0600 files."""
        with umask(0o022):
            done = run_demo(tmp_path)
        assert "warning" not in done.stderr
        assert loose_modes(tmp_path / "gladly-sync-demo") == {}

    def test_crashed_publish_temp_file_is_removed(self, cli: Cli):
        """A snapshot temp file left by a publish whose process died is removed by the next publish;
        one of a live process is left alone."""
        data = cli.db_path.parent
        cli.ok("sync", "--full")
        crashed = data / f".gladly_read.duckdb.{dead_pid()}.tmp"
        live = data / f".gladly_read.duckdb.{os.getpid()}.tmp"
        for leftover in (crashed, live):
            leftover.write_bytes(b"half a copy")
        cli.ok("sync")
        assert not crashed.exists()
        assert live.exists()


class TestConfigWarning:
    @pytest.mark.parametrize(
        ("token", "mode", "warned"),
        [
            ("literal-secret-token", 0o644, True),
            ("literal-secret-token", 0o640, True),
            ("literal-secret-token", 0o600, False),
            ("${GLADLY_API_TOKEN}", 0o644, False),
        ],
    )
    def test_literal_token_readable_by_others(self, cli: Cli, token: str, mode: int, warned: bool):
        """A config file holding a literal API token that group or others can read draws a warning."""
        text = cli.config.read_text().replace("${GLADLY_API_TOKEN}", token)
        cli.config.write_text(text)
        cli.config.chmod(mode)
        done = cli("status")
        assert ("holds a literal gladly.api_token" in done.stderr) is warned
        assert token not in done.stderr or token.startswith("$")
