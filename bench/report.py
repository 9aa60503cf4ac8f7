"""Rows of the results table (measured median, target, pass/fail) and the machine they ran on."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata


@dataclass(frozen=True)
class Target:
    """``measured <op> bound``; ``op`` is ``<=``, ``<`` or ``>=``."""

    op: str
    bound: float
    label: str = ""  # how the bound was derived, e.g. "1.1 x 64 / 10 + 2 s"

    def holds(self, value: float) -> bool:
        if self.op == "<=":
            return value <= self.bound
        if self.op == "<":
            return value < self.bound
        return value >= self.bound

    def ratio(self, value: float) -> float | None:
        """measured / bound: <= 1 passes an upper bound, >= 1 passes a lower bound."""
        return value / self.bound if self.bound else None


@dataclass
class Row:
    """One figure: the median of ``values`` (one per run) against ``target`` (None = informational)."""

    benchmark: str
    metric: str
    values: list[float]
    unit: str = ""
    target: Target | None = None
    digits: int = 2
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def measured(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.measured is None:
            return False
        return self.target.holds(self.measured)

    def cells(self) -> list[str]:
        def number(value: float) -> str:
            if abs(value) >= 10_000:
                return f"{value:,.0f}"
            return f"{value:.{self.digits}f}".rstrip("0").rstrip(".") if self.digits else f"{value:.0f}"

        unit = f" {self.unit}" if self.unit else ""
        measured = "n/a" if self.measured is None else f"{number(self.measured)}{unit}"
        if self.target is None:
            target, ratio, result = "", "", "info"
        else:
            target = f"{self.target.op} {number(self.target.bound)}{unit}"
            if self.target.label:
                target += f" ({self.target.label})"
            r = self.target.ratio(self.measured) if self.measured is not None else None
            ratio = "" if r is None else f"{r:.2f}"
            result = "PASS" if self.passed else "FAIL"
        runs = ", ".join(number(v) for v in self.values) if len(self.values) > 1 else ""
        note = f"{runs} {self.note}".strip()
        return [self.benchmark, self.metric, measured, target, ratio, result, note]


HEADERS = ["benchmark", "metric", "measured (median)", "target", "ratio", "result", "runs / note"]


def failed_row(benchmark: str, error: str) -> Row:
    """A benchmark that could not run (a module not ready, a crash): one FAIL row with the reason."""
    return Row(benchmark, "did not complete", [], target=Target(">=", 1), note=error[:300])


def render_text(rows: Sequence[Row]) -> str:
    table = [HEADERS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = []
    for index, line in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_markdown(rows: Sequence[Row]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(escape(c) for c in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            kib = int(info.readline().split()[1])
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def machine() -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores ({usable} usable)",
        "load": f"{load} (1/5/15 min load average)",
        "memory": _memory_total(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "duckdb": _version("duckdb"),
        "httpx": _version("httpx"),
        "pyarrow": _version("pyarrow"),
    }
