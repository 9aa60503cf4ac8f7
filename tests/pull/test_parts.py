"""Export files as parts: cut while downloading, bad lines set aside, conversation ids scanned off the
store."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from gladly_sync.sync.pull.parts import (
    PartCutter,
    SkippedLine,
    customer_chunks,
    parse_line,
    prepare_items_part,
)

from gladly_sync.errors import MalformedResponse

ITEMS = "conversation_items.jsonl"


def _feed(
    cutter: PartCutter, body: bytes, chunk: int, content_type: str = "application/x-ndjson"
) -> list[Path]:
    cutter.restart(content_type)
    for start in range(0, len(body), chunk):
        cutter.write(body[start : start + chunk])
    return cutter.finish()


class TestPartCutter:
    @pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 20])
    def test_parts_hold_whole_lines(self, tmp_path, chunk):
        """Parts hold at most N lines each, every line whole, whatever the chunks the body arrives in."""
        finished: list[int] = []
        cutter = PartCutter(
            "j1", ITEMS, tmp_path, lines_per_part=3, on_part=lambda path, i: finished.append(i)
        )
        parts = _feed(cutter, b'{"a":1}\n{"a":2}\n{"a":3}\n{"a":4}', chunk)
        assert [p.read_bytes() for p in parts] == [b'{"a":1}\n{"a":2}\n{"a":3}\n', b'{"a":4}\n']
        assert finished == [0, 1]

    def test_an_empty_body_has_no_parts(self, tmp_path):
        """An empty file gives no part."""
        assert _feed(PartCutter("j1", ITEMS, tmp_path), b"", 10) == []

    def test_a_restart_drops_the_earlier_attempt(self, tmp_path):
        """A download that starts again leaves only the new attempt's parts."""
        cutter = PartCutter("j1", ITEMS, tmp_path, lines_per_part=1)
        cutter.restart("application/x-ndjson")
        cutter.write(b'{"a":1}\n{"a":')
        parts = _feed(cutter, b'{"b":1}\n', 100)
        assert [p.read_bytes() for p in parts] == [b'{"b":1}\n']
        assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in parts]

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("text/html; charset=utf-8", b"<!DOCTYPE html>\n<html><body>Service Unavailable</body></html>"),
            ("application/x-ndjson", b"\n  <html><body>Maintenance</body></html>"),
            ("application/json", b'[{"id": "i1"}]'),
        ],
    )
    def test_a_body_that_is_not_ndjson_names_the_job_the_file_and_what_came(
        self, tmp_path, content_type, body
    ):
        """An HTML page (or anything not opening a JSON object) fails, naming job, file and body."""
        with pytest.raises(MalformedResponse) as caught:
            _feed(PartCutter("job-7", ITEMS, tmp_path), body, 1 << 20, content_type)
        message = str(caught.value)
        assert "job-7" in message and ITEMS in message and content_type in message
        assert body.strip()[:10].decode() in message


class TestBadLines:
    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            (b'{"id": "i1"}\n', None),
            (b"\n", None),
            (b'{"id": "i1"\n', "not valid JSON"),
            (b'{"id": NaN}\n', "not valid JSON"),
            (b"\xff\xfe\n", "not valid JSON"),
            (b"[1, 2]\n", "not a JSON object"),
        ],
    )
    def test_a_line_is_an_object_or_says_why_not(self, line, problem):
        """A line is usable when it is one JSON object; otherwise the reason names what it is."""
        reason = parse_line(line)[1]
        assert (reason is None) if problem is None else (reason or "").startswith(problem)

    def test_items_part_with_a_bad_line_is_prepared_without_it(self, tmp_path):
        """DuckDB refuses the part: the bad line is blanked and recorded with its number in the file,
        and the other lines become typed rows (off the store) with their conversation ids."""
        part = tmp_path / "p.jsonl"
        lines = [
            json.dumps({"id": "i1", "conversationId": "c2", "timestamp": "2024-04-01T10:00:00"}),
            '{"id": "i2", "conversationId": ',
            json.dumps({"id": "i3", "conversationId": "c1", "timestamp": "2024-04-01T11:00:00Z"}),
            json.dumps({"id": "i4", "conversationId": "c2", "timestamp": "2024-04-01T12:00:00Z"}),
        ]
        part.write_text("\n".join(lines) + "\n")
        with duckdb.connect() as con:
            prepared, ids, skipped = prepare_items_part(con, part, 200_001, job_id="j1", filename=ITEMS)
            rows = con.execute(
                f"SELECT id, conversation_id, epoch(timestamp) FROM read_parquet('{prepared}') ORDER BY ord"
            ).fetchall()
        assert ids == ["c2", "c1"]
        assert rows == [("i1", "c2", 1711965600.0), ("i3", "c1", 1711969200.0), ("i4", "c2", 1711972800.0)]
        assert [(s.file, s.line) for s in skipped] == [(ITEMS, 200_002)]
        assert skipped[0].reason.startswith("not valid JSON")
        assert not part.exists()

    def test_customer_lines_that_are_not_customers_are_recorded(self, tmp_path):
        """A customers line that is not JSON, or has no id, is skipped and recorded; the rest read."""
        part = tmp_path / "c.jsonl"
        part.write_text('{"id": "p1"}\nnot json\n{"name": "no id"}\n\n{"id": "p2"}\n')
        skipped: list[SkippedLine] = []
        chunks = list(customer_chunks(part, 1, "customers.jsonl", skipped))
        assert [[o["id"] for o in chunk] for chunk in chunks] == [["p1", "p2"]]
        assert [(s.line, s.reason.split(":")[0]) for s in skipped] == [
            (2, "not valid JSON"),
            (3, "not a customer object with an id"),
        ]
