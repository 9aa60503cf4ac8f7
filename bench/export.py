"""Benchmark 3: an export file is parsed and upserted at >= 100,000 items/s in flat memory.

Per run and size, a fresh simulator (no rate limit) and store: ``sync --full`` ingests the small
seeded history, then one bulk export job of N items over 20 conversations is created (so HTTP
requests are few) and ``bench.worker export`` runs the reconcile job (export pass + snapshot) in a
fresh process, timing its phases from inside (see ``bench/worker.py``). Sizes alternate between runs
to spread the noise.

Targets (SPEC, Performance): >= 100,000 items/s of local work, and >= 0.85 of the fastest DuckDB
upsert of the same file measured in the same run (``limit_seconds``, see ``bench/worker.py``); peak
RSS <= 400 MB for the 1,000,000-item file, the 1M peak no more than 15 % above the 100k peak; no
store hold over ~1 s. MB here is 10^6 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gladly_sync.simulator import Simulator

from bench.report import Row, Target
from bench.workspace import BenchError, Workspace

FAST = {"GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND": "1000"}
CONVERSATIONS = 20


def mb(kib: float | None) -> float:
    return (kib or 0) * 1024 / 1e6


def one_run(items: int, *, keep: bool, store: dict[str, str] | None = None) -> dict[str, Any]:
    """One export of ``items`` into a fresh store (``store``: more overrides, e.g. storage.url)."""
    overrides = {**FAST, **(store or {})}
    with (
        Simulator(seed=21, customers=3, conversations=3, history_days=2) as sim,
        Workspace(sim.base_url, name=f"export-{items}", keep=keep) as ws,
    ):
        ws.cli("sync", "--full", overrides=overrides).check()
        sim.world.create_bulk_export_job(items=items, conversations=CONVERSATIONS)
        run = ws.worker("export", overrides=overrides).check()
        result = run.json()
        result["process_wall_seconds"] = run.wall_seconds
        if result.get("items") != items:
            raise BenchError(f"the export pass wrote {result.get('items')} of {items} items")
        return result


def run(*, quick: bool, runs: int, keep: bool, log=print) -> list[Row]:
    small, large = (50_000, 500_000) if quick else (100_000, 1_000_000)
    results: dict[int, list[dict[str, Any]]] = {small: [], large: []}
    for index in range(runs):
        for items in (small, large) if index % 2 == 0 else (large, small):
            result = one_run(items, keep=keep)
            results[items].append(result)
            phases = result["phases"]
            log(
                f"  export: {items:,} items run {index + 1}/{runs}: "
                f"download {phases.get('download', 0):.1f} s, "
                f"upsert {phases.get('upsert', 0):.1f} s, local {local_seconds(result):.1f} s "
                f"({items / local_seconds(result):,.0f} items/s; DuckDB limit "
                f"{items / result['limit_seconds']:,.0f} items/s), "
                f"peak {mb(result['peak_process_kib']):.0f} MB"
            )
    rows = size_rows(large, results[large]) + size_rows(small, results[small])
    ratios = [
        big["peak_process_kib"] / little["peak_process_kib"]
        for big, little in zip(results[large], results[small], strict=True)
    ]
    rows.append(
        Row(
            f"3 export {large:,} vs {small:,}",
            "peak RSS ratio (same run index)",
            ratios,
            "",
            Target("<=", 1.15, "at most 15 % above"),
        )
    )
    return rows


def phase(result: dict[str, Any], *names: str) -> float:
    return sum(result["phases"].get(n, 0.0) for n in names)


def local_seconds(result: dict[str, Any]) -> float:
    """Local work: cutting parts (inside the download), the preparing (JSON -> typed rows, ids) left
    once the items download is done (the rest overlaps it), the upsert transactions."""
    scan_tail = max(phase(result, "items") - phase(result, "download_items"), 0.0)
    return phase(result, "cut", "upsert") + scan_tail


def rate_row(name: str, metric: str, rates: list[float], target: Target | None = None) -> Row:
    """An items-per-second figure, one rate per run, shown without decimals."""
    return Row(name, metric, rates, "/s", target, digits=0)


def size_rows(items: int, results: Sequence[dict[str, Any]]) -> list[Row]:
    name = f"3 export {items:,} items"
    rows = [
        rate_row(
            name,
            "local items/s (cut + prepare after download + upsert)",
            [items / local_seconds(r) for r in results],
            Target(">=", 100_000),
        ),
        Row(
            name,
            "local rate / DuckDB limit (same run)",
            [r["limit_seconds"] / local_seconds(r) for r in results],
            "",
            Target(">=", 0.85),
        ),
        rate_row(
            name,
            "DuckDB limit items/s (same file, one INSERT into an empty store)",
            [items / r["limit_seconds"] for r in results],
        ),
        rate_row(
            name, "parse+upsert items/s (upsert transactions)", [items / phase(r, "upsert") for r in results]
        ),
        Row(name, "upsert phase (connect + upsert + commit)", [phase(r, "upsert") for r in results], "s"),
        Row(
            name,
            "upsert phase CPU use (process CPU s / wall s; 2 cores)",
            [phase(r, "upsert_cpu") / phase(r, "upsert") for r in results],
            "",
            note="(well under 2: single-threaded stretches, or other load on the machine)",
        ),
        Row(name, "cut phase (parts cut as the body arrives)", [phase(r, "cut") for r in results], "s"),
        Row(
            name,
            "prepare parts (in-memory DuckDB: typed rows + ids; overlaps the download)",
            [phase(r, "prepare") for r in results],
            "s",
        ),
        Row(
            name,
            "prepare left after the items download",
            [max(phase(r, "items") - phase(r, "download_items"), 0.0) for r in results],
            "s",
        ),
        Row(
            name,
            "download phase (HTTP into the part cutter)",
            [phase(r, "download") for r in results],
            "s",
            note=f"({results[0]['downloaded_bytes'] / 1e6:,.0f} MB file)",
        ),
        Row(
            name,
            "snapshot publish",
            [phase(r, "snapshot") for r in results],
            "s",
            note=f"(store {results[0]['store_bytes'] / 1e6:,.0f} MB)",
        ),
        Row(name, "total reconcile job (in-process)", [r["total_seconds"] for r in results], "s"),
        rate_row(name, "total items/s incl. download", [items / r["total_seconds"] for r in results]),
        Row(
            name,
            "longest hold of the store file",
            [r["longest_hold_seconds"] for r in results],
            "s",
            Target("<=", 1.0, "SPEC: within one write batch, <= 1 s"),
            note=f"(by {results[0]['longest_hold_phase']}; {results[0]['holds_over_1s']} of "
            f"{results[0]['connections']} connections > 1 s)",
        ),
        Row(
            name,
            "peak RSS, whole process",
            [mb(r["peak_process_kib"]) for r in results],
            "MB",
            Target("<=", 400, "SPEC"),
            digits=0,
        ),
    ]
    rows += [
        Row(
            name, "peak RSS, parse/upsert phase", [mb(r["peak_upsert_kib"]) for r in results], "MB", digits=0
        ),
        Row(
            name,
            "peak RSS before the upsert (download, cut, prepare)",
            [mb(r["peak_before_upsert_kib"]) for r in results],
            "MB",
            digits=0,
        ),
        Row(name, "RSS after imports", [mb(r["baseline_rss_kib"]) for r in results], "MB", digits=0),
    ]
    return rows
