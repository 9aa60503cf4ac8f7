"""Export files as parts: cut while they download, scanned off the store, bad lines set aside.

An export file (``conversation_items.jsonl``: up to millions of lines) is never written whole nor
read twice in Python. :class:`PartCutter` is the download's sink: it cuts the HTTP body into part
files of ``PART_LINES`` lines as the bytes arrive, refuses a body that is not ndjson at all (an HTML
page: the job fails naming the job, the file and what came back), and hands each finished part to a
worker thread while the download goes on. There :func:`prepare_items_part` parses the part once, on
an in-memory DuckDB (never the store): the items SQL turns it into typed rows in a Parquet file, and
its conversation ids are collected. The store is then held per part only to merge typed rows.

A line that is not valid JSON is skipped and recorded (:class:`SkippedLine`: file, line number,
reason); the part is rewritten with that line blank (DuckDB skips blank lines), so the rest of the
file is stored. Line numbers count from 1 over the whole file: part ``n`` starts after
``n * PART_LINES`` lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
from gladly_sync.storage import upserts

from gladly_sync.errors import MalformedResponse

__all__ = ["PART_LINES", "PartCutter", "SkippedLine", "customer_chunks", "prepare_items_part"]

PART_LINES = 100_000
CUSTOMER_CHUNK = 5_000
SNIPPET = 80  # characters of an unexpected body quoted in the error
_NOT_NDJSON = re.compile(rb"^\s*[^\s{]")  # an ndjson export line is an object: it opens with "{"


@dataclass(frozen=True)
class SkippedLine:
    """One export file line set aside: not valid JSON, or not the object the file holds."""

    file: str
    line: int
    reason: str


class PartCutter:
    """The download sink: cuts the body into parts of ``lines_per_part`` lines inside ``folder``.

    ``on_part(path, index)`` is called for each finished part (the last one at ``finish()``).
    Blank lines count toward a part's size and stay in it, so line numbers stay true.
    """

    def __init__(
        self,
        job_id: str,
        filename: str,
        folder: Path,
        *,
        lines_per_part: int = PART_LINES,
        on_part: Callable[[Path, int], None] | None = None,
    ):
        self.job_id, self.filename, self.folder = job_id, filename, folder
        self.lines_per_part = lines_per_part
        self.on_part = on_part
        self.parts: list[Path] = []
        self.attempt = 0
        self._out: BinaryIO | None = None
        self._count = 0
        self._content_type = ""
        self._last = b"\n"
        self._checked = False

    def restart(self, content_type: str) -> None:
        """A new attempt: parts of an earlier one are removed (their names carry the attempt)."""
        self._close()
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.parts, self._count, self._last, self._checked = [], 0, b"\n", False
        self._content_type = content_type
        self.attempt += 1

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if not self._checked:
            self._check_ndjson(chunk)
        self._last = chunk[-1:]
        while chunk:
            if self._out is None:
                self._open_part()
            assert self._out is not None
            room = self.lines_per_part - self._count
            lines = chunk.count(b"\n")
            if lines < room:
                self._out.write(chunk)
                self._count += lines
                return
            rest = chunk.split(b"\n", room)[-1]  # C speed: the bytes after the room-th newline
            self._out.write(memoryview(chunk)[: len(chunk) - len(rest)])
            self._count += room
            self._finish_part()
            chunk = rest

    def finish(self) -> list[Path]:
        """Close the last part (ending its last line) and return every part, in order."""
        if self._out is not None:
            if self._last != b"\n":
                self._out.write(b"\n")  # the last line had no newline
            self._finish_part()
        return list(self.parts)

    def _check_ndjson(self, chunk: bytes) -> None:
        """The first bytes that are not blank must open a JSON object, else this is not an export file."""
        if not chunk.strip():
            return
        self._checked = True
        if "html" in self._content_type.lower() or _NOT_NDJSON.match(chunk):
            snippet = " ".join(chunk[:SNIPPET * 4].decode("utf-8", "replace").split())[:SNIPPET]
            raise MalformedResponse(
                f"export job {self.job_id}: {self.filename} is not ndjson: Gladly sent "
                f"{self._content_type or 'no Content-Type'} starting {snippet!r}"
            )

    def _open_part(self) -> None:
        stem = Path(self.filename).stem
        path = self.folder / f"{stem}.a{self.attempt}.part{len(self.parts):05d}.jsonl"
        self.parts.append(path)
        self._out = path.open("wb")
        self._count = 0

    def _finish_part(self) -> None:
        self._close()
        if self.on_part is not None:
            self.on_part(self.parts[-1], len(self.parts) - 1)

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """An export line's object, or why it cannot be used. A blank line is neither (it is skipped)."""
    if not line.strip():
        return None, None
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, f"not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"not a JSON object: {type(value).__name__}"
    return value, None


def blank_bad_lines(part: Path, filename: str, first_line: int) -> list[SkippedLine]:
    """Rewrite ``part`` with every unusable line blank; the lines set aside, numbered in the file."""
    skipped: list[SkippedLine] = []
    cleaned = part.with_suffix(".clean")
    with part.open("rb") as reader, cleaned.open("wb") as writer:
        for number, line in enumerate(reader, first_line):
            problem = parse_line(line)[1]
            if problem is None:
                writer.write(line)
            else:
                skipped.append(SkippedLine(filename, number, problem[:200]))
                writer.write(b"\n")
    cleaned.replace(part)
    return skipped


def prepare_items_part(
    con: duckdb.DuckDBPyConnection, part: Path, first_line: int, *, job_id: str, filename: str
) -> tuple[Path, list[str], list[SkippedLine]]:
    """Transform an items part into a Parquet file beside it with ``con`` (an in-memory DuckDB, not
    the store: :func:`storage.upserts.prepare_export_items`) and remove the ndjson. Returns the
    Parquet file, the part's distinct conversation ids (first seen first) and its bad lines: when
    DuckDB refuses the part, they are found, blanked and the part read again. ``first_line`` is the
    file's line number of the part's first line."""
    prepared = part.with_suffix(".parquet")
    skipped: list[SkippedLine] = []
    try:
        ids = upserts.prepare_export_items(con, part, prepared)
    except duckdb.InvalidInputException:
        skipped = blank_bad_lines(part, filename, first_line)
        try:
            ids = upserts.prepare_export_items(con, part, prepared)
        except duckdb.InvalidInputException as exc:
            raise MalformedResponse(
                f"export job {job_id}: {filename} from line {first_line} cannot be read ({str(exc)[:300]})"
            ) from exc
    part.unlink()
    return prepared, ids, skipped


def customer_chunks(
    part: Path, first_line: int, filename: str, skipped: list[SkippedLine]
) -> Iterator[list[dict[str, Any]]]:
    """The customer objects of one part file, ``CUSTOMER_CHUNK`` at a time, read line by line; lines
    that are not a customer object with an id are appended to ``skipped``."""
    chunk: list[dict[str, Any]] = []
    with part.open("rb") as lines:
        for number, line in enumerate(lines, first_line):
            obj, problem = parse_line(line)
            if obj is not None and not isinstance(obj.get("id"), str):
                obj, problem = None, "not a customer object with an id"
            if obj is None:
                if problem is not None:
                    skipped.append(SkippedLine(filename, number, problem[:200]))
                continue
            chunk.append(obj)
            if len(chunk) >= CUSTOMER_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
