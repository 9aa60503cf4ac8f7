"""``python -m bench [--quick] [--only sync,export,drain,enqueue,erasure,postgres] [--runs N]
[--markdown FILE]``

Runs the benchmarks (see ``bench/__init__.py``), prints progress to stderr and the results table
(median of the runs, target, measured/target ratio, PASS/FAIL) to stdout. Exit 0 when every target
holds, 1 otherwise. ``--markdown FILE`` also writes the table, the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import drain, enqueue, erasure, export, incremental, postgres
from bench.report import Row, failed_row, machine, render_markdown, render_text

BENCHMARKS: dict[str, Callable[..., list[Row]]] = {
    "sync": incremental.run,
    "export": export.run,
    "drain": drain.run,
    "enqueue": enqueue.run,
    "erasure": erasure.run,
    "postgres": postgres.run,
}
TIME_LIMIT_HINT = 600.0  # a full run should stay under 10 minutes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="one run each, smaller sizes")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per benchmark (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the table, machine and command as Markdown",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspaces (for debugging)")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if not 1 <= args.runs <= 10:
        parser.error("--runs must be between 1 and 10")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    rows: list[Row] = []
    load_at_start = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    started = time.monotonic()
    timings: dict[str, float] = {}
    for name in args.only:
        progress(f"[{time.monotonic() - started:6.1f} s] {name} ...")
        begun = time.monotonic()
        try:
            rows += BENCHMARKS[name](quick=args.quick, runs=args.runs, keep=args.keep, log=progress)
        except Exception as exc:  # a module not ready, a product run that failed: report, go on
            progress(traceback.format_exc())
            rows.append(failed_row(name, f"{type(exc).__name__}: {exc}"))
        timings[name] = time.monotonic() - begun
    elapsed = time.monotonic() - started
    info = machine()
    info["load"] = f"{load_at_start} at start, {info['load'].split(' (')[0]} at the end (1/5/15 min averages)"
    table = render_text(rows)
    print(table)
    print()
    for key, value in info.items():
        print(f"{key:>8}: {value}")
    print(f"{'command':>8}: {command}")
    print(f"{'took':>8}: {elapsed:.0f} s (" + ", ".join(f"{n} {t:.0f} s" for n, t in timings.items()) + ")")
    if elapsed > TIME_LIMIT_HINT:
        progress(f"note: the run took {elapsed:.0f} s, more than the {TIME_LIMIT_HINT:.0f} s it should")
    failed = [row for row in rows if row.passed is False]
    print(f"{'result':>8}: {len(failed)} of {sum(r.target is not None for r in rows)} targets missed")
    if args.markdown is not None:
        lines = [
            "```",
            f"$ {command}",
            "```",
            "",
            render_markdown(rows),
            "",
            *(f"- {key}: {value}" for key, value in info.items()),
            f"- took: {elapsed:.0f} s (" + ", ".join(f"{n} {t:.0f} s" for n, t in timings.items()) + ")",
        ]
        args.markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
