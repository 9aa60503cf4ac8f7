"""``gladly-sync``: the command line. It parses arguments, loads the config, and wires the plain
functions (``sync_once``, ``drain_once``, the outbox and read API) to stdout, stderr and exit codes.

stdout carries results only (``--json`` makes them machine-readable, ``--quiet`` drops them); logs,
progress and errors go to stderr. With ``--json`` an error is also ``{"error": {"code": ...,
"message": ...}}`` on stdout. Exit codes:

    0    success, also a cron run skipped because the same job is running ("already running (pid N)")
    1    the run failed (Gladly unreachable, a failed check, ...)
    2    usage, config or enqueue validation error, an unknown conversation or outbox action
    3    authentication or permission error (401/403)
    4    the database stayed locked by another process for longer than storage.lock_wait_seconds
    130  stopped by SIGINT, 143 stopped by SIGTERM (``sync``, ``drain``; the daemon exits 0)
    141  stdout was closed early (``context ID | head``): the command ends quietly

Rendering lives in ``render`` (text and JSON), ``progress`` (the bar) and ``health`` (status).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gladly_sync.storage import outbox
from gladly_sync.storage.private import PRIVATE_UMASK
from gladly_sync.sync.cli.export_files import add_arguments as add_export_arguments
from gladly_sync.sync.cli.render import (
    PROG,
    emit,
    emit_error,
    emit_json,
    emit_json_error,
    error_code,
    render_drain,
    render_status,
    render_sync,
    say,
    set_quiet,
)
from gladly_sync.sync.cli.render import when as _when
from gladly_sync.sync.logs import configure_logging, register_credentials, scrub_text

from gladly_sync import __version__
from gladly_sync.config import Settings, load_settings
from gladly_sync.errors import ConfigError, GladlySyncError, NotFound, UsageError

__all__ = ["build_parser", "main"]

CHECK_RETRIES = 2
STOP_GRACE = 8.0  # seconds: a stopped sync/drain/daemon exits by then whatever it was doing
STARTER_CONFIG = "config.yaml"  # package data of gladly_sync: the commented starter config


# --------------------------------------------------------------------------- commands


def _context(settings: Settings, *, stoppable: bool = False, forced_exit_code: int | None = None) -> Any:
    """The command's Context; ``stoppable`` ones exit within ``STOP_GRACE`` of SIGTERM/SIGINT."""
    from gladly_sync.sync.context import Context
    from gladly_sync.sync.shutdown import Shutdown

    shutdown = Shutdown(force_after=STOP_GRACE if stoppable else None, forced_exit_code=forced_exit_code)
    return Context.from_settings(settings, shutdown=shutdown)


def _configure_logs(args: argparse.Namespace, settings: Settings | None, stream: Any = None) -> None:
    level = "debug" if args.debug else (settings.logging.level if settings else "info")
    configure_logging(level, settings.logging.format if settings else "auto", stream=stream)


def _queue_context(settings: Settings) -> Any:
    """A context for the commands that only queue or read (enqueue, outbox, context): an older
    store's outbox is imported by them only if the store is free (the drain waits for it)."""
    from gladly_sync.storage.outbox.bridge import outbox_for_store
    from gladly_sync.sync.context import Context

    ctx = Context.from_settings(settings)
    ctx.outbox_db = outbox_for_store(ctx.db, settings.storage.outbox_path, wait_for_store=False)
    return ctx


def _locked(ctx: Any, job: str, args: argparse.Namespace, work: Callable[[], int]) -> int:
    """Run ``work`` holding ``job``'s cron lock; if another run holds it, say so, record it, exit 0."""
    from gladly_sync.sync.joblock import JobAlreadyRunning, store_job_lock

    try:
        with store_job_lock(ctx.db, job):
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
            for detail in result.details:
                emit(f"    {detail}")
    auth = next((r.error for r in failed if isinstance(r.error, AuthError)), None)
    if auth is not None:
        say(str(auth))
        return auth.exit_code
    if failed:
        say(f"{len(failed)} of {len(results)} checks failed: {', '.join(r.name for r in failed)}")
        return max(result.exit_code for result in failed)
    return 0


