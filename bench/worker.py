"""``python -m bench.worker {export,drain,enqueue-api} --config PATH``: one product pass in a fresh
process, timed from inside, with the process's peak memory; prints one JSON document on stdout.

``export`` runs ``sync.pull.export.reconcile_once`` (the daemon's reconcile job: the export pass,
the reference lists, the snapshot) and times its phases by wrapping, in this process only, the
product functions that make them up:

    download   GladlyClient.download_export_file   HTTP body streamed into the part cutter
    cut        PartCutter.write                     the body cut into parts of 100k lines (inside download)
    items      export._download_items               the items download + the preparing it overlaps
    prepare    export.prepare_items_part            an in-memory DuckDB turns a part into typed rows
                                                    (Parquet) and reads its conversation ids (worker
                                                    thread, overlapping the download)
    upsert     the transactions that call upserts.upsert_export_items (connect + upsert + commit)
    customers  upserts.merge_export_customers
    snapshot   Database.publish_snapshot            CHECKPOINT + file copy + rename

Local work is ``cut`` + the preparing left after the items download (``items`` - items
``download``) + ``upsert``. Beside it, the same run measures the DuckDB limit: the same file
downloaded again to disk and inserted, transformed by the same SQL, into an empty store in one plain INSERT
(``limit_seconds``): the fastest upsert DuckDB can do of that file on this machine, now.

Every connection to the store is timed too: how long the file was held (other processes, such as an
``enqueue``, wait for it), and by which phase.

Peak RSS is the kernel's high-water mark (VmHWM). It is read before the first upsert and then reset
(``/proc/self/clear_refs``), so the parse/upsert phase's own peak is known as well as the process's.

``--memory-limit`` and ``--part-lines`` are experiment knobs (what would another DuckDB memory_limit
or part size do?); the benchmark runs without them.

``drain`` runs ``sync.outbox.drain.drain_once`` and reports its in-process duration.

``enqueue-api`` queues notes through the Python API (``Store.enqueue_note``) every ``--interval``
seconds, ``--count`` of them or until ``--until-file`` exists, and prints each one's start and
latency (the process start is not in them: that is the CLI's cost, measured apart).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")


def status_kib(field: str) -> int | None:
    """``VmHWM`` / ``VmRSS`` of this process in KiB (Linux), else None."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class Phases:
    """Seconds and calls per phase, memory marks, and the highest RSS sampled during each phase."""

    SAMPLE_EVERY = 0.02  # seconds

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.marks: dict[str, Any] = {}
        self.rss_peaks: dict[str, int] = defaultdict(int)
        self.current = "other"
        self.last: str | None = None  # the last wrapped function called (for labelling connections)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join(timeout=1)

    def _sample(self) -> None:
        while not self._stop.wait(self.SAMPLE_EVERY):
            rss = status_kib("VmRSS") or 0
            phase = self.current
            if rss > self.rss_peaks[phase]:
                self.rss_peaks[phase] = rss

    def wrap(self, name: str, function: Callable[..., Any], before: Callable[[], None] | None = None):
        def timed(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                before()
            started = time.perf_counter()
            outer, self.current, self.last = self.current, name, name
            try:
                return function(*args, **kwargs)
            finally:
                self.current = outer
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return timed

    def count(self, name: str, function: Callable[..., Any]):
        """Time ``function`` without labelling the phase (it runs inside another, or in a thread)."""
        lock = threading.Lock()

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    self.seconds[name] += time.perf_counter() - started
                    self.calls[name] += 1

        return timed


def _context(config: str) -> Any:
    from gladly_sync.sync.context import Context
    from gladly_sync.sync.logs import configure_logging, register_credentials

    from gladly_sync.config import load_settings

    settings = load_settings(config)
    register_credentials(settings.gladly.email, settings.gladly.api_token)
    configure_logging(settings.logging.level, settings.logging.format)
    return Context.from_settings(settings)


def run_export(config: str, memory_limit: str | None = None, part_lines: int | None = None) -> dict[str, Any]:
    import gladly_sync.storage.upserts as upserts
    import gladly_sync.sync.pull.export as export
    from gladly_sync.sync.client import GladlyClient
    from gladly_sync.sync.pull.parts import PartCutter

    baseline_kib = status_kib("VmRSS")
    ctx = _context(config)
    if memory_limit:  # an experiment knob: what a different DuckDB memory_limit would do
        ctx.db.memory_limit = memory_limit
    if part_lines:  # an experiment knob: parts of another size than sync.pull.parts.PART_LINES
        export.PART_LINES = part_lines
    phases = Phases()
    holds: list[tuple[float, str]] = []  # (seconds a connection held the store file, what it did)
    state = {"upserting": False, "first_upsert": True, "bytes": 0}

    write = PartCutter.write

    def write_and_count(self: PartCutter, chunk: bytes) -> None:
        state["bytes"] += len(chunk)
        write(self, chunk)

    def before_upsert() -> None:
        state["upserting"] = True
        if state["first_upsert"]:
            state["first_upsert"] = False
            phases.marks["peak_before_upsert_kib"] = status_kib("VmHWM")
            phases.marks["peak_reset"] = reset_peak()
            phases.marks["rss_at_upsert_start_kib"] = status_kib("VmRSS")

    download = GladlyClient.download_export_file

    def download_timed(self: GladlyClient, job_id: str, filename: str, sink: Any) -> bool:
        started = time.perf_counter()
        try:
            return download(self, job_id, filename, sink)
        finally:
            key = "download_items" if filename == export.ITEMS_FILE else "download_other"
            phases.seconds[key] += time.perf_counter() - started

    GladlyClient.download_export_file = phases.wrap("download", download_timed)  # type: ignore[method-assign]
    PartCutter.write = phases.count("cut", write_and_count)  # type: ignore[method-assign]
    export._download_items = phases.wrap("items", export._download_items)
    export.prepare_items_part = phases.count("prepare", export.prepare_items_part)
    upserts.upsert_export_items = phases.wrap("upsert_call", upserts.upsert_export_items, before_upsert)
    upserts.merge_export_customers = phases.wrap("customers", upserts.merge_export_customers)
    ctx.db.publish_snapshot = phases.wrap("snapshot", ctx.db.publish_snapshot)
    _time_connections(ctx, phases, holds, state)

    phases.start()
    started = time.perf_counter()
    summary = export.reconcile_once(ctx)  # the daemon's reconcile job: export pass, lists, snapshot
    total = time.perf_counter() - started
    phases.stop()
    peak_after = status_kib("VmHWM")
    before = phases.marks.get("peak_before_upsert_kib")
    longest = max(holds, default=(0.0, "none"))
    # DuckDB's limit; a PostgreSQL run is compared with the DuckDB run beside it (bench/postgres.py)
    on_duckdb = ctx.db.path is not None
    limit = duckdb_limit(ctx, GladlyClient, download, summary.job_ids) if on_duckdb else {}
    return {
        "total_seconds": total,
        "phases": dict(phases.seconds),
        "calls": dict(phases.calls),
        "downloaded_bytes": state["bytes"],
        "items": summary.items,
        "customers": summary.customers,
        "jobs": summary.jobs_processed,
        "requests": summary.requests,
        "longest_hold_seconds": longest[0],
        "longest_hold_phase": longest[1],
        "holds_over_1s": sum(1 for seconds, _ in holds if seconds > 1.0),
        "connections": len(holds),
        "store_bytes": ctx.db.path.stat().st_size if on_duckdb else None,
        "baseline_rss_kib": baseline_kib,
        "peak_before_upsert_kib": before,
        "peak_upsert_kib": peak_after if phases.marks.get("peak_reset") else None,
        "peak_process_kib": max(v for v in (before, peak_after) if v is not None) if peak_after else None,
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_at_upsert_start_kib": phases.marks.get("rss_at_upsert_start_kib"),
        "sampled_rss_peaks_kib": dict(phases.rss_peaks),
        **limit,
    }


def _time_connections(
    ctx: Any, phases: Phases, holds: list[tuple[float, str]], state: dict[str, Any]
) -> None:
    """Time every connection (how long the store file was held, by which phase) and each transaction
    that upserted an export part."""
    connect, transaction = ctx.db.connect, ctx.db.transaction

    @contextmanager
    def timed_connect(read_only: bool = False) -> Iterator[Any]:
        started = time.perf_counter()
        phases.last = None
        with connect(read_only) as con:
            yield con
        holds.append((time.perf_counter() - started, phases.last or phases.current))

    @contextmanager
    def timed_transaction() -> Iterator[Any]:
        started, cpu = time.perf_counter(), time.process_time()
        state["upserting"] = False
        with transaction() as con:
            yield con
        if state["upserting"]:
            phases.seconds["upsert"] += time.perf_counter() - started
            phases.seconds["upsert_cpu"] += time.process_time() - cpu  # all threads of this process
            phases.calls["upsert"] += 1
        state["upserting"] = False

    ctx.db.connect, ctx.db.transaction = timed_connect, timed_transaction


class _FileSink:
    """A download sink writing the body to one file (the DuckDB-limit measurement's input)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle: Any = None

    def restart(self, content_type: str) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle = self.path.open("wb")

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)


def duckdb_limit(ctx: Any, client_class: Any, download: Any, job_ids: list[str]) -> dict[str, Any]:
    """The fastest DuckDB upsert of the same file, measured now: the last job's items file inserted,
    through the same transform, into an empty store with the product's settings, in one INSERT."""
    import tempfile

    from gladly_sync.storage.database import Database
    from gladly_sync.storage.rows import ITEM_COLUMNS, items_select_sql

    if not job_ids:
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-limit-", dir=ctx.db.path.parent) as tmp:
        source = Path(tmp) / "items.jsonl"
        sink = _FileSink(source)
        with ctx.client_factory() as client:
            download(client, job_ids[-1], "conversation_items.jsonl", sink)
        sink.handle.close()
        db = Database(Path(tmp) / "limit.duckdb", memory_limit=ctx.db.memory_limit)
        relation = f"(SELECT json AS raw, 0::BIGINT AS ord FROM read_ndjson_objects('{source}'))"
        with db.transaction() as con:  # the schema is created here, outside the timing
            pass
        started = time.perf_counter()
        with db.transaction() as con:
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET write_buffer_row_group_count = 1")
            columns = ", ".join(c for c in ITEM_COLUMNS if c != "content")
            count = con.execute(
                f"INSERT INTO conversation_items ({columns}) "
                f"SELECT {columns} FROM ({items_select_sql(relation)})"
            ).fetchall()[0][0]
        seconds = time.perf_counter() - started
    return {"limit_seconds": seconds, "limit_items": count}


def run_drain(config: str) -> dict[str, Any]:
    from gladly_sync.sync.outbox.drain import drain_once

    ctx = _context(config)
    started = time.perf_counter()
    summary = drain_once(ctx)
    return {"seconds": time.perf_counter() - started, "summary": asdict(summary)}


def run_enqueue_api(
    config: str, conversations: list[str], count: int, interval: float, until_file: str | None
) -> dict[str, Any]:
    from gladly_sync import Store

    store = Store.from_config(config)
    samples: list[dict[str, Any]] = []
    index = 0
    while index < count and not (until_file and Path(until_file).exists()):
        started_at, started = time.time(), time.perf_counter()
        try:
            conversation = conversations[index % len(conversations)]
            store.enqueue_note(conversation, f"API bench note {index} {started_at}")
            ok = True
        except Exception as exc:  # the figure to report: which error, how often
            ok = False
            samples.append({"error": f"{type(exc).__name__}: {exc}"[:200]})
        samples.append({"at": started_at, "seconds": time.perf_counter() - started, "ok": ok})
        index += 1
        time.sleep(interval)
    return {"samples": [s for s in samples if "seconds" in s], "errors": [s for s in samples if "error" in s]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("what", choices=("export", "drain", "enqueue-api"))
    parser.add_argument("--config", required=True)
    parser.add_argument("--memory-limit", default=None, help="export: override DuckDB's memory_limit")
    parser.add_argument("--part-lines", type=int, default=None, help="export: override the part size")
    parser.add_argument("--conversations", default="", help="enqueue-api: comma-separated ids")
    parser.add_argument("--count", type=int, default=20, help="enqueue-api: at most this many notes")
    parser.add_argument("--interval", type=float, default=0.2, help="enqueue-api: seconds between notes")
    parser.add_argument("--until-file", default=None, help="enqueue-api: stop once this file exists")
    args = parser.parse_args(argv)
    if args.what == "export":
        result = run_export(args.config, args.memory_limit, args.part_lines)
    elif args.what == "enqueue-api":
        ids = [c for c in args.conversations.split(",") if c]
        result = run_enqueue_api(args.config, ids, args.count, args.interval, args.until_file)
    else:
        result = run_drain(args.config)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
