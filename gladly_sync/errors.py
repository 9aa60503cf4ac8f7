"""gladly-sync's error tree. Branches follow what the caller does next.

    GladlySyncError                                               exit 1
    ├── UsageError                       bad CLI/Python input     exit 2
    │   ├── ConfigError                  config.yaml / env        exit 2
    │   ├── EnqueueRejected              outbox validation        exit 2
    │   └── SchemaTooNew                 store from a newer build exit 2
    ├── Interrupted                      stopped by SIGTERM/SIGINT exit 128+signal
    │                                    (the next run carries on where this one stopped)
    ├── StorageError
    │   ├── NotFound                     no such local record     exit 2
    │   │   │  (an unknown conversation or outbox action, for every command)
    │   │   └── NotSynced                no store / snapshot yet  exit 1
    │   └── DatabaseLocked               lock held too long       exit 4
    ├── JobAlreadyRunning                the job runs elsewhere   exit 0 (skipped)
    └── GladlyError                      talking to Gladly        exit 1
        ├── TransientError               retry later (a GET/PATCH is retried by the client)
        │   ├── RateLimited              429
        │   ├── ServerError              5xx
        │   ├── NetworkError             transport failure (NeverSent: provably not sent)
        │   │   └── NeverSent            connect error / connect or pool timeout
        │   └── DeadlineExceeded         the run's deadline passed
        ├── UnknownOutcome               a create POST may have been applied: reconcile first
        ├── Rejected                     4xx: Gladly refused; do not retry (status, code, detail)
        │   └── GladlyNotFound           404
        ├── AuthError                    exit 3
        │   ├── AuthenticationFailed     401
        │   └── PermissionDenied         403
        └── MalformedResponse            Gladly sent data we cannot parse: fail the run

httpx exceptions are translated to these at exactly one boundary: ``gladly_sync.sync.client``.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "AuthenticationFailed",
    "ConfigError",
    "DatabaseLocked",
    "DeadlineExceeded",
    "EnqueueRejected",
    "GladlyError",
    "GladlyNotFound",
    "GladlySyncError",
    "Interrupted",
    "JobAlreadyRunning",
    "MalformedResponse",
    "NetworkError",
    "NeverSent",
    "NotFound",
    "NotSynced",
    "PermissionDenied",
    "RateLimited",
    "Rejected",
    "SchemaTooNew",
    "ServerError",
    "StorageError",
    "TransientError",
    "UnknownOutcome",
    "UsageError",
]


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


class Interrupted(GladlySyncError):
    """A stop was requested (SIGTERM, SIGINT) and the run ended at a step boundary; what it wrote is
    kept and the next run carries on from there. Exit 128 + the signal (143 for SIGTERM)."""

    def __init__(self, message: str, *, exit_code: int = 143):
        super().__init__(message)
        self.exit_code = exit_code


class StorageError(GladlySyncError):
    """The local DuckDB store could not do what was asked."""


class EnqueueRejected(StorageError, UsageError):
    """An outbox action failed validation at enqueue time; nothing was queued (exit 2)."""

    exit_code = 2


class SchemaTooNew(StorageError, UsageError):
    """The store was written by a newer gladly-sync (exit 2)."""

    exit_code = 2


class NotFound(StorageError):
    """A local record (conversation, outbox row) does not exist (exit 2, like every unknown id)."""

    exit_code = 2


class NotSynced(NotFound):
    """The store or its snapshot is not there yet (or predates a migration): run ``sync`` first (exit 1)."""

    exit_code = 1


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


class JobAlreadyRunning(GladlySyncError):
    """The same job holds its lock in another run (a file lock beside a DuckDB store, an advisory
    lock on PostgreSQL); this run is skipped (a normal outcome: exit 0)."""

    exit_code = 0

    def __init__(self, job: str, holder_pid: int | None):
        self.job = job
        self.holder_pid = holder_pid
        holder = f"pid {holder_pid}" if holder_pid else "pid unknown"
        self.reason = f"already running ({holder}); skipped"
        super().__init__(f"{job} {self.reason}")


class GladlyError(GladlySyncError):
    """Anything that went wrong talking to Gladly. ``method``/``url`` name the request."""

    def __init__(self, message: str, *, method: str = "", url: str = "", status: int | None = None):
        self.method = method
        self.url = url
        self.status = status
        super().__init__(message)


class TransientError(GladlyError):
    """Worth retrying later; nothing was refused."""


class RateLimited(TransientError):
    """Gladly answered 429."""


class ServerError(TransientError):
    """Gladly answered 5xx."""


class NetworkError(TransientError):
    """The request failed in transport (DNS, connect, read, write, protocol)."""


class NeverSent(NetworkError):
    """The request provably never left (connect error, connect or pool timeout)."""


class DeadlineExceeded(TransientError):
    """The run's deadline passed before the work finished."""


class UnknownOutcome(GladlyError):
    """A creating POST failed after it may have reached Gladly; reconcile before resending."""


class Rejected(GladlyError):
    """Gladly refused the request (4xx). Carries Gladly's first error ``code``, ``detail``, ``attr``."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        attr: str | None = None,
        errors: list[dict] | None = None,
    ):
        self.code = code
        self.detail = detail
        self.attr = attr
        self.errors = errors or []
        super().__init__(message, method=method, url=url, status=status)


class GladlyNotFound(Rejected):
    """Gladly answered 404."""


class AuthError(GladlyError):
    """401/403: the drain and sync stop; exit 3."""

    exit_code = 3


class AuthenticationFailed(AuthError):
    """401: the email/token pair was not accepted."""


class PermissionDenied(AuthError):
    """403: the user lacks the API User permission (or a role the call needs)."""


class MalformedResponse(GladlyError):
    """Gladly's response could not be parsed or lacked required fields."""