def _parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since {text!r} is not an ISO 8601 time; expected e.g. 2024-05-01T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def _terminal_progress(args: argparse.Namespace, settings: Settings) -> Iterator[Any]:
    """On a terminal: a progress bar on stderr's last line, the logs written above it. Off a
    terminal ``None``: the export pass logs ``export_progress`` events itself."""
    if args.quiet or not sys.stderr.isatty():
        yield None
        return
    from gladly_sync.sync.cli.progress import ProgressBar, StatusLine

    line = StatusLine(sys.stderr)
    _configure_logs(args, settings, stream=line)
    bar = ProgressBar(line)
    try:
        yield bar
    finally:
        bar.close()
        _configure_logs(args, settings)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.pull.run import sync_once

    since = _parse_since(args.since) if args.since else None
    ctx = _context(settings, stoppable=True)

    def work() -> int:
        with ctx.shutdown.on_signals(ctx.log), _terminal_progress(args, settings) as bar:
            summary = sync_once(ctx, full=args.full, since=since, progress=bar)
        data = summary.to_dict()
        if args.json:
            emit_json(data)
        else:
            emit(render_sync(data))
        if args.quiet:
            for warning in data.get("warnings") or []:
                say(f"warning: {warning}", event="config_warning")
        return 0

    return _locked(ctx, "sync", args, work)


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.outbox.drain import drain_once

    ctx = _context(settings, stoppable=True)

    def work() -> int:
        with ctx.shutdown.on_signals(ctx.log):
            summary = drain_once(ctx)
        data = asdict(summary)
        if args.json:
            emit_json(data)
        else:
            emit(render_drain(data))
        return 0

    return _locked(ctx, "drain", args, work)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.daemon import Daemon

    return Daemon(_context(settings, stoppable=True, forced_exit_code=0)).serve()


def _body(text: str) -> str:
    """``--body -`` reads the body from stdin (multi-line text without shell quoting)."""
    return sys.stdin.read() if text == "-" else text


