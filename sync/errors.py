"""gladly-sync's error tree. Branches follow what the caller does next.

    GladlySyncError                      (storage/errors.py)      exit 1
    ├── UsageError                       bad CLI/Python input     exit 2
    │   ├── ConfigError                  config.yaml / env        exit 2
    │   ├── EnqueueRejected              outbox validation        exit 2
    │   └── SchemaTooNew                 store from a newer build exit 2
    ├── StorageError
    │   ├── NotFound                     no such local record     exit 1
    │   └── DatabaseLocked               lock held too long       exit 4
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

httpx exceptions are translated to these at exactly one boundary: ``sync/client.py``.
"""

from __future__ import annotations

from storage.errors import (
    ConfigError,
    DatabaseLocked,
    EnqueueRejected,
    GladlySyncError,
    NotFound,
    SchemaTooNew,
    StorageError,
    UsageError,
)

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
    "MalformedResponse",
    "NetworkError",
    "NeverSent",
    "NotFound",
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
