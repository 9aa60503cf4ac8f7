"""The Gladly REST routes the simulator serves: request in, response out, no sockets.

Each handler reads the request, asks the World, and returns a Response; Gladly's refusals come
back as ApiError and are rendered as its JSON error bodies. Paths are Gladly's, under /api/v1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gladly_sync.simulator import payloads
from gladly_sync.simulator.errors import ApiError
from gladly_sync.simulator.events import ENTITY_PREFIXES, RETENTION
from gladly_sync.simulator.timestamps import parse_timestamp
from gladly_sync.simulator.world import World

JSON = "application/json"
JSON_LINES = "application/x-jsonlines"
NDJSON = "application/x-ndjson"
LIMITED_DATA = "Gladly-Limited-Data"
JOB_STATUSES = ("PENDING", "IN_PROGRESS", "COMPLETED", "FAILED")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes = b""
    agent_id: str = ""

    def json(self) -> Any:
        """The body as JSON (None when empty); malformed JSON is a 400."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError.invalid(f"request body is not valid JSON: {exc}") from exc

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status, body, JSON, dict(headers or {}))


def error_response(error: ApiError) -> Response:
    return json_response(error.body, error.status, error.headers)


def _limited(truncated: bool) -> dict[str, str]:
    # The header's value format is undocumented (gladly-api.md §4); sent only when truncated.
    return {LIMITED_DATA: "true"} if truncated else {}


def _time_param(request: Request, name: str) -> datetime | None:
    value = request.param(name)
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise ApiError.invalid(f"{name} must be an ISO 8601 timestamp", name) from exc


def _lookup(table: dict[str, dict[str, Any]], key: str, noun: str) -> Response:
    if key not in table:
        raise ApiError.not_exist(f"{noun} [{key}] does not exist")
    return json_response(table[key])


# --------------------------------------------------------------------------- handlers
def organization(world: World, request: Request) -> Response:
    return json_response(world.organization)


def agents(world: World, request: Request) -> Response:
    return json_response(list(world.agents.values()))


def agent(world: World, request: Request, agent_id: str) -> Response:
    return _lookup(world.agents, agent_id, "agent")


def inboxes(world: World, request: Request) -> Response:
    return json_response(list(world.inboxes.values()))


def inbox(world: World, request: Request, inbox_id: str) -> Response:
    return _lookup(world.inboxes, inbox_id, "inbox")


def topics(world: World, request: Request) -> Response:
    return json_response(list(world.topics.values()))


def topic(world: World, request: Request, topic_id: str) -> Response:
    return _lookup(world.topics, topic_id, "topic")


def find_customers(world: World, request: Request) -> Response:
    given = [(name, request.param(name)) for name in ("email", "phoneNumber", "externalCustomerId")
             if request.param(name)]
    if len(given) != 1:
        raise ApiError.invalid("exactly one of email, phoneNumber or externalCustomerId "
                               "must be given")
    name, value = given[0]
    return json_response(world.api_find_customers(name, value or ""))


def customer(world: World, request: Request, customer_id: str) -> Response:
    return json_response(world.api_customer(customer_id))


def customer_conversations(world: World, request: Request, customer_id: str) -> Response:
    found, truncated = world.api_customer_conversations(customer_id)
    return json_response(found, headers=_limited(truncated))


def conversation(world: World, request: Request, conversation_id: str) -> Response:
    return json_response(world.api_conversation(conversation_id))


def update_conversation(world: World, request: Request, conversation_id: str) -> Response:
    world.api_conversation(conversation_id)
    assignee, status = payloads.conversation_update(request.json())
    world.patch_conversation(conversation_id, assignee, status, request.agent_id)
    return Response(204)


def conversation_items(world: World, request: Request, conversation_id: str) -> Response:
    found, truncated = world.api_items(conversation_id, request.param("sessionId"))
    return json_response(found, headers=_limited(truncated))


def conversation_item(world: World, request: Request, item_id: str) -> Response:
    return json_response(world.api_item(item_id))


def add_note(world: World, request: Request, conversation_id: str) -> Response:
    world.api_conversation(conversation_id)
    body = payloads.note_body(request.json())
    note_id = world.add_note(conversation_id, body, request.agent_id)
    location = f"/api/v1/conversations/{conversation_id}/notes/{note_id}"
    return Response(201, headers={"Location": location})


def note(world: World, request: Request, conversation_id: str, note_id: str) -> Response:
    return json_response(world.api_note(conversation_id, note_id))


