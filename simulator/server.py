"""The simulator as an HTTP service: auth, rate limit, faults and request recording around
`endpoints.dispatch`, served by a ThreadingHTTPServer on loopback in a daemon thread.

Order for each request: read it fully -> fault (delay / status / reset) -> Basic auth
(401, 403) -> rate limit (429) -> (apply_late: wait) -> handler -> fault after apply (5xx /
dropped connection / an HTML page or a corrupt line instead of the body).
Every request is recorded, including those answered 401/403/429/5xx or never answered.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gladly_sync.simulator.endpoints import Request, Response, dispatch, json_response
from gladly_sync.simulator.faults import HTML_PAGE, Fault, Faults, corrupt_line
from gladly_sync.simulator.organization import (
    DEFAULT_API_EMAIL,
    DEFAULT_API_TOKEN,
    NOPERM_EMAIL,
    NOPERM_TOKEN,
)
from gladly_sync.simulator.rate_limit import RateLimiter
from gladly_sync.simulator.world import Quirks, World


@dataclass(frozen=True)
class RequestRecord:
    """One request as received. `status` is None when no response was sent (dropped/reset);
    `timestamp` is seconds since the epoch (time.time()) when it arrived."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None
    body: bytes | None
    timestamp: float


def _errors(code: str, detail: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "detail": detail}]}


def _fault_response(fault: Fault) -> Response:
    if fault.status == 429:
        return json_response(_errors("too_many_requests", "rate limit exceeded"), 429)
    code = "temporary_failure" if fault.status >= 500 else "simulated"
    return json_response(_errors(code, f"simulated {fault.status} ({fault.kind})"), fault.status)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        with self.connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header on Gladly's clock (the world's, which may be offset from the host's)."""
        if timestamp is None:
            timestamp = self.server.simulator.world.now().timestamp()
        return super().date_time_string(timestamp)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    # ------------------------------------------------------------------ flow
    def _handle(self) -> None:
        simulator = self.server.simulator
        arrived = time.time()
        body = self._read_body()
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        method = self.command.upper()

        def record(status: int | None) -> None:
            # Recorded before the answer goes out, so a client that has its answer also
            # finds its request in `Simulator.requests`.
            simulator._record(RequestRecord(method, path, query, status, body or None, arrived))

        def answer(response: Response, limits: dict[str, str]) -> None:
            record(response.status)
            self._send(response, limits)

        fault = simulator.faults.take(method, path)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "reset_before_apply":
            record(None)
            self._reset()
            return
        if fault is not None and fault.kind == "status":
            answer(_fault_response(fault), simulator.limiter.take(method, force=True)[1])
            return
        denied = simulator._authenticate(self.headers.get("Authorization"))
        if isinstance(denied, Response):
            answer(denied, simulator.limiter.peek(method))
            return
        allowed, limits = simulator.limiter.take(method, force=fault is not None)
        if not allowed:
            answer(json_response(_errors("too_many_requests", "rate limit exceeded"), 429), limits)
            return
        request = Request(method, path, query, body, agent_id=denied)
        if fault is not None and fault.kind == "apply_late":
            time.sleep(fault.seconds)  # the client's read timeout fires meanwhile; Gladly still applies
        try:
            response = dispatch(simulator.world, request)
        except Exception:  # a simulator bug answers 500 rather than hanging the client
            traceback.print_exc(file=sys.stderr)
            response = json_response(_errors("internal", "simulator error"), 500)
        if fault is not None and fault.kind in ("drop_after_apply", "apply_late"):
            record(None)
            self._drop()
            return
        if fault is not None and fault.kind == "error_after_apply":
            response = _fault_response(fault)
        if fault is not None and fault.kind == "html_body":
            response = Response(200, HTML_PAGE, "text/html; charset=utf-8")
        if fault is not None and fault.kind == "corrupt_line" and response.stream is not None:
            response.stream = corrupt_line(response.stream, fault.line)
        answer(response, limits)

    # ------------------------------------------------------------------ wire
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response, limits: dict[str, str]) -> None:
        try:
            self.send_response(response.status)
            for name, value in {**limits, **response.headers}.items():
                self.send_header(name, value)
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            if response.stream is not None:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in response.stream:
                    if chunk:
                        self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            else:
                if response.status != 204:
                    self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if response.body and response.status != 204:
                    self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self) -> None:
        """Close without a response: the client sees the connection end after sending."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _reset(self) -> None:
        """Abort with a TCP RST."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class Simulator:
    """A seeded Gladly org served over HTTP on 127.0.0.1 (see the package docstring)."""

    def __init__(self, seed: int = 1, customers: int = 20, conversations: int = 40,
                 items_per_conversation: tuple[int, int] = (2, 8), history_days: int = 10,
                 rate_limit_per_second: float | None = None, api_email: str = DEFAULT_API_EMAIL,
                 api_token: str = DEFAULT_API_TOKEN, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], datetime] | None = None, quirks: Quirks | None = None,
                 event_lateness_seconds: float = 0.0,
                 clock_offset: timedelta = timedelta()) -> None:
        self.world = World(seed=seed, customers=customers, conversations=conversations,
                           items_per_conversation=items_per_conversation,
                           history_days=history_days, api_email=api_email, clock=clock,
                           quirks=quirks, event_lateness_seconds=event_lateness_seconds,
                           clock_offset=clock_offset)
        self.faults = Faults()
        self.limiter = RateLimiter(rate_limit_per_second)
        self.api_email = api_email
        self.api_token = api_token
        self._address = (host, port)
        self._records: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Simulator:
        if self._server is None:
            self._server = _Server(self._address, self)
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.01},
                                            name="gladly-simulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`; clients append `/api/v1`."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    # ------------------------------------------------------------------ settings
    @property
    def rate_limit_per_second(self) -> float | None:
        return self.limiter.limit_per_second

    @rate_limit_per_second.setter
    def rate_limit_per_second(self, value: float | None) -> None:
        self.limiter.limit_per_second = value

    # ------------------------------------------------------------------ recording
    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received since start or the last reset_requests(), in arrival order."""
        with self._records_lock:
            return sorted(self._records, key=lambda r: r.timestamp)

    def reset_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._records_lock:
            self._records.append(record)

    # ------------------------------------------------------------------ auth
    def _authenticate(self, header: str | None) -> str | Response:
        """The authenticated agent id, or the 401/403 response to send."""
        email, token = "", ""
        if header and header[:6].lower() == "basic ":
            try:
                email, _, token = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                email, token = "", ""
        if email.lower() == self.api_email.lower() and hmac.compare_digest(token, self.api_token):
            return self.world.api_agent_id
        if email.lower() == NOPERM_EMAIL and hmac.compare_digest(token, NOPERM_TOKEN):
            return json_response(_errors("forbidden", "user does not have the API User "
                                                      "permission"), 403)
        return json_response(_errors("unauthorized", "missing or invalid credentials"), 401,
                             {"WWW-Authenticate": 'Basic realm="Gladly API"'})
