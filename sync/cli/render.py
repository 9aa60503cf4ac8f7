"""What the CLI prints, and how: results on stdout, messages and errors on stderr.

    emit / emit_json      a command's result (text lines, or its one JSON document) on stdout
    say                   a message for the operator that is not a result, on stderr
    emit_error            an error: ``gladly-sync: error: ...`` on stderr, and with ``--json`` also
                          ``{"error": {"code": ..., "message": ...}}`` on stdout
    render_sync, render_drain, render_status     a summary as text lines

Every line passes through ``scrub_text`` so a registered secret is never printed. ``--quiet``
(``set_quiet``) drops the results, so a cron run that succeeds prints nothing.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from gladly_sync.sync.logs import renders_json, scrub_text

__all__ = [
    "PROG",
    "age",
    "emit",
    "emit_error",
    "emit_json_error",
    "emit_json",
    "error_code",
    "render_drain",
    "render_status",
    "render_sync",
    "say",
    "set_quiet",
    "when",
]

PROG = "gladly-sync"
_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: results are not printed (errors and warnings still are, on stderr)."""
    global _quiet
    _quiet = quiet


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


def _dumps(data: Any) -> str:
    return scrub_text(json.dumps(data, indent=2, default=_jsonable, ensure_ascii=False))


def emit_json(data: Any) -> None:
    """The command's one JSON document, on stdout, secrets scrubbed."""
    if not _quiet:
        print(_dumps(data), file=sys.stdout, flush=True)


def emit(text: str) -> None:
    if not _quiet:
        print(scrub_text(text), file=sys.stdout, flush=True)


def say(text: str, *, level: str = "warning", event: str = "cli_message", **fields: Any) -> None:
    """A message for the operator that is not a result (stderr): a line of text, or, when the logs
    are JSON, a log event whose ``message`` is that line (so a log file holds one format)."""
    line = scrub_text(f"{PROG}: {text}")
    if renders_json():
        getattr(structlog.get_logger(), level)(event, message=line, **fields)
    else:
        print(line, file=sys.stderr, flush=True)


def error_code(exc: BaseException) -> str:
    """``NotFound`` → ``not_found``, ``DatabaseLocked`` → ``database_locked``: the class, in snake case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def emit_json_error(message: str, *, code: str) -> None:
    """``{"error": {"code": ..., "message": ...}}`` on stdout (``--json``), even with ``--quiet``."""
    print(_dumps({"error": {"code": code, "message": message}}), file=sys.stdout, flush=True)


def emit_error(message: str, *, code: str, as_json: bool, lines: list[str] | None = None) -> None:
    """An error on stderr (``lines``, else ``error: message``; as ``command_failed`` events when the
    logs are JSON); with ``--json`` also the error object on stdout."""
    for line in [f"error: {message}"] if lines is None else lines:
        say(line, level="error", event="command_failed", code=code)
    if as_json:
        emit_json_error(message, code=code)


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return "-" if value is None else str(value)


def age(seconds: float | None) -> str:
    """``95`` → ``1m35s``, ``7500`` → ``2h05m``, ``90000`` → ``1d01h``."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    for big, small, size, unit in (("d", "h", 86400, 3600), ("h", "m", 3600, 60), ("m", "s", 60, 1)):
        if seconds >= size:
            return f"{seconds // size}{big}{(seconds % size) // unit:02d}{small}"
    return f"{seconds}s"


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


def render_drain(data: dict[str, Any]) -> str:
    if data.get("skipped_disabled"):
        return "drain: outbox.enabled is false; nothing sent"
    counts = ", ".join(
        f"{key} {data.get(key, 0)}" for key in ("sent", "retried", "unknown", "failed", "reconciled")
    )
    return f"drain: {counts} ({data.get('requests', 0)} requests, {data.get('rate_limited', 0)} answered 429)"


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
                lines.append(f"{indent}  - " + ", ".join(f"{k}: {when(v)}" for k, v in entry.items()))
        elif isinstance(value, list):
            lines.append(f"{indent}{key}: {', '.join(when(v) for v in value) or '-'}")
        elif key.endswith("seconds") and key != "duration_seconds" and isinstance(value, int | float):
            lines.append(f"{indent}{key.removesuffix('_seconds')}: {age(value)}")
        else:
            lines.append(f"{indent}{key}: {when(value)}")
    return "\n".join(lines)