def reply(world: World, request: Request, item_id: str) -> Response:
    world.api_item(item_id)
    content = payloads.reply_content(request.json())
    new_id = world.reply_to_item(item_id, content, request.agent_id)
    return Response(201, headers={"Location": f"/api/v1/conversation-items/{new_id}"})


def redact(world: World, request: Request, item_id: str) -> Response:
    world.redact_item(item_id)
    return Response(201, headers={"Location": f"/api/v1/conversation-items/{item_id}"})


def events(world: World, request: Request) -> Response:
    now = world.now()
    start = _time_param(request, "startAt")
    if start is None:
        raise ApiError.blank("startAt", "startAt is required")
    if start <= now - RETENTION:
        raise ApiError.invalid("startAt must be within the last 24 hours", "startAt")
    horizon = now + timedelta(microseconds=1)   # an event stamped "now" is already visible
    end = _time_param(request, "endAt") or horizon
    if end <= start:
        raise ApiError.invalid("endAt must occur after startAt", "startAt")
    entities = request.query.get("entities", [])
    if not [e for e in entities if e]:
        raise ApiError.blank("entities", "entities is required")
    unknown = [e for e in entities if e not in ENTITY_PREFIXES]
    if unknown:
        raise ApiError.invalid(f"entities [{unknown[0]}] is not supported", "entities")
    found = world.api_events(start, min(end, horizon), entities)
    # UTF-8 as Gladly sends it: U+2028, U+2029, U+0085 inside strings arrive unescaped.
    text = "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in found)
    return Response(200, text.encode("utf-8"), JSON_LINES)


def export_schedules(world: World, request: Request) -> Response:
    return json_response(world.schedules)


def export_jobs(world: World, request: Request) -> Response:
    status = request.param("status") or None
    if status is not None and status not in JOB_STATUSES:
        raise ApiError.invalid(f"status [{status}] is not supported", "status")
    start, end = _time_param(request, "startAt"), _time_param(request, "endAt")
    return json_response(world.api_export_jobs(status, start, end))


def export_job(world: World, request: Request, job_id: str) -> Response:
    return json_response(world.api_export_job(job_id))


def export_file(world: World, request: Request, job_id: str, filename: str) -> Response:
    return Response(200, content_type=NDJSON, stream=world.export_file(job_id, filename))


# --------------------------------------------------------------------------- routing
Handler = Callable[..., Response]
_ROUTE_TABLE: list[tuple[str, str, Handler]] = [
    ("GET", "/organization", organization),
    ("GET", "/agents", agents),
    ("GET", "/agents/{id}", agent),
    ("GET", "/inboxes", inboxes),
    ("GET", "/inboxes/{id}", inbox),
    ("GET", "/topics", topics),
    ("GET", "/topics/{id}", topic),
    ("GET", "/customer-profiles", find_customers),
    ("GET", "/customer-profiles/{id}", customer),
    ("GET", "/customers/{id}/conversations", customer_conversations),
    ("GET", "/conversations/{id}", conversation),
    ("PATCH", "/conversations/{id}", update_conversation),
    ("GET", "/conversations/{id}/items", conversation_items),
    ("POST", "/conversations/{id}/notes", add_note),
    ("GET", "/conversations/{id}/notes/{id}", note),
    ("GET", "/conversation-items/{id}", conversation_item),
    ("POST", "/conversation-items/{id}/reply", reply),
    ("POST", "/conversation-items/{id}/redact", redact),
    ("GET", "/events", events),
    ("GET", "/export/schedules", export_schedules),
    ("GET", "/export/jobs", export_jobs),
    ("GET", "/export/jobs/{id}", export_job),
    ("GET", "/export/jobs/{id}/files/{id}", export_file),
]
ROUTES = [(method, re.compile("^/api/v1" + template.replace("{id}", "([^/]+)") + "/?$"), handler)
          for method, template, handler in _ROUTE_TABLE]


def dispatch(world: World, request: Request) -> Response:
    """Route the request; unknown paths are 404 and known paths with another method 405."""
    allowed = []
    for method, pattern, handler in ROUTES:
        match = pattern.match(request.path)
        if match is None:
            continue
        if method != request.method:
            allowed.append(method)
            continue
        try:
            return handler(world, request, *match.groups())
        except ApiError as error:
            return error_response(error)
    if allowed:
        response = json_response({"errors": [{"code": "invalid",
                                              "detail": f"method {request.method} not allowed"}]},
                                 405, {"Allow": ", ".join(allowed)})
        return response
    return json_response({"errors": [{"code": "not_exist",
                                      "detail": f"no route for {request.path}"}]}, 404)
