"""Benchmark 5: ``gladly-sync enqueue note --json`` from another process completes within 2 s (p99)
while the daemon runs.

Setup: a seeded simulator, ``sync --full`` (no limit), then one bulk export job (1,000,000 items) for
the daemon's reconcile job to ingest, the simulator at 10 requests/s, and a thread that keeps writing
customer messages so every sync (every 5 s) has work; queued notes are drained every 5 s. A few
enqueues are timed before the daemon starts (the cost of the process itself), then up to ``SAMPLES``
while ``gladly-sync run`` works. Each is a separate CLI process, timed from outside. Samples are
matched against the daemon's log to say which ran during the export ingest.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gladly_sync.simulator import ApiError, Simulator

from bench.incremental import candidate_conversations, stored_conversations
from bench.report import Row, Target
from bench.workspace import BenchError, Workspace, parse_log_lines

RATE = 10.0
FAST = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "1000"}
DAEMON = {
    "GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": str(int(RATE)),
    "GLADLY_SYNC__SCHEDULE__SYNC_EVERY": "5s",
    "GLADLY_SYNC__SCHEDULE__DRAIN_EVERY": "5s",
}
IDLE_SAMPLES = 5
SAMPLE_TIME_LIMIT = 150.0  # seconds of sampling at most
CHANGE_EVERY = 0.5  # seconds between simulated customer messages
CHANGES_MAX = 600


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 40 samples is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _at(event: dict[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(event["timestamp"])).timestamp()
    except (KeyError, ValueError):
        return None


def windows(events: Sequence[dict[str, Any]], start: str, end: str) -> list[tuple[float, float]]:
    """(start, end) times of the spans between log events ``start`` and ``end`` (unclosed: open-ended)."""
    spans, opened = [], None
    for event in events:
        at = _at(event)
        if at is None:
            continue
        if event.get("event") == start and opened is None:
            opened = at
        elif event.get("event") == end and opened is not None:
            spans.append((opened, at))
            opened = None
    if opened is not None:
        spans.append((opened, math.inf))
    return spans


class CustomerTraffic(threading.Thread):
    """Customers keep writing, one message every CHANGE_EVERY seconds, until stopped (bounded)."""

    def __init__(self, sim: Simulator, conversations: Sequence[str]):
        super().__init__(name="bench-traffic", daemon=True)
        self.sim = sim
        self.conversations = list(conversations)
        self.stopped = threading.Event()
        self.sent = 0

    def run(self) -> None:
        for index in range(CHANGES_MAX):
            if self.stopped.wait(CHANGE_EVERY):
                return
            try:
                self.sim.world.new_message(
                    self.conversations[index % len(self.conversations)], text=f"Still waiting ({index})"
                )
                self.sent += 1
            except ApiError:
                continue


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    samples, bulk_items = (15, 200_000) if quick else (40, 1_000_000)
    with (
        Simulator(seed=41, customers=80, conversations=120, history_days=3) as sim,
        Workspace(sim.base_url, name="enqueue", keep=keep) as ws,
    ):
        ws.cli("sync", "--full", overrides=FAST).check()
        stored = stored_conversations(ws)
        targets = sorted(stored)[:40]
        chatty = [conversation for conversation, _ in candidate_conversations(sim, stored)][:40]

        def enqueue(index: int) -> tuple[float, float, int]:
            conversation = targets[index % len(targets)]
            done = ws.cli(
                "enqueue",
                "note",
                conversation,
                "--body",
                f"Bench note {index}",
                "--json",
                overrides=DAEMON,
                timeout=60,
            )
            if done.returncode == 0:
                done.json()  # the promised {id, status, deduplicated}
            return done.started, done.wall_seconds, done.returncode

        idle = [enqueue(-1 - i) for i in range(IDLE_SAMPLES)]
        log(f"  enqueue: idle p50 {percentile([s[1] for s in idle], 50):.2f} s")

        sim.world.create_bulk_export_job(items=bulk_items, conversations=20)
        sim.rate_limit_per_second = RATE
        daemon = ws.start_cli("run", overrides=DAEMON)
        traffic = CustomerTraffic(sim, chatty)
        loaded: list[tuple[float, float, int]] = []
        try:
            if not daemon.wait_for_log("daemon_started", timeout=60):
                raise BenchError(f"the daemon did not start:\n{daemon.log_text()[-2000:]}")
            traffic.start()
            sampling_ends = time.monotonic() + SAMPLE_TIME_LIMIT
            for index in range(samples):
                if time.monotonic() > sampling_ends:
                    break
                loaded.append(enqueue(index))
                time.sleep(0.2)
        finally:
            traffic.stopped.set()
            traffic.join(timeout=5)
            daemon_exit = daemon.stop(grace=120)
        events = parse_log_lines(daemon.log_text())
    ingest = windows(events, "export_job_started", "export_job_processed")
    syncs = windows([e for e in events if e.get("job") == "sync"], "job_started", "job_finished")

    def during(spans: list[tuple[float, float]], sample: tuple[float, float, int]) -> bool:
        start, end = sample[0], sample[0] + sample[1]
        return any(s < end and start < e for s, e in spans)

    in_ingest = [s[1] for s in loaded if during(ingest, s)]
    in_sync = [s[1] for s in loaded if during(syncs, s)]
    failures = [s for s in loaded if s[2] != 0]
    log(
        "  enqueue: latencies under load (s): "
        + " ".join(f"{s[1]:.2f}{'*' if during(ingest, s) else ''}" for s in loaded)
        + "  (* = during the export ingest)"
    )
    log(
        f"  enqueue: {len(loaded)} samples under load ({len(in_ingest)} during the export ingest, "
        f"{len(in_sync)} during a sync), {len(failures)} failed; daemon exit {daemon_exit}; "
        f"{traffic.sent} customer messages"
    )
    if not loaded:
        raise BenchError("no enqueue sample was taken")
    name = f"5 enqueue under `run` ({bulk_items:,}-item export)"
    latencies = [s[1] for s in loaded]
    ingest_seconds = sum(min(e, time.time()) - s for s, e in ingest)
    rows = [
        Row(
            name,
            f"p99 latency, all {len(latencies)} samples",
            [percentile(latencies, 99)],
            "s",
            Target("<=", 2.0),
        ),
        Row(name, "p50 latency, all samples", [percentile(latencies, 50)], "s"),
        Row(name, "max latency", [max(latencies)], "s"),
        Row(
            name,
            f"p99 latency, {len(in_ingest)} samples during the export ingest",
            [percentile(in_ingest, 99)] if in_ingest else [],
            "s",
            Target("<=", 2.0),
        ),
        Row(
            name,
            f"p50 latency, {len(in_sync)} samples during a sync",
            [percentile(in_sync, 50)] if in_sync else [],
            "s",
        ),
        Row(name, "failed enqueues (exit != 0)", [len(failures)], "", Target("<=", 0), digits=0),
        Row(name, "p50 latency, idle store (process cost)", [percentile([s[1] for s in idle], 50)], "s"),
        Row(name, "export ingest inside the daemon", [ingest_seconds], "s"),
    ]
    return rows
