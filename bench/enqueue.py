"""Benchmark 5: ``enqueue`` stays fast while ``sync --full`` ingests an export of 150,000 items.

Setup: a seeded simulator, ``sync --full`` (no limit), then one bulk export job (150,000 items; 50,000
with ``--quick``). Idle figures first: ``IDLE_SAMPLES`` CLI enqueues (``gladly-sync enqueue note
--json``, each a new process timed from outside: the process start is in it) and ``API_IDLE``
Python API enqueues (``Store.enqueue_note`` in one long-lived process, ``bench.worker enqueue-api``).
Then ``sync --full`` runs in the background (it ingests the bulk job again) while CLI enqueues follow
each other and the API process queues a note every ``API_INTERVAL`` seconds. Samples are matched
against the sync's log to keep those that overlap the export ingest.

Targets (SPEC, Performance): CLI p99 <= 2 s and <= 2 x the idle median of the same run, none exits
4 (or at all); Python API p99 <= 50 ms.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gladly_sync.simulator import Simulator

from bench.incremental import stored_conversations
from bench.report import Row, Target
from bench.workspace import BenchError, Workspace, parse_log_lines

FAST = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "1000"}
IDLE_SAMPLES = 7
API_IDLE = 30
API_INTERVAL = 0.1  # seconds between Python API enqueues under load
CLI_PAUSE = 0.1  # seconds between CLI enqueues under load
SAMPLES_MAX = 200


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


def _cli_enqueue(ws: Workspace, conversation: str, index: int) -> tuple[float, float, int]:
    done = ws.cli("enqueue", "note", conversation, "--body", f"Bench note {index}", "--json", timeout=120)
    if done.returncode == 0:
        done.json()  # the promised {id, status, deduplicated}
    return done.started, done.wall_seconds, done.returncode


def _start_api_worker(ws: Workspace, targets: Sequence[str], stop: Path) -> subprocess.Popen:
    argv = [
        sys.executable, "-m", "bench.worker", "enqueue-api", "--config", str(ws.config),
        "--conversations", ",".join(targets), "--count", "100000",
        "--interval", str(API_INTERVAL), "--until-file", str(stop),
    ]  # fmt: skip
    return subprocess.Popen(argv, cwd=ws.folder, env=ws.env(), stdout=subprocess.PIPE, text=True)


def _under_sync(ws: Workspace, targets: Sequence[str], log) -> tuple[list, dict[str, Any], list, int]:
    """Run ``sync --full`` in the background with CLI and API enqueues beside it until it ends."""
    stop = ws.folder / "stop-enqueue-api"
    sync = ws.start_cli("sync", "--full", overrides=FAST)
    api = _start_api_worker(ws, targets, stop)
    loaded: list[tuple[float, float, int]] = []
    try:
        while sync.process.poll() is None and len(loaded) < SAMPLES_MAX:
            loaded.append(_cli_enqueue(ws, targets[len(loaded) % len(targets)], len(loaded)))
            time.sleep(CLI_PAUSE)
    finally:
        stop.touch()
        out, _ = api.communicate(timeout=120)
        sync_exit = sync.stop(grace=600)
    events = parse_log_lines(sync.log_text())
    log(f"  enqueue: sync --full exit {sync_exit}, {len(loaded)} CLI samples")
    return loaded, json.loads(out), events, sync_exit


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    bulk_items = 50_000 if quick else 150_000
    with (
        Simulator(seed=41, customers=80, conversations=120, history_days=3) as sim,
        Workspace(sim.base_url, name="enqueue", keep=keep) as ws,
    ):
        ws.cli("sync", "--full", overrides=FAST).check()
        targets = sorted(stored_conversations(ws))[:40]
        idle = [_cli_enqueue(ws, targets[i % len(targets)], -1 - i) for i in range(IDLE_SAMPLES)]
        api_idle = ws.worker(
            "enqueue-api", "--conversations", ",".join(targets), "--count", str(API_IDLE),
            "--interval", "0.05",
        ).check().json()
        log(f"  enqueue: idle CLI p50 {percentile([s[1] for s in idle], 50):.2f} s")
        sim.world.create_bulk_export_job(items=bulk_items, conversations=20)
        loaded, api, events, sync_exit = _under_sync(ws, targets, log)
    return _rows(bulk_items, idle, api_idle, loaded, api, events, sync_exit, log)


def _rows(bulk_items, idle, api_idle, loaded, api, events, sync_exit, log) -> list[Row]:
    ingest = windows(events, "export_job_started", "export_job_processed")

    def during(start: float, seconds: float) -> bool:
        return any(s < start + seconds and start < e for s, e in ingest)

    cli_ingest = [s[1] for s in loaded if during(s[0], s[1])]
    api_ingest = [s["seconds"] for s in api["samples"] if during(s["at"], s["seconds"])]
    failures = [s for s in loaded if s[2] != 0]
    log(
        "  enqueue: CLI latencies under sync --full (s): "
        + " ".join(f"{s[1]:.2f}{'*' if during(s[0], s[1]) else ''}" for s in loaded)
        + "  (* = during the export ingest)"
    )
    if not cli_ingest:
        raise BenchError("no CLI enqueue overlapped the export ingest")
    idle_median = percentile([s[1] for s in idle], 50)
    name = f"5 enqueue during `sync --full` ({bulk_items:,}-item export)"
    api_name = f"5 enqueue, Python API, during `sync --full` ({bulk_items:,} items)"
    cli_p99 = percentile(cli_ingest, 99)
    return [
        Row(name, f"CLI p99 latency, {len(cli_ingest)} samples during the ingest", [cli_p99], "s",
            Target("<=", 2.0)),
        Row(name, "CLI p99 / idle median (same run)", [cli_p99 / idle_median], "", Target("<=", 2.0)),
        Row(name, "CLI p50 latency during the ingest", [percentile(cli_ingest, 50)], "s"),
        Row(name, "CLI idle median (process start included)", [idle_median], "s"),
        Row(name, "CLI enqueues that failed (exit != 0; exit 4 = locked)", [len(failures)], "",
            Target("<=", 0), digits=0,
            note=f"(exit codes {sorted({s[2] for s in failures})})" if failures else ""),
        Row(api_name, f"API p99 latency, {len(api_ingest)} samples during the ingest",
            [percentile(api_ingest, 99)] if api_ingest else [], "s", Target("<=", 0.05)),
        Row(api_name, "API p50 latency during the ingest",
            [percentile(api_ingest, 50)] if api_ingest else [], "s"),
        Row(api_name, "API idle median", [percentile([s["seconds"] for s in api_idle["samples"]], 50)], "s"),
        Row(api_name, "API enqueues that raised", [len(api["errors"])], "", Target("<=", 0), digits=0,
            note=f"({api['errors'][0]['error']})" if api["errors"] else ""),
        Row(name, "export ingest inside sync --full", [sum(e - s for s, e in ingest if e != math.inf)], "s",
            note=f"(sync exit {sync_exit})"),
    ]  # fmt: skip
