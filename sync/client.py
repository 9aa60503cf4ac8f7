"""The Gladly REST client: one method per Gladly operation, and the one place httpx errors become ours.

The client is thin. It knows paths, request bodies and response shapes; it holds no SQL and makes
no business decisions. Every request goes through ``GladlyClient._send``, which owns the retry
policy:

- GET and PATCH are idempotent: retried on 429, 5xx and any transport error, with full-jitter
  backoff, up to ``max_retries`` times.
- A POST that creates something (reply, note) is retried ONLY on 429 or on a failure that proves the
  request never left (connect error, connect or pool timeout). Any other failure may have created the
  item, so it raises ``UnknownOutcome`` at once and is never resent here; the outbox reconciles.

Every attempt waits for a slot from the ``Pacer`` and reports ``Ratelimit-Remaining-Second`` back to it.
"""

from __future__ import annotations

import json as jsonlib
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn, Protocol, TypeVar
from urllib.parse import quote

import httpx
import structlog
from gladly_sync.sync.pacer import Backoff, Pacer
from gladly_sync.sync.shutdown import Shutdown

from gladly_sync.config import GladlySettings
from gladly_sync.errors import (
    AuthenticationFailed,
    DeadlineExceeded,
    GladlyError,
    GladlyNotFound,
    MalformedResponse,
    NetworkError,
    NeverSent,
    PermissionDenied,
    RateLimited,
    Rejected,
    ServerError,
    UnknownOutcome,
)

__all__ = ["DownloadSink", "EventsPage", "GladlyClient", "ItemsPage", "Moved", "user_agent"]

log = structlog.get_logger(__name__)

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RESENDABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
_CHUNK = 1 << 20

T = TypeVar("T")


class DownloadSink(Protocol):
    """Where a download's bytes go (see ``GladlyClient.download_export_file``)."""

    def restart(self, content_type: str) -> None:
        """An attempt begins: forget every byte written before; ``content_type`` is what Gladly says."""

    def write(self, chunk: bytes) -> None:
        """The next bytes of the body."""


def user_agent() -> str:
    try:
        return f"gladly-sync/{version('gladly-sync')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "gladly-sync/0+unknown"


@dataclass(frozen=True)
class Moved:
    """A customer id answered 301: the profile was merged into ``new_id``."""

    old_id: str
    new_id: str


@dataclass(frozen=True)
class EventsPage:
    """One ``GET /events``: the events, and Gladly's clock when it answered (``Date``; None if absent)."""

    events: list[dict[str, Any]]
    served_at: datetime | None


@dataclass(frozen=True)
class ItemsPage:
    """A conversation's items; ``limited`` when Gladly cut the list off (``Gladly-Limited-Data``)."""

    items: list[dict[str, Any]]
    limited: bool


def _segment(value: str) -> str:
    """One path segment, escaped so an id can never change the path."""
    return quote(str(value), safe="")


