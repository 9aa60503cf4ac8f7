"""Fixtures for the simulator's tests: a running simulator, an HTTP client, a movable clock,
and Gladly's OpenAPI document as a JSON-schema validator."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from gladly_sync.simulator import Simulator
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.clocks import WallClock

REPO = Path(__file__).resolve().parents[2]
OPENAPI_CANDIDATES = (REPO.parent / "shared" / "reference" / "gladly-openapi.yml",
                      REPO / "shared" / "reference" / "gladly-openapi.yml")
OPENAPI_URI = "urn:gladly-openapi"


class OpenApi:
    """Gladly's OpenAPI document with its `$ref`s resolved by `referencing`.

    OpenAPI 3.0 schemas are validated as draft 7 JSON schema: the keywords Gladly uses
    (type, required, properties, items, enum, oneOf, allOf) mean the same in both, and
    OpenAPI-only keys (example, format strings such as "RFC3339 with millis") are ignored.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource(contents=document, specification=DRAFT7)
        self._registry = Registry().with_resource(OPENAPI_URI, resource)
        self._validators: dict[str, Draft7Validator] = {}

    @staticmethod
    def pointer(*segments: str) -> str:
        escaped = (quote(s.replace("~", "~0").replace("/", "~1"), safe="~") for s in segments)
        return "/" + "/".join(escaped)

    def response_pointer(self, path: str, method: str, status: int = 200,
                         media: str = "application/json") -> str:
        return self.pointer("paths", "/api/v1" + path, method.lower(), "responses", str(status),
                            "content", media, "schema")

    def request_pointer(self, path: str, method: str) -> str:
        return self.pointer("paths", "/api/v1" + path, method.lower(), "requestBody", "content",
                            "application/json", "schema")

    def errors(self, pointer: str, instance: Any) -> list[str]:
        if pointer not in self._validators:
            self._validators[pointer] = Draft7Validator({"$ref": f"{OPENAPI_URI}#{pointer}"},
                                                        registry=self._registry)
        return [f"{list(e.absolute_path)}: {e.message[:300]}"
                for e in self._validators[pointer].iter_errors(instance)]

    def assert_valid(self, pointer: str, instance: Any) -> None:
        problems = self.errors(pointer, instance)
        assert not problems, f"{pointer}:\n" + "\n".join(problems[:10])

    def array_item_pointer(self, pointer: str) -> str:
        return pointer + "/items"


def without_quirks(item: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of the item with the documented quirks undone, and the names of those found.

    Gladly's own items example (getConversationItems) breaks its schema in exactly these ways,
    so the simulator serves them on purpose and schema checks exempt them, and only them.
    """
    fixed = copy.deepcopy(item)
    content = fixed["content"]
    found = []
    if content.get("type") == "CHAT_MESSAGE" and "messageType" not in content:
        content["messageType"] = "TEXT"
        found.append("chat_without_message_type")
    if isinstance(content.get("recordingDuration"), str):
        content["recordingDuration"] = int(content["recordingDuration"])
        found.append("string_recording_duration")
    return fixed, found


@pytest.fixture(scope="session")
def openapi() -> OpenApi:
    path = next((p for p in OPENAPI_CANDIDATES if p.exists()), None)
    if path is None:
        pytest.skip("shared/reference/gladly-openapi.yml is not beside the repository")
    with path.open(encoding="utf-8") as handle:
        return OpenApi(yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


@pytest.fixture
def clock() -> WallClock:
    """A settable UTC clock for World(clock=...), starting now."""
    return WallClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A small running simulator, fresh for each test."""
    with Simulator(seed=7, customers=12, conversations=24) as simulator:
        yield simulator


@pytest.fixture
def clocked_sim(clock: WallClock) -> Iterator[Simulator]:
    """A small running simulator whose world time is the `clock` fixture."""
    with Simulator(seed=7, customers=12, conversations=24, clock=clock) as simulator:
        yield simulator


def _api_client(simulator: Simulator, **options: Any) -> httpx.Client:
    options.setdefault("timeout", 10.0)
    options.setdefault("auth", (simulator.api_email, simulator.api_token))
    options.setdefault("verify", False)   # plain http on loopback; skips loading CA certs
    return httpx.Client(base_url=simulator.base_url + "/api/v1", **options)


@pytest.fixture
def make_client() -> Iterator[Callable[..., httpx.Client]]:
    """Factory for clients of a simulator (`auth=`, `timeout=` may be overridden)."""
    made: list[httpx.Client] = []

    def make(simulator: Simulator, **options: Any) -> httpx.Client:
        made.append(_api_client(simulator, **options))
        return made[-1]

    yield make
    for http in made:
        http.close()


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with _api_client(sim) as http:
        yield http


@pytest.fixture
def clocked_client(clocked_sim: Simulator) -> Iterator[httpx.Client]:
    with _api_client(clocked_sim) as http:
        yield http


@pytest.fixture
def new_conversation(sim: Simulator) -> Callable[..., tuple[str, str]]:
    """Factory: a new OPEN, unassigned conversation of a new customer in `sim`,
    as (conversation id, id of its first customer message)."""
    counter = iter(range(1, 10_000))

    def make(channel: str = "EMAIL", inbox: str = "Email Support") -> tuple[str, str]:
        world = sim.world
        number = next(counter)
        customer_id = world.new_customer(name=f"Test Person {number}",
                                         email=f"test.person{number}@example.com",
                                         phone=f"+1415555{9000 + number:04d}")
        conversation_id = world.new_conversation(customer_id, world.inbox_id(inbox),
                                                 channel=channel, text="Where is my parcel?",
                                                 subject="Parcel")
        return conversation_id, world.items(conversation_id)[0]["id"]

    return make


@pytest.fixture
def events_of() -> Callable[..., list[dict[str, Any]]]:
    """Factory: a simulator's stored events of a type whose content has the given values."""

    def find(simulator: Simulator, type_: str, **content: Any) -> list[dict[str, Any]]:
        return [e for e in simulator.world.events() if e["type"] == type_
                and all(e["content"].get(k) == v for k, v in content.items())]

    return find


@pytest.fixture
def quirkless() -> Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]]:
    return without_quirks