def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.storage.outbox.intake import Outbox
    from gladly_sync.storage.outbox.validation import ConversationSource

    ctx = _queue_context(settings)
    # Read a body from stdin before anything is opened: never hold a database while waiting.
    text = getattr(args, "body", None) if args.kind != "escalate" else args.note
    text = None if text is None else _body(text)
    queue = Outbox(
        ctx.outbox,
        ConversationSource(ctx.db, settings.storage.snapshot_path),
        escalation_inbox=settings.inboxes.escalation,
        clock=ctx.clock,
    )
    if args.kind == "reply":
        result = queue.enqueue_reply(args.conversation_id, text, html=args.html, dedupe_key=args.dedupe_key)
    elif args.kind == "note":
        result = queue.enqueue_note(args.conversation_id, text, dedupe_key=args.dedupe_key)
    else:
        result = queue.enqueue_escalation(
            args.conversation_id, note=text, inbox_id=args.inbox, dedupe_key=args.dedupe_key
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
    ctx = _queue_context(settings)
    if args.action == "list":
        with ctx.outbox.connect() as con:
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
        with ctx.outbox.connect() as con:
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
    with ctx.outbox.transaction() as con:
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
    from gladly_sync.sync.cli.health import assess_status, live_runs

    ctx = _context(settings)
    now = ctx.clock()
    with ctx.outbox.connect() as con:
        counts = outbox.outbox_counts(con)
        unknown = outbox.list_actions(con, "unknown")
    with ctx.db.connect(read_only=True) as con:
        report = status_report(con, now, counts)
    report = live_runs(report, ctx.db)
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


def cmd_context(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.storage.read import conversation_context, jsonable

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: expected a number of items of at least 1")
    ctx = _queue_context(settings)
    with ctx.db.connect(read_only=True) as con:
        data = conversation_context(con, args.conversation_id, limit=args.limit)
    with ctx.outbox.connect() as con:
        data["outbox"] = jsonable(outbox.open_actions(con, args.conversation_id))
    emit_json(data)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from gladly_sync.sync.cli.export_files import run_export

    return run_export(args, settings, emit=emit, emit_json=emit_json)


def starter_config() -> str:
    """The commented starter config shipped in the package (the repository's ``config.yaml``)."""
    from importlib.resources import files

    return files("gladly_sync").joinpath(STARTER_CONFIG).read_text(encoding="utf-8")


def cmd_init(args: argparse.Namespace, settings: Settings | None) -> int:
    path = Path(args.path)
    if path.is_dir():
        path = path / "config.yaml"
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists; pass --force to replace it with the starter config")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(starter_config())
    os.chmod(path, 0o600)
    if args.json:
        emit_json({"path": str(path.resolve())})
    else:
        emit(
            f"wrote the starter config to {path}: set gladly.organization and gladly.email, put the API "
            f"token in $GLADLY_API_TOKEN, then run `{PROG} --config {path} check` to see your inbox ids"
        )
    return 0


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


class ArgumentError(UsageError):
    """argparse found the command line wrong (exit 2, after the usage line)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser):
        super().__init__(message)
        self.lines = f"{parser.format_usage()}{parser.prog}: error: {message}\n"


class _Parser(argparse.ArgumentParser):
    """argparse, raising ``ArgumentError`` so ``main`` reports it like every other error."""

    def error(self, message: str) -> Any:
        raise ArgumentError(message, self)


def _shared_options() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """``--config``/``--debug``/``--quiet`` (before or after the command), and ``--json``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print no result, only errors and warnings (for cron: mail only when something is wrong)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return common, as_json


def _top_parser() -> _Parser:
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
    parser.add_argument("--quiet", "-q", action="store_true", default=False, help=argparse.SUPPRESS)
    return parser


def _add_pull_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
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


def _add_outbox_commands(
    command: Callable[..., argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    as_json: argparse.ArgumentParser,
) -> None:
    enqueue = command("enqueue", cmd_enqueue, "queue a reply, an internal note or an escalation", json=False)
    enqueue.set_defaults(needs_token=False)
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
    box.set_defaults(needs_token=False)
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


def _add_read_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    status = command("status", cmd_status, "cursors, last runs, row and outbox counts")
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the last run failed or was interrupted, syncs are stale, "
        "or outbox actions failed or are stuck",
    )
    context = command(
        "context", cmd_context, "a conversation with its customer, items and open actions (JSON)"
    )
    context.add_argument("conversation_id", metavar="CONV_ID")
    context.set_defaults(needs_token=False)
    export = command("export", cmd_export, "write the analyst tables and views as Parquet or CSV files")
    add_export_arguments(export)
    context.add_argument("--limit", metavar="N", type=int, help="only the newest N items")


def _add_setup_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    init = command("init", cmd_init, "write the commented starter config to PATH (default ./config.yaml)")
    init.add_argument("path", metavar="PATH", nargs="?", default="config.yaml")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(needs_config=False)
    demo = command(
        "demo", cmd_demo, "run the bundled Gladly simulator end to end (no credentials)", json=False
    )
    demo.set_defaults(needs_config=False)


def build_parser() -> argparse.ArgumentParser:
    """The top-level options, then each group of commands."""
    common, as_json = _shared_options()
    parser = _top_parser()
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def command(
        name: str, handler: Callable[..., int], help: str, *, json: bool = True
    ) -> argparse.ArgumentParser:
        parents = [common, as_json] if json else [common]
        sub = commands.add_parser(name, parents=parents, help=help, description=help)
        sub.set_defaults(handler=handler, json=False)
        return sub

    _add_setup_commands(command)
    _add_pull_commands(command)
    _add_outbox_commands(command, common, as_json)
    _add_read_commands(command)
    return parser


# --------------------------------------------------------------------------- main


def _print_traceback(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    print(scrub_text(text), file=sys.stderr, end="")


def _silence_stdout() -> None:
    """stdout's reader went away: point stdout at /dev/null so the exit's flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _fail(exc: BaseException, *, as_json: bool, debug: bool) -> int:
    """Report an error the way the command line reports every error; return its exit code."""
    if debug:
        _print_traceback(exc)
    if isinstance(exc, ArgumentError):
        sys.stderr.write(scrub_text(exc.lines))  # argparse's usage and error lines, as always
        if as_json:
            emit_json_error(str(exc), code="usage_error")
        return exc.exit_code
    if isinstance(exc, ConfigError):
        lines = [f"config error: {problem}" for problem in exc.problems]
        emit_error("; ".join(exc.problems), code=error_code(exc), as_json=as_json, lines=lines)
        return exc.exit_code
    if isinstance(exc, GladlySyncError):
        emit_error(str(exc), code=error_code(exc), as_json=as_json)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        emit_error("interrupted", code="interrupted", as_json=as_json)
        return 130
    message = f"{type(exc).__name__}: {exc}"
    hint = [] if debug else ["run again with --debug for the traceback"]
    emit_error(
        message, code="unexpected_error", as_json=as_json, lines=[f"unexpected error: {message}", *hint]
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json, debug = "--json" in argv, "--debug" in argv
    os.umask(PRIVATE_UMASK)  # every file and folder we (or DuckDB, SQLite) create is ours alone
    try:
        args = build_parser().parse_args(argv)
        as_json, debug = bool(args.json), bool(args.debug)
        set_quiet(bool(args.quiet))
        _configure_logs(args, None)  # stderr, also before the config is read
        if not getattr(args, "needs_config", True):
            return args.handler(args, None)
        settings = load_settings(args.config, require_token=getattr(args, "needs_token", True))
        register_credentials(settings.gladly.email, settings.gladly.api_token)
        _configure_logs(args, settings)
        for warning in settings.warnings:
            say(f"warning: {warning}", event="config_warning")
        return args.handler(args, settings)
    except SystemExit as exc:  # argparse's --help
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except (Exception, KeyboardInterrupt) as exc:
        try:
            return _fail(exc, as_json=as_json, debug=debug)
        except BrokenPipeError:
            _silence_stdout()
            return 141
    finally:
        set_quiet(False)