def _iso(moment: datetime) -> str:
    """UTC, millisecond precision, ``Z``: ``2024-05-01T12:00:00.000Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GladlyClient:
    """Talks to one Gladly organization. Thread-safe; use as a context manager or ``close()`` it."""

    def __init__(
        self,
        settings: GladlySettings,
        *,
        http: httpx.Client | None = None,
        pacer: Pacer | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_retries: int = 6,
        deadline: float | None = None,
        shutdown: Shutdown | None = None,
    ):
        self.settings = settings
        self._owns_http = http is None
        self._http = http if http is not None else self.build_http(settings)
        self._pacer = (
            pacer if pacer is not None else Pacer(settings.requests_per_second, clock=clock, sleep=sleep)
        )
        self._backoff = backoff if backoff is not None else Backoff()
        self._sleep = sleep
        self._clock = clock
        self.max_retries = max_retries
        self._deadline = deadline
        self._shutdown = shutdown
        self._lock = threading.Lock()
        self._requests = 0
        self._rate_limited = 0

    @classmethod
    def from_settings(cls, settings: GladlySettings, **options: Any) -> GladlyClient:
        """A client that builds and owns its ``httpx.Client``; ``options`` go to the constructor."""
        return cls(settings, **options)

    @staticmethod
    def build_http(settings: GladlySettings) -> httpx.Client:
        """The ``httpx.Client`` for ``settings``: base URL, Basic auth, per-operation timeout."""
        return httpx.Client(
            base_url=settings.api_url,
            auth=httpx.BasicAuth(settings.email, settings.api_token),
            # Per network operation (connect, each read, each write, pool), not per request,
            # so a large export download is fine as long as bytes keep arriving.
            timeout=httpx.Timeout(settings.timeout_seconds),
            follow_redirects=False,  # a 301 carries a merged customer's new id; read it ourselves
            headers={"User-Agent": user_agent()},
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> GladlyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ counters and deadline

    @property
    def requests(self) -> int:
        """Requests sent, including those answered 429 or 5xx (not those that never left)."""
        with self._lock:
            return self._requests

    @property
    def rate_limited(self) -> int:
        """Requests answered 429."""
        with self._lock:
            return self._rate_limited

    def set_deadline(self, deadline: float | None) -> None:
        """No request is sent after ``deadline`` (a ``clock()`` time); ``None`` lifts it."""
        self._deadline = deadline

    # ------------------------------------------------------------------ organization and reference lists

    def get_organization(self) -> dict[str, Any]:
        return self._get_object("/organization")

    def list_agents(self) -> list[dict[str, Any]]:
        return self._get_list("/agents")

    def list_inboxes(self) -> list[dict[str, Any]]:
        return self._get_list("/inboxes")

    def get_inbox(self, inbox_id: str) -> dict[str, Any]:
        return self._get_object(f"/inboxes/{_segment(inbox_id)}")

    def list_topics(self) -> list[dict[str, Any]]:
        return self._get_list("/topics")

    # ------------------------------------------------------------------ customers

    def find_customers(self, *, email: str) -> list[dict[str, Any]]:
        """Customer profiles with this email (Gladly returns at most 50)."""
        return self._get_list("/customer-profiles", params={"email": email})

    def get_customer(self, customer_id: str) -> dict[str, Any] | Moved:
        """The profile, or ``Moved`` when Gladly answers 301 because it was merged into another."""
        path = f"/customer-profiles/{_segment(customer_id)}"
        response = self._send("GET", path, accept=(301,))
        if response.status_code != 301:
            return self._json(response, dict)
        for error in _gladly_errors(response):
            new_id = (error.get("meta") or {}).get("new") if isinstance(error.get("meta"), dict) else None
            if isinstance(new_id, str) and new_id:
                return Moved(old_id=customer_id, new_id=new_id)
        raise MalformedResponse(
            f"GET {path}: Gladly answered 301 without the merged customer's new id (errors[].meta.new)",
            method="GET",
            url=_url(response),
            status=301,
        )

    def list_customer_conversations(self, customer_id: str) -> list[dict[str, Any]]:
        return self._get_list(f"/customers/{_segment(customer_id)}/conversations")

    # ------------------------------------------------------------------ conversations and items

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        return self._get_object(f"/conversations/{_segment(conversation_id)}")

    def list_conversation_items(self, conversation_id: str) -> ItemsPage:
        """The conversation's items (at most 1000, oldest first) and whether the list was cut off."""
        response = self._send("GET", f"/conversations/{_segment(conversation_id)}/items")
        limited = response.headers.get("Gladly-Limited-Data")
        return ItemsPage(
            items=self._json_list(response),
            limited=limited is not None and limited.strip().lower() != "false",
        )

    def get_item(self, item_id: str) -> dict[str, Any]:
        return self._get_object(f"/conversation-items/{_segment(item_id)}")

    def update_conversation(self, conversation_id: str, patch: dict[str, Any]) -> None:
        """PATCH the conversation (assignee, status); Gladly answers 204."""
        self._send("PATCH", f"/conversations/{_segment(conversation_id)}", json=patch)

    def add_note(self, conversation_id: str, body: str) -> str:
        """Add an internal note; return the new note's id. Never resent on an ambiguous failure."""
        # Gladly's OpenAPI schema declares a top-level `body`, but its example (and the API doc)
        # send {"content": {"body": ...}}; we follow the example.
        response = self._send(
            "POST",
            f"/conversations/{_segment(conversation_id)}/notes",
            json={"content": {"body": body}},
            creates=True,
        )
        return _created_id(response)

    def reply(self, item_id: str, content: dict[str, Any]) -> str:
        """Reply to a customer message; return the new item's id. Never resent on an ambiguous failure."""
        response = self._send(
            "POST",
            f"/conversation-items/{_segment(item_id)}/reply",
            json={"content": content},
            creates=True,
        )
        return _created_id(response)

    # ------------------------------------------------------------------ events and exports

    def list_events(
        self, start_at: datetime, end_at: datetime, entities: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Events in ``[start_at, end_at]`` for ``entities`` (a repeated query parameter), oldest first."""
        return self.poll_events(start_at, entities, end_at=end_at).events

    def poll_events(
        self, start_at: datetime, entities: Sequence[str], *, end_at: datetime | None = None
    ) -> EventsPage:
        """Events from ``start_at`` to ``end_at`` (default: Gladly's now) for ``entities``, oldest
        first, with Gladly's clock when it answered (its ``Date`` header), which is where the
        page ends when no ``end_at`` is given."""
        params = [("startAt", _iso(start_at))]
        if end_at is not None:
            params.append(("endAt", _iso(end_at)))
        params += [("entities", entity) for entity in entities]
        response = self._send("GET", "/events", params=params)
        return EventsPage(events=_event_lines(response), served_at=_served_at(response))

    def list_export_jobs(
        self,
        status: str | None = "COMPLETED",
        start_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Export jobs, filtered by status and by their ``updatedAt`` in ``[start_at, end_at]``."""
        params = {}
        if status is not None:
            params["status"] = status
        if start_at is not None:
            params["startAt"] = _iso(start_at)
        if end_at is not None:
            params["endAt"] = _iso(end_at)
        return self._get_list("/export/jobs", params=params)

    def get_export_job(self, job_id: str) -> dict[str, Any]:
        return self._get_object(f"/export/jobs/{_segment(job_id)}")

    def download_export_file(self, job_id: str, filename: str, sink: DownloadSink) -> bool:
        """Stream an export file into ``sink`` chunk by chunk; ``False`` if Gladly has no such file (404).

        Each attempt starts with ``sink.restart(content_type)``: a transient failure, also mid-body,
        starts the download again from scratch, so the sink drops what the failed attempt gave it.
        """

        def write(response: httpx.Response) -> None:
            sink.restart(response.headers.get("Content-Type", ""))
            for chunk in response.iter_bytes(_CHUNK):
                if self._shutdown is not None:
                    self._shutdown.check()
                sink.write(chunk)

        path = f"/export/jobs/{_segment(job_id)}/files/{_segment(filename)}"
        try:
            self._send("GET", path, stream=write)
            return True
        except GladlyNotFound:
            return False

    # ------------------------------------------------------------------ the retry policy

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        creates: bool = False,
        stream: Callable[[httpx.Response], None] | None = None,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """Send one logical request under the pacer and the retry policy; return a 2xx response.

        ``creates`` marks a POST that makes something new (reply, note): it is resent only when it
        provably never left or Gladly answered 429. ``stream`` consumes the body of a 2xx response
        without loading it, inside the retry loop (a broken download starts again). ``accept`` lists
        non-2xx statuses returned instead of raised (a 301 for a merged customer).
        """
        method = method.upper()
        resendable = method in _RESENDABLE_METHODS and not creates
        attempt = 0
        while True:
            self._check_deadline(method, path)
            self._pacer.acquire(method)
            self._check_deadline(method, path)
            try:
                return self._attempt(method, path, params=params, json=json, stream=stream, accept=accept)
            except GladlyError as error:
                may_have_applied = isinstance(error, ServerError) or (
                    isinstance(error, NetworkError) and not isinstance(error, NeverSent)
                )
                if may_have_applied and not resendable:
                    raise UnknownOutcome(
                        f"{method} {path} may have reached Gladly ({error}); "
                        "reconcile before sending it again",
                        method=method,
                        url=error.url,
                        status=error.status,
                    ) from error
                # Nothing happened on Gladly's side (429, never sent), or resending is harmless.
                retry = isinstance(error, RateLimited | NeverSent) or (may_have_applied and resendable)
                if not retry or attempt >= self.max_retries:
                    raise
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.info(
                    "gladly_request_retry",
                    method=method,
                    path=path,
                    error=type(error).__name__,
                    status=error.status,
                    attempt=attempt,
                    delay=round(delay, 3),
                )
                self._wait(method, path, delay, rate_limited=isinstance(error, RateLimited), cause=error)

    def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: Any,
        json: Any,
        stream: Callable[[httpx.Response], None] | None,
        accept: Collection[int],
    ) -> httpx.Response:
        """One HTTP exchange; every failure comes out as one of our errors."""
        request = self._http.build_request(method, path, params=params, json=json)
        sent = False
        try:
            response = self._http.send(request, stream=stream is not None)
            sent = True
            try:
                self._count(response)
                if response.is_success:
                    if stream is not None:
                        stream(response)
                    else:
                        response.read()
                    return response
                response.read()  # error bodies are small
                if response.status_code in accept:
                    return response
                raise self._error_for(response)
            finally:
                response.close()
        except httpx.DecodingError as exc:
            raise MalformedResponse(
                f"{method} {path}: Gladly's response could not be decoded ({exc})",
                method=method,
                url=_safe_url(request.url),
            ) from exc
        except httpx.TransportError as exc:
            if not sent and not isinstance(exc, _NEVER_SENT):
                with self._lock:
                    self._requests += 1
            raise self._transport_error(exc, method, path, request.url) from exc

    def _count(self, response: httpx.Response) -> None:
        with self._lock:
            self._requests += 1
            if response.status_code == 429:
                self._rate_limited += 1
        self._pacer.observe(response.request.method, _remaining(response))

    def _wait(self, method: str, path: str, delay: float, *, rate_limited: bool, cause: GladlyError) -> None:
        if self._deadline is not None and self._clock() + delay >= self._deadline:
            raise DeadlineExceeded(
                f"the run's deadline passes before {method} {path} could be retried ({cause})",
                method=method,
                url=cause.url,
            ) from cause
        if rate_limited:
            # The org's budget is spent: hold back every caller of this method, not just this one.
            self._pacer.penalize(method, delay)
        elif self._shutdown is not None:
            self._shutdown.sleep(delay)
        else:
            self._sleep(delay)

    def _check_deadline(self, method: str, path: str) -> None:
        """No request leaves after the run's deadline, nor once a stop was requested (``Interrupted``:
        nothing was sent)."""
        if self._shutdown is not None:
            self._shutdown.check()
        if self._deadline is not None and self._clock() >= self._deadline:
            raise DeadlineExceeded(
                f"the run's deadline passed before {method} {path} was sent",
                method=method,
                url=self.settings.api_url + path,
            )

    # ------------------------------------------------------------------ error mapping

    def _error_for(self, response: httpx.Response) -> GladlyError:
        """The one mapping from a non-2xx response to our error tree."""
        status = response.status_code
        method = response.request.method
        path = response.request.url.path
        url = _url(response)
        where = {"method": method, "url": url, "status": status}
        host = self.settings.host_url
        email = self.settings.email
        if status == 401:
            return AuthenticationFailed(
                f"authentication failed for {email} at {host}: "
                "check that the API token belongs to this email",
                **where,
            )
        if status == 403:
            return PermissionDenied(
                f"{email} lacks the API User permission at {host} (Gladly answered 403)", **where
            )
        if status == 429:
            return RateLimited(f"Gladly's rate limit was reached (429) on {method} {path}", **where)
        if status >= 500:
            return ServerError(f"Gladly answered {status} to {method} {path}", **where)
        if 300 <= status < 400:
            target = response.headers.get("Location", "no Location")
            return MalformedResponse(f"{method} {path}: unexpected redirect {status} ({target})", **where)
        if 400 <= status < 500:
            errors = _gladly_errors(response)
            first = errors[0] if errors else {}
            code, detail, attr = (_text(first.get(key)) for key in ("code", "detail", "attr"))
            if errors:
                said = ": ".join(part for part in (code, detail) if part) or "no code or detail"
                said += f" (attr {attr})" if attr else ""
            else:
                said = f"no Gladly error body ({response.headers.get('Content-Type', 'no content type')})"
            kind = GladlyNotFound if status == 404 else Rejected
            verb = "found nothing at" if status == 404 else "rejected"
            return kind(
                f"Gladly {verb} {method} {path} ({status}): {said}",
                code=code,
                detail=detail,
                attr=attr,
                errors=errors,
                **where,
            )
        return MalformedResponse(f"{method} {path}: unexpected status {status}", **where)

    def _transport_error(
        self, exc: httpx.TransportError, method: str, path: str, url: httpx.URL
    ) -> GladlyError:
        host = url.host
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        where = {"method": method, "url": _safe_url(url)}
        if isinstance(exc, _NEVER_SENT):
            if isinstance(exc, httpx.PoolTimeout):
                hint = "too many requests in flight; the request was not sent"
            elif host.endswith((".gladly.com", ".gladly.qa")):
                hint = (
                    "check gladly.organization and gladly.sandbox "
                    "(production .gladly.com vs sandbox .gladly.qa)"
                )
            else:
                hint = "check gladly.base_url and that the host is reachable"
            return NeverSent(f"cannot connect to {host} for {method} {path} ({reason}): {hint}", **where)
        return NetworkError(f"{method} {path} to {host} failed in transport ({reason})", **where)

    # ------------------------------------------------------------------ JSON bodies

    def _get_object(self, path: str, params: Any = None) -> dict[str, Any]:
        return self._json(self._send("GET", path, params=params), dict)

    def _get_list(self, path: str, params: Any = None) -> list[dict[str, Any]]:
        return self._json_list(self._send("GET", path, params=params))

    def _json_list(self, response: httpx.Response) -> list[dict[str, Any]]:
        body = self._json(response, list)
        if not all(isinstance(entry, dict) for entry in body):
            _raise(response, "a JSON list of objects was expected, but an entry is not an object")
        return body

    @staticmethod
    def _json(response: httpx.Response, kind: type[T]) -> T:
        try:
            body = jsonlib.loads(response.content)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise _malformed(response, f"the body is not JSON ({exc})") from exc
        if not isinstance(body, kind):
            expected = "a JSON list" if kind is list else "a JSON object"
            _raise(response, f"{expected} was expected, got {type(body).__name__}")
        return body


# ---------------------------------------------------------------------- helpers of the boundary


def _url(response: httpx.Response) -> str:
    return _safe_url(response.request.url)


def _safe_url(url: httpx.URL) -> str:
    """The URL without its query: queries can carry personal data (``?email=``)."""
    return str(url.copy_with(query=None))


def _remaining(response: httpx.Response) -> int | None:
    value = response.headers.get("Ratelimit-Remaining-Second")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _event_lines(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON Lines body of ``GET /events``; a line that is not an event fails the page."""
    events = []
    # JSON Lines ends a record at "\n" only: U+2028, U+2029, U+0085 and friends are legal inside
    # a JSON string, and str.splitlines() would cut an event in two at them.
    for number, line in enumerate(response.text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            event = jsonlib.loads(line)
        except ValueError as exc:
            raise _malformed(response, f"line {number} is not JSON ({exc})") from exc
        if not isinstance(event, dict):
            raise _malformed(response, f"line {number} is not a JSON object")
        missing = [
            key for key in ("id", "type", "timestamp") if not (event.get(key) and isinstance(event[key], str))
        ]
        if missing:
            raise _malformed(response, f"line {number}: the event has no {'/'.join(missing)}")
        events.append(event)
    return events


def _served_at(response: httpx.Response) -> datetime | None:
    """Gladly's clock when it answered: the ``Date`` header (RFC 9110, whole seconds), else None."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _gladly_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """Gladly's error objects, from ``{"errors": [...]}`` or ``{"errors": {...}}``; [] otherwise."""
    try:
        body = jsonlib.loads(response.content)
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, dict):
        return [errors]
    if isinstance(errors, list):
        return [error for error in errors if isinstance(error, dict)]
    return []


def _created_id(response: httpx.Response) -> str:
    """The new object's id: the last path segment of the ``Location`` header of a 201."""
    location = response.headers.get("Location")
    segment = httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1] if location else ""
    if not segment:
        _raise(response, f"Gladly answered {response.status_code} without a usable Location header")
    return segment


def _malformed(response: httpx.Response, message: str) -> MalformedResponse:
    request = response.request
    return MalformedResponse(
        f"{request.method} {request.url.path}: {message}",
        method=request.method,
        url=_url(response),
        status=response.status_code,
    )


def _raise(response: httpx.Response, message: str) -> NoReturn:
    raise _malformed(response, message)
