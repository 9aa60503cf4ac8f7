"""Benchmarks 1 and 2: an incremental sync is bound by Gladly's rate limit, and a quiet one is cheap.

Setup: a seeded simulator (no limit) and a ``sync --full`` into a fresh store. Then the simulator
enforces 10 requests/s per method and the product runs with ``requests_per_second: 10``.

1. Per run: C conversations get a new customer message and K = C/10 of their customers a changed
   profile, then ``gladly-sync sync --json`` runs as a subprocess. Measured: its wall time (process
   start included) against SPEC's ``1.1 x (1 + 2C + K) / 10 + 2 s``, the in-process time the summary
   reports against ``1.1 x (1 + 2C + K) / 10``, and the requests the simulator received while it ran:
   total (``<= 1 + 2C + K + 3``), conversation requests per changed conversation (``<= 2``), profile
   requests per changed customer (``<= 1``) and 429s (none: the pacer should never overshoot).
2. ``sync`` with nothing changed (its events window still overlaps the previous run's events):
   requests ``<= 3``, and its wall time against the same bound with C = K = 0.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
from gladly_sync.simulator import ApiError, RequestRecord, Simulator

from bench.report import Row, Target
from bench.workspace import BenchError, ProcessRun, Workspace

RATE = 10.0
FAST = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "1000"}
PACED = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": str(int(RATE))}

_KINDS = (
    ("events", re.compile(r"^/api/v1/events$")),
    ("conversation", re.compile(r"^/api/v1/conversations/[^/]+$")),
    ("items", re.compile(r"^/api/v1/conversations/[^/]+/items$")),
    ("customer", re.compile(r"^/api/v1/customer-profiles/[^/]+$")),
)


def request_kind(path: str) -> str:
    for kind, pattern in _KINDS:
        if pattern.match(path):
            return kind
    return "other"


def requests_during(sim: Simulator, run: ProcessRun) -> list[RequestRecord]:
    return [r for r in sim.requests if run.started <= r.timestamp <= run.finished]


def bound_seconds(requests: int, *, start: float = 2.0) -> float:
    """SPEC: ``1.1 x (1 + 2C + K) / 10 + 2 s`` (``start`` is the process-start allowance)."""
    return 1.1 * requests / RATE + start


@dataclass
class SyncRun:
    wall: float
    in_process: float
    requests: int
    kinds: Counter
    rate_limited: int
    product_requests: int
    unused: float = 0.0  # request span minus (n - 1) / RATE: seconds the rate budget sat unused
    landed: float = 1.0  # share of the new customer messages found in the snapshot afterwards


def measure(ws: Workspace, sim: Simulator) -> SyncRun:
    run = ws.cli("sync", "--json", overrides=PACED).check()
    summary = run.json()
    records = requests_during(sim, run)
    return SyncRun(
        wall=run.wall_seconds,
        in_process=float(summary.get("duration_seconds") or 0.0),
        requests=len(records),
        kinds=Counter(request_kind(r.path) for r in records),
        rate_limited=sum(1 for r in records if r.status == 429),
        product_requests=int(summary.get("requests") or 0),
        unused=(records[-1].timestamp - records[0].timestamp - (len(records) - 1) / RATE) if records else 0.0,
    )


def candidate_conversations(sim: Simulator, stored: set[str]) -> list[tuple[str, str]]:
    """(conversation, customer) pairs, one per customer, that a new customer message can change without
    Gladly refusing it: the customer's one unclosed conversation, else their newest closed one."""
    pairs = []
    for customer in sim.world.customers():
        conversations = sim.world.conversations(customer_id=customer["id"])
        unclosed = [c for c in conversations if c["status"] != "CLOSED"]
        # A customer message on a closed conversation reopens it, refused while another is open.
        chosen = [c for c in unclosed or conversations[-1:] if c["id"] in stored]
        if chosen:
            pairs.append((chosen[0]["id"], customer["id"]))
    return pairs


def change(
    sim: Simulator, pairs: Sequence[tuple[str, str]], conversations: int, customers: int, tag: str
) -> tuple[int, int, list[str]]:
    """New customer emails on ``conversations`` of ``pairs``, and changed profiles for ``customers``
    of their customers; returns what changed, counted from the events the simulator emitted (C, K),
    and the new items' ids.

    The messages are emails whatever the conversation's channel (Gladly conversations hold every
    channel): the simulator emits no CONTACT event for a new PHONE_CALL item, so a phone call would
    be a change no sync could see."""
    before = {event["id"] for event in sim.world.events()}
    changed: list[str] = []
    items: list[str] = []
    for conversation_id, customer_id in pairs:
        if len(changed) >= conversations:
            break
        try:
            items.append(sim.world.new_message(conversation_id, text=f"Any news? ({tag})", channel="EMAIL"))
        except ApiError:
            continue
        changed.append(customer_id)
    for number, customer_id in enumerate(dict.fromkeys(changed[:customers])):
        sim.world.update_profile(customer_id, name=f"Renamed customer {tag} {number}")
    new = [event for event in sim.world.events() if event["id"] not in before]
    c = len({e["content"]["conversationId"] for e in new if e.get("content", {}).get("conversationId")})
    k = len({e["content"]["customerId"] for e in new if e["type"] == "CUSTOMER_PROFILE/UPDATED"})
    if c != conversations or k != min(customers, len(changed)):
        raise BenchError(
            f"asked for {conversations} changed conversations and {customers} profiles; "
            f"the simulator's events name {c} and {k}"
        )
    return c, k, items


