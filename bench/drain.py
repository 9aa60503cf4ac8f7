"""Benchmark 4: the outbox drains at >= 9 actions/s against Gladly's 10 POST/s limit.

Setup: a seeded simulator (no limit), ``sync --full`` into a fresh store. Per run: 200 notes are
queued through ``storage.Store`` (5 each on 40 conversations, so per-conversation ordering matters),
the simulator enforces 10 requests/s per method, and ``bench.worker drain`` runs ``drain_once`` in a
fresh process with ``requests_per_second: 10``. Measured: notes sent per second of the drain
(in-process) and of the whole process (start included, as a cron ``gladly-sync drain``), POSTs and
429s from the simulator's log.
"""

from __future__ import annotations

from gladly_sync.simulator import Simulator

from bench.incremental import stored_conversations
from bench.report import Row, Target
from bench.workspace import BenchError, Workspace

RATE = 10.0
FAST = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "1000"}
PACED = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": str(int(RATE))}


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    from gladly_sync.storage import Store

    notes, conversations = (50, 10) if quick else (200, 40)
    with (
        Simulator(
            seed=31, customers=conversations + 20, conversations=conversations * 2 + 10, history_days=3
        ) as sim,
        Workspace(sim.base_url, name="drain", keep=keep) as ws,
    ):
        ws.cli("sync", "--full", overrides=FAST).check()
        targets = sorted(stored_conversations(ws))[:conversations]
        if len(targets) < conversations:
            raise BenchError(f"only {len(targets)} conversations stored; need {conversations}")
        sim.rate_limit_per_second = RATE
        store = Store(ws.store)
        per_run: list[dict[str, float]] = []
        for index in range(runs):
            for n in range(notes):
                store.enqueue_note(targets[n % conversations], f"Bench note {index}-{n}: checked the order.")
            run = ws.worker("drain", overrides=PACED).check()
            result = run.json()
            records = [r for r in sim.requests if run.started <= r.timestamp <= run.finished]
            posts = [r for r in records if r.method == "POST"]
            sent = int(result["summary"]["sent"])
            if sent != notes:
                raise BenchError(f"the drain sent {sent} of {notes} notes: {result['summary']}")
            per_run.append(
                {
                    "in_process": sent / result["seconds"],
                    "with_start": sent / run.wall_seconds,
                    "seconds": result["seconds"],
                    "wall": run.wall_seconds,
                    "posts": len(posts),
                    "requests": len(records),
                    "rate_limited": sum(1 for r in records if r.status == 429),
                }
            )
            log(
                f"  drain: {notes} notes run {index + 1}/{runs}: {result['seconds']:.2f} s in-process, "
                f"{run.wall_seconds:.2f} s wall, {per_run[-1]['rate_limited']} x 429"
            )
    name = f"4 drain {notes} notes / {conversations} conversations"

    def values(key: str) -> list[float]:
        return [r[key] for r in per_run]

    return [
        Row(name, "actions/s, in-process (drain_once)", values("in_process"), "/s", Target(">=", 9.0)),
        # With --quick's 50 notes the process start weighs 4 times more: informational only.
        Row(
            name,
            "actions/s, process start included",
            values("with_start"),
            "/s",
            None if quick else Target(">=", 9.0),
        ),
        Row(
            name, "drain_once duration", values("seconds"), "s", note=f"(floor {notes / RATE:.1f} s at 10/s)"
        ),
        Row(name, "POST requests / note", [r["posts"] / notes for r in per_run], "", Target("<=", 1.0)),
        Row(name, "requests total", values("requests"), "", digits=0),
        Row(name, "429s received (simulator log)", values("rate_limited"), "", Target("<=", 0), digits=0),
    ]
