"""``gladly-sync``: the command line. It parses arguments, loads the config, and wires the plain
functions (``sync_once``, ``drain_once``, the outbox and read API) to stdout, stderr and exit codes.

stdout carries results only (``--json`` makes them machine-readable); logs, progress and errors go
to stderr. Exit codes:

    0  success, also a cron run skipped because the same job is running ("already running (pid N)")
    1  the run failed (Gladly unreachable, a failed check, an unknown conversation, ...)
    2  usage, config or enqueue validation error (config is checked before any network call)
    3  authentication or permission error (401/403)
    4  the database stayed locked by another process for longer than storage.lock_wait_seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

from gladly_sync.storage import outbox
from gladly_sync.sync.cli.export_files import add_arguments as add_export_arguments
from gladly_sync.sync.logs import configure_logging, register_credentials, scrub_text

from gladly_sync import __version__
from gladly_sync.config import EVENTS_WINDOW, Settings, load_settings
from gladly_sync.errors import ConfigError, GladlySyncError, NotFound, UsageError

__all__ = ["build_parser", "main"]

PROG = "gladly-sync"
EVENTS_WARN_AGE = timedelta(hours=20)  # warn well before the cursor leaves Gladly's 24 h window
STALE_SYNCS = 3  # status --check: the events cursor may be this many sync intervals old
CHECK_RETRIES = 2
STUCK_UNKNOWN = timedelta(minutes=10)  # status --check: an unknown row this old is stuck


# --------------------------------------------------------------------------- output


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def emit_json(data: Any) -> None:
    """The command's one JSON document, on stdout, secrets scrubbed."""
    print(scrub_text(json.dumps(data, indent=2, default=_jsonable, ensure_ascii=False)), file=sys.stdout)


def emit(text: str) -> None:
    print(scrub_text(text), file=sys.stdout)


def say(text: str) -> None:
    """A message for the operator that is not a result (stderr)."""
    print(scrub_text(f"{PROG}: {text}"), file=sys.stderr)


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return "-" if value is None else str(value)


def _age(seconds: float | None) -> str:
    """``95`` → ``1m35s``, ``7500`` → ``2h05m``, ``90000`` → ``1d01h``."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    for big, small, size, unit in (("d", "h", 86400, 3600), ("h", "m", 3600, 60), ("m", "s", 60, 1)):
        if seconds >= size:
            return f"{seconds // size}{big}{(seconds % size) // unit:02d}{small}"
    return f"{seconds}s"


class ProgressBar:
    """The ``sync --full`` progress line on a TTY (stderr): export jobs, items, conversations, ETA."""

    WIDTH = 24

    def __init__(self, stream: TextIO, *, every: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.every = every
        self.clock = clock
        self._drawn = 0.0
        self._length = 0

    def __call__(self, state: dict[str, Any]) -> None:
        now = self.clock()
        done = state.get("stage") == "done" and state.get("jobs_done") == state.get("jobs_total")
        if not done and self._length and now - self._drawn < self.every:
            return
        self._drawn = now
        self.draw(state)

    def draw(self, state: dict[str, Any]) -> None:
        total, resolved = state.get("conversations_total") or 0, state.get("conversations_resolved") or 0
        jobs_total, jobs_done = state.get("jobs_total") or 0, state.get("jobs_done") or 0
        fraction = (jobs_done + (resolved / total if total else 0)) / jobs_total if jobs_total else 1.0
        filled = int(min(1.0, fraction) * self.WIDTH)
        eta = state.get("eta_seconds")
        line = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] export jobs {jobs_done}/{jobs_total}"
            f" · items {state.get('items_done') or 0:,} · conversations {resolved:,}/{total:,}"
            + (f" · ~{_age(eta)} left at the rate budget" if eta else "")
        )
        self.stream.write("\r" + line.ljust(self._length))
        self.stream.flush()
        self._length = len(line)

    def close(self) -> None:
        if self._length:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- commands


def _context(settings: Settings) -> Any:
    from gladly_sync.sync.context import Context

    return Context.from_settings(settings)


def _locked(ctx: Any, job: str, args: argparse.Namespace, work: Callable[[], int]) -> int:
    """Run ``work`` holding ``job``'s cron lock; if another run holds it, say so, record it, exit 0."""
    from gladly_sync.sync.joblock import JobAlreadyRunning, job_lock

    try:
        with job_lock(ctx.settings.storage.path, job):
            return work()
    except JobAlreadyRunning as exc:
        say(str(exc))
        from gladly_sync.sync.runs import record_skipped

        record_skipped(ctx, job, exc.reason)
        if args.json:
            emit_json({"job": job, "status": "skipped", "reason": exc.reason, "holder_pid": exc.holder_pid})
        return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.cli.check import refuse_production_reply, run_checks
    from gladly_sync.sync.client import GladlyClient

    from gladly_sync.errors import AuthError

    refuse_production_reply(settings, args.send_test_reply, args.yes_production)
    # A check should answer promptly: a few retries, not the sync's patience.
    with GladlyClient.from_settings(settings.gladly, max_retries=CHECK_RETRIES) as client:
        results = run_checks(
            settings,
            client,
            customer_email=args.customer,
            conversation_id=args.conversation,
            send_test_reply=args.send_test_reply,
            yes_production=args.yes_production,
        )
    failed = [result for result in results if not result.ok]
    if args.json:
        emit_json({"ok": not failed, "checks": [result.to_dict() for result in results]})
    else:
        for result in results:
            emit(f"{'✓' if result.ok else '✗'} {result.name}: {result.evidence}")
    auth = next((r.error for r in failed if isinstance(r.error, AuthError)), None)
    if auth is not None:
        say(str(auth))
        return auth.exit_code
    if failed:
        say(f"{len(failed)} of {len(results)} checks failed: {', '.join(r.name for r in failed)}")
        return 1
    return 0


