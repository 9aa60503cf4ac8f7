"""``python -m bench.worker {export,drain} --config PATH``: one product pass in a fresh process, timed
from inside, with the process's peak memory; prints one JSON document on stdout.

``export`` runs ``sync.export.reconcile_once`` (the daemon's reconcile job: the export pass, the
reference lists, the snapshot) and times its phases by wrapping, in this process only, the product
functions that make them up:

    download   GladlyClient.download_export_file   HTTP body streamed to a file
    split      sync.export.split_lines              the file cut into parts of 100k lines
    scan       upserts.export_file_conversation_ids DuckDB reads each part for its conversation ids
    upsert     the transactions that call upserts.upsert_export_items (connect + upsert + commit)
    customers  upserts.merge_export_customers
    snapshot   Database.publish_snapshot            CHECKPOINT + file copy + rename

Every connection to the store is timed too: how long the file was held (other processes, such as an
``enqueue``, wait for it), and by which phase.

Peak RSS is the kernel's high-water mark (VmHWM). It is read before the first upsert and then reset
(``/proc/self/clear_refs``), so the parse/upsert phase's own peak is known as well as the process's.

``--memory-limit`` and ``--part-lines`` are experiment knobs (what would another DuckDB memory_limit
or part size do?); the benchmark runs without them.

``drain`` runs ``sync.drain.drain_once`` and reports its in-process duration.
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

    baseline_kib = status_kib("VmRSS")
    ctx = _context(config)
    if memory_limit:  # an experiment knob: what a different DuckDB memory_limit would do
        ctx.db.memory_limit = memory_limit
    phases = Phases()
    downloaded: list[int] = []
    holds: list[tuple[float, str]] = []  # (seconds a connection held the store file, what it did)
    state = {"upserting": False, "first_upsert": True}

    download = GladlyClient.download_export_file

    def download_and_count(self: GladlyClient, job_id: str, filename: str, dest: Path) -> bool:
        found = download(self, job_id, filename, dest)
        if found:
            downloaded.append(Path(dest).stat().st_size)
        return found

    def before_upsert() -> None:
        state["upserting"] = True
        if state["first_upsert"]:
            state["first_upsert"] = False
            phases.marks["peak_before_upsert_kib"] = status_kib("VmHWM")
            phases.marks["peak_reset"] = reset_peak()
            phases.marks["rss_at_upsert_start_kib"] = status_kib("VmRSS")

    GladlyClient.download_export_file = phases.wrap("download", download_and_count)  # type: ignore[method-assign]
    split_lines = export.split_lines

    def split(source: Path, folder: Path) -> list[Path]:
        if part_lines:  # an experiment knob: parts of another size than sync.export.PART_LINES
            return split_lines(source, folder, lines_per_part=part_lines)
        return split_lines(source, folder)

    export.split_lines = phases.wrap("split", split)
    upserts.export_file_conversation_ids = phases.wrap("scan", upserts.export_file_conversation_ids)
    upserts.upsert_export_items = phases.wrap("upsert_call", upserts.upsert_export_items, before_upsert)
    upserts.merge_export_customers = phases.wrap("customers", upserts.merge_export_customers)
    ctx.db.publish_snapshot = phases.wrap("snapshot", ctx.db.publish_snapshot)

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

    phases.start()
    started = time.perf_counter()
    summary = export.reconcile_once(ctx)  # the daemon's reconcile job: export pass, lists, snapshot
    total = time.perf_counter() - started
    phases.stop()
    peak_after = status_kib("VmHWM")
    before = phases.marks.get("peak_before_upsert_kib")
    longest = max(holds, default=(0.0, "none"))
    return {
        "total_seconds": total,
        "phases": dict(phases.seconds),
        "calls": dict(phases.calls),
        "downloaded_bytes": sum(downloaded),
        "items": summary.items,
        "customers": summary.customers,
        "jobs": summary.jobs_processed,
        "requests": summary.requests,
        "longest_hold_seconds": longest[0],
        "longest_hold_phase": longest[1],
        "holds_over_1s": sum(1 for seconds, _ in holds if seconds > 1.0),
        "connections": len(holds),
        "store_bytes": ctx.db.path.stat().st_size if ctx.db.path else 0,  # PostgreSQL: no file
        "baseline_rss_kib": baseline_kib,
        "peak_before_upsert_kib": before,
        "peak_upsert_kib": peak_after if phases.marks.get("peak_reset") else None,
        "peak_process_kib": max(v for v in (before, peak_after) if v is not None) if peak_after else None,
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_at_upsert_start_kib": phases.marks.get("rss_at_upsert_start_kib"),
        "sampled_rss_peaks_kib": dict(phases.rss_peaks),
    }


def run_drain(config: str) -> dict[str, Any]:
    from gladly_sync.sync.outbox.drain import drain_once

    ctx = _context(config)
    started = time.perf_counter()
    summary = drain_once(ctx)
    return {"seconds": time.perf_counter() - started, "summary": asdict(summary)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("what", choices=("export", "drain"))
    parser.add_argument("--config", required=True)
    parser.add_argument("--memory-limit", default=None, help="export: override DuckDB's memory_limit")
    parser.add_argument("--part-lines", type=int, default=None, help="export: override the part size")
    args = parser.parse_args(argv)
    if args.what == "export":
        result = run_export(args.config, args.memory_limit, args.part_lines)
    else:
        result = run_drain(args.config)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
