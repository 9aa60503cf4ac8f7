"""Benchmarks: does gladly-sync spend its time waiting for Gladly's rate limit, or on itself?

Run on demand (not part of the test suite): ``python -m bench [--quick] [--only sync,export,...]``.
Each benchmark starts the bundled simulator on loopback, drives the real product (the CLI as a
subprocess, or ``bench.worker`` when a phase must be timed inside the process) and returns rows of
measured figure / target / pass-fail (``bench.report``):

    sync     incremental sync at 10 req/s after C changed conversations (+ K profiles), and a
             no-change run                                                     (bench/incremental.py)
    export   one export job of 1,000,000 and 100,000 items: items/s and peak RSS (bench/export.py)
    drain    200 queued notes at a 10 POST/s limit: actions/s                  (bench/drain.py)
    enqueue  `enqueue note --json` latency while the daemon runs a big export  (bench/enqueue.py)
    erasure  a profile deletion in a 1,000,000-item store: the store rewrite's seconds per GB
                                                                               (bench/erasure.py)
    postgres export ingest items/s on PostgreSQL beside DuckDB's (information)  (bench/postgres.py)

The targets are SPEC.md's Performance section.
"""
