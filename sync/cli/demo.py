"""``gladly-sync demo``: the whole product against the bundled Gladly simulator, offline.

Starts the simulator on loopback with seeded data, writes a demo config, then runs the real
commands in order (check, a full sync, enqueue a reply, a note and an escalation, drain, status)
and shows three example queries an analyst would run on the published snapshot.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import duckdb
from gladly_sync.simulator import DEFAULT_API_EMAIL, DEFAULT_API_TOKEN, Simulator
from gladly_sync.storage.outbox import REPLYABLE_TYPES

DEMO_DIR = "gladly-sync-demo"

EXAMPLE_QUERIES = (
    (
        "Open work per inbox",
        """SELECT i.name AS inbox, c.status, count(*) AS conversations
FROM conversations c JOIN inboxes i ON i.id = c.inbox_id
GROUP BY ALL ORDER BY inbox, c.status""",
    ),
    (
        "Messages per channel and initiator",
        """SELECT content_type, initiator_type, count(*) AS items
FROM conversation_items WHERE deleted_at IS NULL
GROUP BY ALL ORDER BY items DESC LIMIT 8""",
    ),
    (
        "One conversation's timeline",
        """SELECT strftime(timestamp, '%Y-%m-%d %H:%M') AS at, initiator_type AS who, content_type,
       left(replace(text, chr(10), ' '), 50) AS text
FROM conversation_timeline WHERE conversation_id = '{conversation_id}' ORDER BY timestamp""",
    ),
)


def write_config(folder: Path, base_url: str, escalation_inbox: str) -> Path:
    """The demo's config.yaml: the simulator's URL and credentials, everything else as shipped."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(
        f"""# Written by `gladly-sync demo`: points at the bundled simulator, not at Gladly.
gladly:
  organization: demo
  sandbox: true
  email: {DEFAULT_API_EMAIL}
  api_token: {DEFAULT_API_TOKEN}   # the simulator's fixed demo token, not a secret
  base_url: {base_url}
  requests_per_second: 50
inboxes:
  ingest: []
  escalation: {escalation_inbox}
storage:
  path: gladly.duckdb
  snapshot_path: gladly_read.duckdb
logging:
  level: warning
""",
        encoding="utf-8",
    )
    return path


def pick_conversations(db_path: Path) -> tuple[str, str]:
    """Two open conversations that end with a replyable customer message: one to answer, one to escalate."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = con.execute(
            f"""
            SELECT c.id FROM conversations c
            WHERE c.status <> 'CLOSED' AND c.deleted_at IS NULL AND EXISTS (
                SELECT 1 FROM conversation_items i
                WHERE i.conversation_id = c.id AND i.initiator_type = 'CUSTOMER'
                  AND i.content_type IN {REPLYABLE_TYPES!r})
            ORDER BY c.created_at DESC LIMIT 2"""
        ).fetchall()
    finally:
        con.close()
    if len(rows) < 2:
        raise RuntimeError("the seeded simulator has fewer than two open conversations to demo with")
    return rows[0][0], rows[1][0]


def show_queries(snapshot: Path, conversation_id: str, out: TextIO) -> None:
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        for title, sql in EXAMPLE_QUERIES:
            sql = sql.format(conversation_id=conversation_id)
            print(f"\n-- {title}\n{sql};", file=out)
            print(con.sql(sql), file=out)
    finally:
        con.close()


def run_demo(
    cli: Callable[[Sequence[str]], int],
    folder: Path | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo through ``cli`` (the CLI's ``main``, passed in so the two modules do not import
    each other); returns the exit code of the first step that failed, else 0."""
    folder = (folder or Path.cwd() / DEMO_DIR).resolve()
    for stale in ("gladly.duckdb", "gladly.duckdb.wal", "gladly_read.duckdb"):
        (folder / stale).unlink(missing_ok=True)

    with Simulator(seed=7, customers=30, conversations=60) as sim:
        config = write_config(folder, sim.base_url, sim.world.inbox_id("Escalations"))

        def step(title: str, *argv: str) -> int:
            print(f"\n$ gladly-sync --config {config} {shlex.join(argv)}    # {title}", file=out, flush=True)
            return cli(["--config", str(config), *argv])

        print(f"Gladly simulator listening on {sim.base_url} (seeded, loopback only)", file=out)
        for title, argv in (
            ("validate the connection", ("check",)),
            ("backfill from export jobs, then poll events", ("sync", "--full")),
        ):
            if code := step(title, *argv):
                return code

        answer, escalate = pick_conversations(folder / "gladly.duckdb")
        for title, argv in (
            ("queue a reply", ("enqueue", "reply", answer, "--body", "Thanks! Your refund is on its way.")),
            ("queue an internal note", ("enqueue", "note", answer, "--body", "Refund issued via demo.")),
            ("queue an escalation", ("enqueue", "escalate", escalate, "--note", "Needs a supervisor.")),
            ("deliver the outbox", ("drain",)),
            ("see what was delivered", ("outbox", "list")),
            ("pick up the new items", ("sync",)),
            ("cursors, runs and counts", ("status",)),
        ):
            if code := step(title, *argv):
                return code

        moved = sim.world.conversation(escalate) or {}
        print(
            f"\nIn the simulator, conversation {escalate} now sits in inbox {moved.get('inboxId')}.", file=out
        )

    snapshot = folder / "gladly_read.duckdb"
    print(f"\nThe store is {folder / 'gladly.duckdb'}; analysts read the snapshot {snapshot}:", file=out)
    print(f"  duckdb -readonly {snapshot}", file=out)
    show_queries(snapshot, answer, out)
    return 0
