"""Benchmark 5: what an erasure costs. The sync that applies a profile deletion rewrites the store.

Per run: a fresh simulator and store; ``sync --full`` ingests the small seeded history and one bulk
export job of N items over 20 conversations (the 1,000,000-item store). Then one bulk customer's
profile is deleted in the simulator (Gladly's ``CUSTOMER_PROFILE/DELETED``) and ``sync`` applies it.
The erasure step (blank the outbox, rewrite the store from its live rows, swap it in) is timed from
inside the product (its ``erasure_completed`` log event: wall and CPU seconds, the store's size);
the whole sync, snapshot publish included, from outside, beside a sync that changes nothing.

Erasures are rare and their cost grows with the store, so the figures are information (SPEC sets no
target): seconds per GB of store is the one to extrapolate with. GB here is 10^9 bytes.
"""

from __future__ import annotations

from typing import Any

from gladly_sync.simulator import Simulator

from bench.report import Row
from bench.workspace import BenchError, Workspace

FAST = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "1000"}
CONVERSATIONS = 20
INGEST_TIMEOUT = 1800.0


def one_run(items: int, *, keep: bool) -> dict[str, Any]:
    with (
        Simulator(seed=23, customers=3, conversations=3, history_days=2) as sim,
        Workspace(sim.base_url, name=f"erasure-{items}", keep=keep) as ws,
    ):
        sim.world.create_bulk_export_job(items=items, conversations=CONVERSATIONS)
        ws.cli("sync", "--full", overrides=FAST, timeout=INGEST_TIMEOUT).check()
        unchanged = ws.cli("sync", overrides=FAST).check()
        erased = next(c["id"] for c in sim.world.customers() if c.get("name") == "Bulk Customer 1")
        sim.world.delete_profile(erased)
        run = ws.cli("sync", overrides=FAST, timeout=INGEST_TIMEOUT).check()
        done = [e for e in run.log_events() if e.get("event") == "erasure_completed"]
        if not done:
            raise BenchError("the sync that applied the profile deletion logged no erasure_completed")
        return {
            "erasure_seconds": float(done[0]["duration_seconds"]),
            "erasure_cpu_seconds": float(done[0]["cpu_seconds"]),
            "store_bytes": int(done[0]["store_bytes"]),
            "sync_seconds": run.wall_seconds,
            "unchanged_sync_seconds": unchanged.wall_seconds,
        }


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    items = 200_000 if quick else 1_000_000
    results = []
    for index in range(runs):
        result = one_run(items, keep=keep)
        results.append(result)
        log(
            f"  erasure: {items:,} items run {index + 1}/{runs}: store {result['store_bytes'] / 1e9:.2f} GB, "
            f"erasure {result['erasure_seconds']:.1f} s, sync {result['sync_seconds']:.1f} s "
            f"(unchanged sync {result['unchanged_sync_seconds']:.1f} s)"
        )
    name = f"5 erasure, {items:,}-item store"

    def values(key: str, scale: float = 1.0) -> list[float]:
        return [r[key] * scale for r in results]

    return [
        Row(name, "store size", values("store_bytes", 1e-6), "MB", digits=0),
        Row(name, "erasure step (outbox + rewrite store)", values("erasure_seconds"), "s"),
        Row(
            name,
            "erasure cost per GB of store (wall)",
            [r["erasure_seconds"] / (r["store_bytes"] / 1e9) for r in results],
            "s/GB",
        ),
        Row(
            name,
            "erasure cost per GB of store (CPU, both cores)",
            [r["erasure_cpu_seconds"] / (r["store_bytes"] / 1e9) for r in results],
            "s/GB",
            note="CPU time does not grow with the machine's load; wall time does",
        ),
        Row(name, "sync applying the deletion (wall)", values("sync_seconds"), "s"),
        Row(name, "sync changing nothing (wall)", values("unchanged_sync_seconds"), "s"),
    ]
