"""Export jobs: listing and retention, file contents as of download time, streamed bulk files."""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from gladly_sync.simulator import Simulator
from gladly_sync.simulator.timestamps import parse_timestamp

FILES = ["agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl"]


def lines(client: httpx.Client, job_id: str, filename: str) -> list[dict[str, Any]]:
    response = client.get(f"/export/jobs/{job_id}/files/{filename}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.fixture
def long_sim(clock) -> Iterator[Simulator]:
    with Simulator(seed=3, customers=10, conversations=30, history_days=20, clock=clock) as sim:
        yield sim


class TestJobs:
    def test_daily_completed_jobs_within_fourteen_days(self, clock, long_sim: Simulator,
                                                       make_client) -> None:
        """Only jobs updated in the last 14 days are listed, all COMPLETED daily windows."""
        jobs = make_client(long_sim).get("/export/jobs").json()
        assert jobs and all(j["status"] == "COMPLETED" and j["files"] == FILES for j in jobs)
        assert all(parse_timestamp(j["updatedAt"]) >= clock.now - timedelta(days=14) for j in jobs)
        spans = {parse_timestamp(j["parameters"]["endAt"]) - parse_timestamp(j["parameters"]["startAt"])
                 for j in jobs}
        assert spans == {timedelta(days=1)}
        assert len(long_sim.world.export_jobs()) > len(jobs)

    def test_expired_job_is_404(self, clock, long_sim: Simulator, make_client) -> None:
        """A job older than 14 days cannot be fetched, nor its files."""
        oldest = long_sim.world.export_jobs()[0]
        http = make_client(long_sim)
        assert http.get(f"/export/jobs/{oldest['id']}").status_code == 404
        assert http.get(f"/export/jobs/{oldest['id']}/files/agents.jsonl").status_code == 404

    @pytest.mark.parametrize(("params", "expected"), [
        ({"status": "COMPLETED"}, "all"),
        ({"status": "FAILED"}, "none"),
        ({"startAt": "{now-3d}"}, "recent"),
        ({"endAt": "{now-3d}"}, "older"),
    ])
    def test_filters_on_status_and_updated_at(self, clock, long_sim: Simulator, make_client,
                                              params: dict[str, str], expected: str) -> None:
        """status filters by status, startAt/endAt by the job's updatedAt."""
        cut = clock.now - timedelta(days=3)
        query = {k: v.replace("{now-3d}", cut.isoformat()) for k, v in params.items()}
        http = make_client(long_sim)
        listed = http.get("/export/jobs").json()
        found = http.get("/export/jobs", params=query).json()
        updated = {j["id"]: parse_timestamp(j["updatedAt"]) for j in listed}
        wanted = {"all": set(updated), "none": set(),
                  "recent": {i for i, u in updated.items() if u >= cut},
                  "older": {i for i, u in updated.items() if u <= cut}}[expected]
        assert {j["id"] for j in found} == wanted

    def test_bad_status_is_400(self, client: httpx.Client) -> None:
        """An unknown status is refused."""
        assert client.get("/export/jobs", params={"status": "DONE"}).status_code == 400


class TestFiles:
    def test_items_file_holds_the_window_and_customers_are_flat(self, clock, long_sim: Simulator,
                                                                make_client) -> None:
        """Items lie in [startAt, endAt); customers.jsonl has flat strings and no attributes."""
        http = make_client(long_sim)
        # the newest job's window may hold no activity (it depends on the time of day): check every
        # job's window, and the flat customers file of the newest job that has items
        seen = []
        for job in sorted(http.get("/export/jobs").json(), key=lambda j: j["updatedAt"], reverse=True):
            start, end = (parse_timestamp(job["parameters"][k]) for k in ("startAt", "endAt"))
            items = lines(http, job["id"], "conversation_items.jsonl")
            assert all(start <= parse_timestamp(i["timestamp"]) < end for i in items)
            if items and not seen:
                seen = items
                customers = lines(http, job["id"], "customers.jsonl")
        items = seen
        assert items, "no export job holds any item"
        assert {c["id"] for c in customers} == {i["customerId"] for i in items}
        for row in customers:
            assert set(row) <= {"id", "name", "address", "emailAddresses", "phoneNumbers",
                                "externalCustomerId", "externalCustomerIds"}
            assert all(isinstance(e, str) for e in row["emailAddresses"] + row["phoneNumbers"])
        assert lines(http, job["id"], "agents.jsonl") == [
            {k: a[k] for k in ("id", "name", "emailAddress")} for a in long_sim.world.agents.values()]
        assert lines(http, job["id"], "topics.jsonl") == list(long_sim.world.topics.values())

    def test_missing_file_is_404(self, sim: Simulator, client: httpx.Client) -> None:
        """A file name the job does not have answers 404."""
        job = client.get("/export/jobs").json()[0]
        assert client.get(f"/export/jobs/{job['id']}/files/tasks.jsonl").status_code == 404

    def test_later_job_shows_a_redaction(self, clock, clocked_sim: Simulator,
                                         clocked_client: httpx.Client, new_conversation) -> None:
        """Rows reflect the item at download time: a redaction shows in a later job."""
        world = clocked_sim.world
        customer_id = world.new_customer(email="exp@example.com")
        conversation_id = world.new_conversation(customer_id, world.inbox_id("Email Support"),
                                                 text="my card number is 4111...")
        item_id = world.items(conversation_id)[0]["id"]
        clock.advance(minutes=1)
        job = world.create_export_job(clock.now - timedelta(hours=1), clock.now)
        before = {i["id"]: i for i in lines(clocked_client, job["id"], "conversation_items.jsonl")}
        assert before[item_id]["content"]["content"] == "my card number is 4111..."
        world.redact_item(item_id)
        later = world.create_export_job(clock.now - timedelta(hours=1), clock.now)
        after = {i["id"]: i for i in lines(clocked_client, later["id"], "conversation_items.jsonl")}
        assert after[item_id]["content"]["content"] == ""
        assert later["updatedAt"] >= job["updatedAt"]


class TestBulkExport:
    def test_bulk_items_file_streams_in_bounded_memory(self, sim: Simulator,
                                                       client: httpx.Client) -> None:
        """A 200k-line job (~130 MB) streams chunked, piece by piece, without the process's
        peak memory growing by anything like the file's size; its conversations exist."""
        job = sim.world.create_bulk_export_job(items=200_000, conversations=20)
        url = f"/export/jobs/{job['id']}/files/conversation_items.jsonl"
        count, size, pieces, first, tail = 0, 0, 0, b"", b""
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with client.stream("GET", url) as response:
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers
            for piece in response.iter_bytes():
                pieces += 1
                count += piece.count(b"\n")
                size += len(piece)
                first = first or piece
                tail = (tail + piece)[-4096:]
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
        assert count == 200_000 and pieces > 100
        assert 400 <= size / count <= 900
        assert growth < size / 3, f"peak memory grew {growth} bytes for a {size}-byte file"
        first_item = json.loads(first[:first.index(b"\n")])
        last_item = json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        assert parse_timestamp(first_item["timestamp"]) <= parse_timestamp(last_item["timestamp"])
        assert client.get(f"/conversations/{first_item['conversationId']}").status_code == 200
        customers = lines(client, job["id"], "customers.jsonl")
        assert first_item["customerId"] in {c["id"] for c in customers}

    def test_bulk_file_is_deterministic(self, sim: Simulator, client: httpx.Client) -> None:
        """Downloading the same bulk file twice gives the same bytes."""
        job = sim.world.create_bulk_export_job(items=2_000, conversations=3)
        url = f"/export/jobs/{job['id']}/files/conversation_items.jsonl"
        assert client.get(url).content == client.get(url).content

    def test_bulk_window_is_respected(self, sim: Simulator, client: httpx.Client) -> None:
        """Every synthetic item lies in the job's window."""
        job = sim.world.create_bulk_export_job(items=5_000, conversations=4)
        start, end = (parse_timestamp(job["parameters"][k]) for k in ("startAt", "endAt"))
        items = lines(client, job["id"], "conversation_items.jsonl")
        stamps = [parse_timestamp(i["timestamp"]) for i in items]
        assert stamps == sorted(stamps) and all(start <= s < end for s in stamps)
        assert len({i["conversationId"] for i in items}) == 4
