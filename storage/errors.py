"""The root of gladly-sync's error tree and the storage branch of it.

The whole tree is drawn in ``sync/errors.py``; this module holds the part that ``storage``
raises, because ``storage`` never imports ``sync``. Every error carries the process exit code
the CLI uses for it, and a message written for the operator (what is wrong, what to do).
"""

from __future__ import annotations


class GladlySyncError(Exception):
    """Base of every error gladly-sync raises on purpose."""

    exit_code = 1


class UsageError(GladlySyncError):
    """The command line or a Python call asked for something invalid (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration is invalid; ``problems`` has one line per problem (exit 2)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StorageError(GladlySyncError):
    """The local DuckDB store could not do what was asked."""


class EnqueueRejected(StorageError, UsageError):
    """An outbox action failed validation at enqueue time; nothing was queued (exit 2)."""

    exit_code = 2


class SchemaTooNew(StorageError, UsageError):
    """The store was written by a newer gladly-sync (exit 2)."""

    exit_code = 2


class NotFound(StorageError):
    """A local record (conversation, outbox row) does not exist (exit 1)."""


class DatabaseLocked(StorageError):
    """Another process held the DuckDB file longer than ``lock_wait_seconds`` (exit 4)."""

    exit_code = 4

    def __init__(self, path: str, holder_pid: int | None, waited_seconds: float, detail: str = ""):
        self.path = path
        self.holder_pid = holder_pid
        self.waited_seconds = waited_seconds
        holder = f"process {holder_pid}" if holder_pid else "another process"
        super().__init__(
            f"database {path} is locked by {holder} (waited {waited_seconds:.0f}s); "
            "stop that process or raise storage.lock_wait_seconds"
            + (f" [{detail}]" if detail else "")
        )
