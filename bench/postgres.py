"""Benchmark 6 (information, no target): export ingest on PostgreSQL beside DuckDB's, in one run.

Per run, the same bulk export job (N items over 20 conversations) is ingested by the reconcile job
into a fresh DuckDB store and into a fresh database of a throwaway local PostgreSQL 15 cluster
(``tests/pg.py``: Unix socket, ``fsync`` off). On PostgreSQL, DuckDB still parses the file; its rows
are COPYed into a temp table and merged with ``INSERT ... ON CONFLICT`` (``storage/postgres_items.py``).
"""

from __future__ import annotations

from typing import Any

from bench.export import one_run, rate_row
from bench.report import Row


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    from tests.pg import PostgresCluster

    items = 50_000 if quick else 100_000
    duckdb_rates: list[float] = []
    postgres_rates: list[float] = []
    cluster = PostgresCluster().start()
    try:
        for index in range(runs):
            store = {"GLADLY_SYNC__STORAGE__URL": cluster.url(cluster.create_database())}
            for rates, overrides in ((duckdb_rates, None), (postgres_rates, store)):
                result: dict[str, Any] = one_run(items, keep=keep, store=overrides)
                rates.append(items / result["phases"]["upsert"])
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
    ]
