"""Benchmark 6 (information, no target): export ingest on PostgreSQL beside DuckDB's, in one run.

Per run, the same bulk export job (N items over 20 conversations) is ingested by the reconcile job
into a fresh DuckDB store and into a fresh database of a throwaway local PostgreSQL 15 cluster
(``tests/pg.py``: Unix socket, ``fsync`` off). On PostgreSQL, DuckDB still parses the file; its rows
are COPYed into a temp table and merged with ``INSERT ... ON CONFLICT`` (``storage/postgres_items.py``).

Then, on the filled PostgreSQL store, what Applied sees through the Python API (``Store``) on a host
of its own: ``conversation_context`` of a small conversation and ``enqueue_note`` (the outbox is a
table of the store), each timed ``CALLS`` times after one warm-up call.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.export import one_run, rate_row
from bench.report import Row


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    from tests.pg import PostgresCluster

    items = 50_000 if quick else 100_000
    duckdb_rates: list[float] = []
    postgres_rates: list[float] = []
    applied: list[dict[str, float]] = []
    cluster = PostgresCluster().start()
    try:
        for index in range(runs):
            store = {"GLADLY_SYNC__STORAGE__URL": cluster.url(cluster.create_database())}
            for rates, overrides in ((duckdb_rates, None), (postgres_rates, store)):
                result: dict[str, Any] = one_run(items, keep=keep, store=overrides)
                rates.append(items / result["phases"]["upsert"])
            applied.append(applied_latency(store["GLADLY_SYNC__STORAGE__URL"]))
            log(
                f"  postgres: {items:,} items run {index + 1}/{runs}: "
                f"DuckDB {duckdb_rates[-1]:,.0f} items/s, PostgreSQL {postgres_rates[-1]:,.0f} items/s"
            )
    finally:
        cluster.stop()
    name = f"6 export {items:,} items"
    return [
        rate_row(name, "DuckDB store: parse+upsert items/s", duckdb_rates),
        rate_row(name, "PostgreSQL store: parse+COPY+merge items/s", postgres_rates),
        Row(
            name,
            "PostgreSQL / DuckDB (same run)",
            [p / d for p, d in zip(postgres_rates, duckdb_rates, strict=True)],
            "",
        ),
        *(
            Row(
                "6 Applied on PostgreSQL (Python API)",
                f"{call} p{q}",
                [run[f"{call}_p{q}"] for run in applied],
                "s",
                digits=3,
            )
            for call in ("context", "enqueue")
            for q in (50, 99)
        ),
    ]


CALLS = 100


def applied_latency(url: str) -> dict[str, float]:
    """p50/p99 seconds of ``Store.conversation_context`` (the smallest stored conversation) and of
    ``Store.enqueue_note`` on the PostgreSQL store at ``url``."""
    from gladly_sync.storage import Store

    store = Store(url=url)
    with store.db.connect(read_only=True) as con:
        conversation = con.execute(
            "SELECT conversation_id FROM conversation_items "
            "GROUP BY conversation_id ORDER BY count(*) LIMIT 1"
        ).fetchone()[0]
    timings: dict[str, list[float]] = {"context": [], "enqueue": []}
    calls = {
        "context": lambda n: store.conversation_context(conversation),
        "enqueue": lambda n: store.enqueue_note(conversation, f"bench note {n}"),
    }
    for name, call in calls.items():
        call(-1)  # warm-up: connections, the outbox table
        for n in range(CALLS):
            started = time.perf_counter()
            call(n)
            timings[name].append(time.perf_counter() - started)
    return {
        f"{name}_p{q}": statistics.quantiles(values, n=100)[q - 1]
        for name, values in timings.items()
        for q in (50, 99)
    }