def _parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since {text!r} is not an ISO 8601 time; expected e.g. 2024-05-01T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.pull.run import sync_once

    since = _parse_since(args.since) if args.since else None
    ctx = _context(settings)

    def work() -> int:
        # Off a TTY the export pass logs progress events itself.
        bar = ProgressBar(sys.stderr) if args.full and sys.stderr.isatty() else None
        try:
            summary = sync_once(ctx, full=args.full, since=since, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        data = summary.to_dict()
        if args.json:
            emit_json(data)
        else:
            emit(render_sync(data))
        return 0

    return _locked(ctx, "sync", args, work)


def render_sync(data: dict[str, Any]) -> str:
    lines = [
        f"sync {data.get('mode', '')} finished in {data.get('duration_seconds', 0):.1f}s: "
        f"{data.get('requests', 0)} requests, {data.get('rate_limited', 0)} answered 429, "
        f"{data.get('skipped_inbox_filter', 0)} conversations skipped by the inbox filter"
    ]
    rows = data.get("rows") or {}
    if rows:
        width = max(len(table) for table in rows)
        lines += [f"  {table:<{width}}  {count:>8,}" for table, count in sorted(rows.items())]
    else:
        lines.append("  no rows changed")
    if data.get("lists_cut"):
        lines.append(
            f"  item lists cut at 1000 by Gladly: {data['lists_cut']} conversations; "
            f"{data.get('items_completed', 0)} newer items read one by one from their events"
        )
    lines += [f"warning: {warning}" for warning in data.get("warnings") or []]
    return "\n".join(lines)


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.outbox.drain import drain_once

    ctx = _context(settings)

    def work() -> int:
        summary = drain_once(ctx)
        data = asdict(summary)
        if args.json:
            emit_json(data)
        elif data.get("skipped_disabled"):
            emit("drain: outbox.enabled is false; nothing sent")
        else:
            emit(
                "drain: "
                + ", ".join(
                    f"{key} {data.get(key, 0)}"
                    for key in ("sent", "retried", "unknown", "failed", "reconciled")
                )
                + f" ({data.get('requests', 0)} requests, {data.get('rate_limited', 0)} answered 429)"
            )
        return 0

    return _locked(ctx, "drain", args, work)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.daemon import Daemon

    return Daemon(_context(settings)).serve()


def _body(text: str) -> str:
    """``--body -`` reads the body from stdin (multi-line text without shell quoting)."""
    return sys.stdin.read() if text == "-" else text


def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    ctx = _context(settings)
    # Read a body from stdin before the store is opened: never hold the file while waiting.
    text = getattr(args, "body", None) if args.kind != "escalate" else args.note
    text = None if text is None else _body(text)
    with ctx.db.transaction() as con:
        now = ctx.clock()
        if args.kind == "reply":
            result = outbox.enqueue_reply(
                con, args.conversation_id, text, html=args.html, dedupe_key=args.dedupe_key, now=now
            )
        elif args.kind == "note":
            result = outbox.enqueue_note(con, args.conversation_id, text, dedupe_key=args.dedupe_key, now=now)
        else:
            result = outbox.enqueue_escalation(
                con,
                args.conversation_id,
                note=text,
                inbox_id=args.inbox,
                default_inbox=settings.inboxes.escalation,
                dedupe_key=args.dedupe_key,
                now=now,
            )
    row = result.row
    ctx.log.info(
        "action_enqueued",
        action_id=row["id"],
        kind=row["kind"],
        conversation_id=row["conversation_id"],
        deduplicated=result.deduplicated,
    )
    if args.json:
        emit_json({"id": row["id"], "status": row["status"], "deduplicated": result.deduplicated, **row})
    elif result.deduplicated:
        emit(
            f"already queued: {row['kind']} {row['id']} ({row['status']}) has dedupe key {row['dedupe_key']}"
        )
    else:
        emit(f"queued {row['kind']} {row['id']} for conversation {row['conversation_id']} ({row['status']})")
    return 0


_LIST_COLUMNS = ("id", "kind", "status", "conversation_id", "attempts", "created_at", "last_error")


def cmd_outbox(args: argparse.Namespace, settings: Settings) -> int:
    ctx = _context(settings)
    if args.action == "list":
        with ctx.db.connect(read_only=True) as con:
            rows = outbox.list_actions(con, args.status)
        if args.json:
            emit_json(rows)
        elif not rows:
            emit("no outbox actions" + (f" with status {args.status}" if args.status else ""))
        else:
            emit("  ".join(_LIST_COLUMNS))
            for row in rows:
                error = (row.get("last_error") or "").replace("\n", " ")
                values = [str(row.get(c, "")) for c in _LIST_COLUMNS[:5]] + [_when(row.get("created_at"))]
                emit("  ".join([*values, error[:80]]).rstrip())
        return 0
    if args.action == "show":
        if (args.id is None) == (args.dedupe_key is None):
            raise UsageError("outbox show takes an action ID or --dedupe-key K (one of them)")
        with ctx.db.connect(read_only=True) as con:
            if args.id is not None:
                row = outbox.get_action(con, args.id)
            else:
                found = outbox.outbox_by_key(con, args.dedupe_key)
                if found is None:
                    raise NotFound(f"nothing was queued with dedupe key {args.dedupe_key!r}")
                row = found
        if args.json:
            emit_json(row)
        else:
            width = max(len(key) for key in row)
            for key, value in row.items():
                emit(f"{key:<{width}}  {_when(value)}")
        return 0
    change = outbox.retry_action if args.action == "retry" else outbox.cancel_action
    with ctx.db.transaction() as con:
        row = change(con, args.id, ctx.clock())
    ctx.log.info(f"action_{args.action}", action_id=row["id"], status=row["status"])
    if args.json:
        emit_json(row)
    else:
        due = " and due now" if args.action == "retry" and row["status"] in ("pending", "unknown") else ""
        emit(f"{row['kind']} {row['id']}: {row['status']}{due}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.storage.read import status_report

    ctx = _context(settings)
    now = ctx.clock()
    with ctx.db.connect(read_only=True) as con:
        report = status_report(con, now)
        unknown = outbox.list_actions(con, "unknown")
    problems, warnings = assess_status(report, unknown, settings, now)
    if args.json:
        emit_json({**report, "problems": problems, "warnings": warnings, "ok": not problems})
    else:
        emit(render_status(report))
        for warning in warnings:
            emit(f"warning: {warning}")
        for problem in problems:
            emit(f"problem: {problem}")
    if args.check and problems:
        say(f"status check failed: {'; '.join(problems)}")
        return 1
    return 0


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return _as_datetime(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def assess_status(
    report: dict[str, Any], unknown_rows: Sequence[dict[str, Any]], settings: Settings, now: datetime
) -> tuple[list[str], list[str]]:
    """``status --check``: problems (exit 1) and warnings, from ``storage.read.status_report``."""
    problems: list[str] = []
    warnings: list[str] = []
    sync_every = settings.schedule.sync_every

    last_sync = (report.get("last_runs") or {}).get("sync")
    if last_sync and last_sync.get("status") == "failed":
        problems.append(
            f"the last sync (run {last_sync.get('run_id', '?')}, started {last_sync.get('started_at')}) "
            f"failed: {last_sync.get('error') or 'no error recorded'}"
        )

    age_seconds = ((report.get("cursors") or {}).get("events") or {}).get("age_seconds")
    if age_seconds is None:
        problems.append("no events cursor yet: run `gladly-sync sync` (or start the daemon)")
    else:
        age = timedelta(seconds=age_seconds)
        if age > STALE_SYNCS * sync_every:
            problems.append(
                f"the events cursor is {_age(age_seconds)} old, more than {STALE_SYNCS} x "
                f"schedule.sync_every ({_age(sync_every.total_seconds())}): syncs are not running or failing"
            )
        if age >= EVENTS_WINDOW:
            warnings.append(
                "the events cursor is older than Gladly's 24 h events window; the next sync restarts "
                "23 h back and repairs the gap from export jobs"
            )
        elif age >= EVENTS_WARN_AGE:
            warnings.append(
                f"the events cursor is {_age(age_seconds)} old and nears Gladly's 24 h events window; "
                "run `gladly-sync sync` soon"
            )

    failed = (report.get("outbox") or {}).get("failed")
    if failed:
        problems.append(f"{failed} outbox actions failed: see `gladly-sync outbox list --status failed`")
    stuck_after = max(STALE_SYNCS * settings.schedule.drain_every, STUCK_UNKNOWN)
    stuck = [
        row
        for row in unknown_rows
        if (attempted := _as_datetime(row.get("last_attempt_at") or row.get("created_at"))) is not None
        and now - attempted > stuck_after
    ]
    if stuck:
        problems.append(
            f"{len(stuck)} outbox actions stuck in unknown for more than "
            f"{_age(stuck_after.total_seconds())}: see `gladly-sync outbox list --status unknown`"
        )
    for gap in report.get("gaps") or []:
        warnings.append(f"known gap {gap.get('start')} .. {gap.get('end')} not covered by an export job yet")
    return problems, warnings


def render_status(report: dict[str, Any], indent: str = "") -> str:
    """The status report as indented ``key: value`` lines."""
    lines: list[str] = []
    for key, value in report.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.append(render_status(value, indent + "  "))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:")
            for entry in value:
                lines.append(f"{indent}  - " + ", ".join(f"{k}: {_when(v)}" for k, v in entry.items()))
        elif isinstance(value, list):
            lines.append(f"{indent}{key}: {', '.join(_when(v) for v in value) or '-'}")
        elif key == "age_seconds" and isinstance(value, int | float):
            lines.append(f"{indent}age: {_age(value)}")
        else:
            lines.append(f"{indent}{key}: {_when(value)}")
    return "\n".join(lines)


def cmd_context(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.storage.read import conversation_context

    ctx = _context(settings)
    with ctx.db.connect(read_only=True) as con:
        data = conversation_context(con, args.conversation_id)
    emit_json(data)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.cli.export_files import run_export

    return run_export(args, settings, emit=emit, emit_json=emit_json)


def cmd_demo(args: argparse.Namespace, settings: Settings | None) -> int:
    try:
        from gladly_sync.sync.cli.demo import run_demo
    except ModuleNotFoundError as exc:
        if exc.name not in ("gladly_sync.sync.cli.demo", "gladly_sync.simulator"):
            raise
        say("the demo is not available: this build has no bundled simulator")
        return 1
    return run_demo(main)


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors scrubbed like every other line we print."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(2, scrub_text(f"{self.prog}: error: {message}\n"))


def build_parser() -> argparse.ArgumentParser:
    # --config and --debug work before the command and after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    parser = _Parser(
        prog=PROG,
        description="Keep a local DuckDB copy of a Gladly org; send queued replies, notes and escalations.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="config file (default: $GLADLY_SYNC_CONFIG, else ./config.yaml)",
    )
    parser.add_argument("--debug", action="store_true", default=False, help="debug logs and tracebacks")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def command(
        name: str, handler: Callable[..., int], help: str, *, json: bool = True
    ) -> argparse.ArgumentParser:
        parents = [common, as_json] if json else [common]
        sub = commands.add_parser(name, parents=parents, help=help, description=help)
        sub.set_defaults(handler=handler, json=False)
        return sub

    check = command("check", cmd_check, "validate the connection, the API user and the configured inboxes")
    check.add_argument("--customer", metavar="EMAIL", help="also look up a customer by email")
    check.add_argument("--conversation", metavar="ID", help="also read a conversation and its items")
    check.add_argument(
        "--send-test-reply",
        metavar="CONV_ID",
        help="send a test reply to the conversation's newest customer message (sandbox only)",
    )
    check.add_argument(
        "--yes-production", action="store_true", help="allow --send-test-reply against production"
    )

    sync = command("sync", cmd_sync, "one incremental pull, then exit (cron mode)")
    window = sync.add_mutually_exclusive_group()
    window.add_argument(
        "--full",
        action="store_true",
        help="re-read every export job Gladly holds (14 days); a reconcile pass",
    )
    window.add_argument("--since", metavar="ISO", help="re-poll events from ISO (within 23 h)")

    command("drain", cmd_drain, "one outbox drain pass, then exit")
    command("run", cmd_run, "the daemon: sync, drain and reconcile on their intervals", json=False)

    enqueue = command("enqueue", cmd_enqueue, "queue a reply, an internal note or an escalation", json=False)
    kinds = enqueue.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=_Parser)
    reply = kinds.add_parser(
        "reply", parents=[common, as_json], help="reply to the newest replyable customer message"
    )
    reply.add_argument("conversation_id", metavar="CONV_ID")
    reply.add_argument("--body", metavar="TEXT", required=True, help="the reply ('-' reads stdin)")
    reply.add_argument("--html", action="store_true", help="the body is HTML (email replies)")
    note = kinds.add_parser("note", parents=[common, as_json], help="add an internal note")
    note.add_argument("conversation_id", metavar="CONV_ID")
    note.add_argument("--body", metavar="TEXT", required=True, help="the note ('-' reads stdin)")
    escalate = kinds.add_parser(
        "escalate", parents=[common, as_json], help="move the conversation to the escalation inbox"
    )
    escalate.add_argument("conversation_id", metavar="CONV_ID")
    escalate.add_argument("--note", metavar="TEXT", help="an internal note sent before the move")
    escalate.add_argument("--inbox", metavar="ID", help="the target inbox (default: inboxes.escalation)")
    for sub in (reply, note, escalate):
        sub.add_argument("--dedupe-key", metavar="K", help="a second enqueue with K returns the first row")

    box = command("outbox", cmd_outbox, "inspect and manage queued actions", json=False)
    actions = box.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    listing = actions.add_parser("list", parents=[common, as_json], help="queued actions in order")
    listing.add_argument("--status", choices=outbox.STATUSES)
    show = actions.add_parser("show", parents=[common, as_json], help="one action, by id or dedupe key")
    show.add_argument("id", metavar="ID", nargs="?")
    show.add_argument("--dedupe-key", metavar="K")
    retry = actions.add_parser(
        "retry", parents=[common, as_json], help="make an action due now (reconciles an unknown one first)"
    )
    retry.add_argument("id", metavar="ID")
    cancel = actions.add_parser("cancel", parents=[common, as_json], help="cancel an action not being sent")
    cancel.add_argument("id", metavar="ID")

    status = command("status", cmd_status, "cursors, last runs, row and outbox counts")
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the last sync failed, syncs are stale, or outbox actions failed or are stuck",
    )

    context = command(
        "context", cmd_context, "a conversation with its customer, items and open actions (JSON)"
    )
    context.add_argument("conversation_id", metavar="CONV_ID")

    export = command("export", cmd_export, "write the analyst tables and views as Parquet or CSV files")
    add_export_arguments(export)

    demo = command(
        "demo", cmd_demo, "run the bundled Gladly simulator end to end (no credentials)", json=False
    )
    demo.set_defaults(needs_config=False)
    return parser


# --------------------------------------------------------------------------- main


def _print_traceback(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    print(scrub_text(text), file=sys.stderr, end="")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)

    debug = bool(args.debug)
    try:
        configure_logging("debug" if debug else "info", "auto")  # stderr, also before the config is read
        if not getattr(args, "needs_config", True):
            return args.handler(args, None)
        settings = load_settings(args.config)
        register_credentials(settings.gladly.email, settings.gladly.api_token)
        configure_logging("debug" if debug else settings.logging.level, settings.logging.format)
        return args.handler(args, settings)
    except ConfigError as exc:
        if debug:
            _print_traceback(exc)
        for problem in exc.problems:
            say(f"config error: {problem}")
        return exc.exit_code
    except GladlySyncError as exc:
        if debug:
            _print_traceback(exc)
        say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as exc:
        if debug:
            _print_traceback(exc)
        say(f"unexpected error: {type(exc).__name__}: {exc}")
        if not debug:
            say("run again with --debug for the traceback")
        return 1