def stored_conversations(ws: Workspace) -> set[str]:
    """Conversation ids in the published snapshot."""
    return _ids(ws, "SELECT id FROM conversations WHERE deleted_at IS NULL")


def stored_items(ws: Workspace, ids: Sequence[str]) -> int:
    """How many of the item ids are in the published snapshot."""
    wanted = set(ids)
    return len(wanted & _ids(ws, "SELECT id FROM conversation_items"))


def _ids(ws: Workspace, sql: str) -> set[str]:
    con = duckdb.connect(str(ws.folder / "store_read.duckdb"), read_only=True)
    try:
        return {row[0] for row in con.execute(sql).fetchall()}
    finally:
        con.close()


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    sizes = [30] if quick else [30, 300]
    customers = max(sizes) + 60
    with (
        Simulator(seed=11, customers=customers, conversations=int(customers * 1.5), history_days=3) as sim,
        Workspace(sim.base_url, name="sync", keep=keep) as ws,
    ):
        log(f"  sync: setup `sync --full` of {len(sim.world.customers())} customers (no rate limit)")
        ws.cli("sync", "--full", "--json", overrides=FAST).check()
        pairs = candidate_conversations(sim, stored_conversations(ws))
        if len(pairs) < max(sizes):
            raise BenchError(f"only {len(pairs)} stored conversations can be changed; need {max(sizes)}")
        sim.rate_limit_per_second = RATE
        rows: list[Row] = []
        for size in sizes:
            results: list[SyncRun] = []
            k = max(1, size // 10)
            for index in range(runs):
                offset = (index * size) % len(pairs)
                window = pairs[offset:] + pairs[:offset]
                c, k, new_items = change(sim, window, size, k, tag=f"{size}-{index}")
                results.append(measure(ws, sim))
                results[-1].landed = stored_items(ws, new_items) / len(new_items)
                log(
                    f"  sync: C={c} K={k} run {index + 1}/{runs}: {results[-1].wall:.2f} s wall, "
                    f"{results[-1].requests} requests, {results[-1].rate_limited} x 429"
                )
            rows += sync_rows(size, k, results)
        quiet: list[SyncRun] = []
        for index in range(runs):
            quiet.append(measure(ws, sim))
            log(
                f"  sync: no-change run {index + 1}/{runs}: {quiet[-1].wall:.2f} s wall, "
                f"{quiet[-1].requests} requests"
            )
        rows += quiet_rows(quiet)
        return rows


def sync_rows(c: int, k: int, results: Sequence[SyncRun]) -> list[Row]:
    fewest = 1 + 2 * c + k
    name = f"1 sync C={c} K={k}"
    label = f"1.1 x {fewest}/10"
    return [
        Row(
            name,
            "wall, CLI subprocess",
            [r.wall for r in results],
            "s",
            Target("<=", bound_seconds(fewest), f"{label} + 2 s"),
        ),
        Row(
            name,
            "in-process (summary)",
            [r.in_process for r in results],
            "s",
            Target("<=", bound_seconds(fewest, start=0.0), label),
        ),
        Row(name, "new messages stored (share)", [r.landed for r in results], "", Target(">=", 1.0)),
        Row(
            name,
            "requests total",
            [r.requests for r in results],
            "",
            Target("<=", fewest + 3, f"1+2C+K+3; fewest {fewest}"),
            digits=0,
        ),
        Row(
            name,
            "conversation+items requests / changed conversation",
            [(r.kinds["conversation"] + r.kinds["items"]) / c for r in results],
            "",
            Target("<=", 2.0),
        ),
        Row(
            name,
            "profile requests / changed customer",
            [r.kinds["customer"] / k for r in results],
            "",
            Target("<=", 1.0),
        ),
        Row(
            name,
            "429s received (simulator log)",
            [r.rate_limited for r in results],
            "",
            Target("<=", 0),
            digits=0,
        ),
        Row(
            name,
            "rate budget unused between first and last request",
            [r.unused for r in results],
            "s",
            note="(span - (n-1)/10 s: local work the requests waited for)",
        ),
        Row(
            name,
            "requests the product counted",
            [r.product_requests for r in results],
            "",
            digits=0,
            note="(its own summary; should equal the simulator's)",
        ),
    ]


def quiet_rows(results: Sequence[SyncRun]) -> list[Row]:
    name = "2 sync, no change"
    return [
        Row(name, "requests", [r.requests for r in results], "", Target("<=", 3), digits=0),
        Row(
            name,
            "wall, CLI subprocess",
            [r.wall for r in results],
            "s",
            Target("<=", bound_seconds(1), "1.1 x 1/10 + 2 s"),
        ),
        Row(name, "in-process (summary)", [r.in_process for r in results], "s"),
    ]
