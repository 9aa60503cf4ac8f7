"""Logging: structlog configured once, as a visible list of processors, writing to stderr only.

    merge_contextvars      run_id / job bound by ``sync.runs.run_job``
    add_log_level          "level": "info"
    TimeStamper            "timestamp": ISO 8601, UTC
    format_exc_info        an exception becomes text, so the next step can scrub it
    scrub_secrets          the API token (and the Basic ``Authorization`` value built from it) → "***"
    renderer               ConsoleRenderer on a TTY, JSONRenderer otherwise (``logging.format``)

Standard-library loggers (APScheduler, httpx) and Python warnings go through the same chain at
WARNING and above, so a JSON log stays JSON; httpx's INFO lines would print request URLs, and those
can carry a customer's email. The CLI's own messages and errors follow the same format
(``renders_json``): one log format per stream. ``NO_COLOR`` turns the console's colours off.

stdout belongs to the commands' machine output, so no log line is ever written there. Events are
named, not phrased (``log.info("job_finished", job="sync", duration_seconds=1.2)``) and at info level
carry ids and counts, never message bodies, emails or phone numbers.
"""

from __future__ import annotations

import base64
import contextvars
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

import structlog

__all__ = [
    "ContextPool",
    "configure_logging",
    "no_color",
    "register_credentials",
    "renders_json",
    "register_secret",
    "scrub_secrets",
    "scrub_text",
]

REDACTED = "***"
_MIN_SECRET = 4  # shorter values would blank out ordinary words
_QUIET_LIBRARIES = ("apscheduler", "httpx", "httpcore")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
# An Authorization header value wherever it shows up in text: "Authorization: Basic abc=".
_AUTHORIZATION = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)((?:basic|bearer)\s+)?[^\s'\",}]+")


def register_secret(value: str | None) -> None:
    """Never print ``value``: every later log event, error line and output has it replaced."""
    if value and len(value.strip()) >= _MIN_SECRET:
        with _secrets_lock:
            _secrets.add(value.strip())


def register_credentials(email: str, token: str) -> None:
    """Register the token and the Basic ``Authorization`` value httpx builds from email and token."""
    register_secret(token)
    if token:
        register_secret(base64.b64encode(f"{email}:{token}".encode()).decode("ascii"))


def scrub_text(text: str) -> str:
    """``text`` with every registered secret and any Authorization header value replaced."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(lambda m: m.group(1) + (m.group(2) or "") + REDACTED, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if str(key).lower() == "authorization" else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = str(value)  # an exception, a Path, a datetime...: compare its text
    scrubbed = scrub_text(text)
    return scrubbed if scrubbed != text else value


def scrub_secrets(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: secrets out of every value (nested too), ``authorization`` keys blanked."""
    return _scrub(event_dict)


class ContextPool(ThreadPoolExecutor):
    """A thread pool whose tasks log with the submitter's bound context (``run_id``, ``job``): a new
    thread starts with empty contextvars, so each task runs in a copy of the submitter's."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def no_color() -> bool:
    """``NO_COLOR`` set to anything but the empty string turns colours off (https://no-color.org)."""
    return bool(os.environ.get("NO_COLOR"))


_json_rendering = False


def renders_json() -> bool:
    """Whether the configured log lines are JSON (then every stderr line should be)."""
    return _json_rendering


def _renderer(fmt: str, stream: TextIO) -> Any:
    global _json_rendering
    console = fmt == "console" or (fmt == "auto" and _isatty(stream))
    _json_rendering = not console
    if console:
        return structlog.dev.ConsoleRenderer(colors=_isatty(stream) and not no_color())
    return structlog.processors.JSONRenderer(default=str, ensure_ascii=False)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(level: str = "info", fmt: str = "auto", *, stream: TextIO | None = None) -> None:
    """Configure structlog (and route standard-library logging) to ``stream``, stderr by default."""
    stream = sys.stderr if stream is None else stream
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_secrets,
    ]
    renderer = _renderer(fmt, stream)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_gladly_sync", False)]:
        root.removeHandler(old)
    handler._gladly_sync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)  # warnings.warn(...) → the "py.warnings" logger → this chain
