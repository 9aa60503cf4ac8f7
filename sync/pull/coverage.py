"""What the store covers: the earliest instant, and known gaps (downtime longer than Gladly's
24 h events window not yet covered by an export job). Kept as ``sync_state`` streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gladly_sync.storage import upserts
from gladly_sync.storage.read import GAPS_STREAM

RECONCILE_STREAM = "reconcile"  # when the last export reconcile pass finished
COVERAGE_STREAM = "coverage"


def subtract_windows(
    gaps: Sequence[tuple[datetime, datetime]], windows: Iterable[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """What is left of ``gaps`` once ``windows`` (export jobs' ``[startAt, endAt]``) are covered."""
    left = [(start, end) for start, end in gaps if start < end]
    for w_start, w_end in windows:
        cut: list[tuple[datetime, datetime]] = []
        for start, end in left:
            if w_end <= start or w_start >= end:
                cut.append((start, end))
                continue
            if start < w_start:
                cut.append((start, w_start))
            if w_end < end:
                cut.append((w_end, end))
        left = cut
    return left


def add_gap(
    gaps: Sequence[tuple[datetime, datetime]], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """``gaps`` with ``[start, end)`` added, overlapping gaps joined, oldest first."""
    merged: list[tuple[datetime, datetime]] = []
    for g_start, g_end in sorted([*gaps, (start, end)]):
        if merged and g_start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], g_end))
        else:
            merged.append((g_start, g_end))
    return merged


def load_gaps(con: Any) -> list[tuple[datetime, datetime]]:
    """Known gaps (downtime longer than Gladly's events window, not yet covered by an export)."""
    text = upserts.load_cursor(con, GAPS_STREAM)
    if not text:
        return []
    return [(datetime.fromisoformat(start), datetime.fromisoformat(end)) for start, end in json.loads(text)]


def save_gaps(con: Any, gaps: Sequence[tuple[datetime, datetime]], at: datetime) -> None:
    value = json.dumps([[utc_iso(start), utc_iso(end)] for start, end in gaps])
    upserts.save_cursor(con, GAPS_STREAM, value, at)


def extend_coverage(con: Any, start: datetime, at: datetime) -> None:
    """Remember the earliest instant the store covers (first events poll, oldest export job)."""
    text = upserts.load_cursor(con, COVERAGE_STREAM)
    if text is None or start < datetime.fromisoformat(text):
        upserts.save_cursor(con, COVERAGE_STREAM, utc_iso(start), at)


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()

