"""Fault injection: each kind fails the way it says, and writes are applied exactly when the
kind says so (the lost-response cases are what make blind retries duplicate)."""

from __future__ import annotations

import time

import httpx
import pytest
from gladly_sync.simulator import Simulator

NOTE = {"content": {"body": "Checked with the warehouse"}}


def note_count(sim: Simulator, conversation_id: str) -> int:
    return len(sim.world.items_by_agent(conversation_id, content_type="CONVERSATION_NOTE"))


class TestStatusFaults:
    @pytest.mark.parametrize("status", [500, 502, 503, 429])
    def test_status_answers_without_applying(self, sim: Simulator, client: httpx.Client,
                                             new_conversation, status: int) -> None:
        """A `status` fault answers its status with an errors body and creates nothing."""
        conversation_id, _ = new_conversation()
        sim.faults.add(method="POST", path=r"/notes$", kind="status", status=status)
        response = client.post(f"/conversations/{conversation_id}/notes", json=NOTE)
        assert response.status_code == status and "errors" in response.json()
        assert "Ratelimit-Remaining-Second" in response.headers
        assert note_count(sim, conversation_id) == 0

    def test_times_counts_down_then_requests_pass(self, sim: Simulator, client: httpx.Client,
                                                  new_conversation) -> None:
        """`times=3` fails three matching requests, then the fault is gone."""
        conversation_id, _ = new_conversation()
        fault = sim.faults.add(method="POST", path=r"/notes$", status=429, times=3)
        statuses = [client.post(f"/conversations/{conversation_id}/notes", json=NOTE).status_code
                    for _ in range(4)]
        assert statuses == [429, 429, 429, 201]
        assert fault.hits == 3 and len(sim.faults) == 0
        assert note_count(sim, conversation_id) == 1

    def test_only_matching_requests_are_hit(self, sim: Simulator, client: httpx.Client) -> None:
        """Method and path regex must both match; other requests pass untouched."""
        sim.faults.add(method="PATCH", path=r"^/api/v1/conversations/[^/]+$", status=503, times=None)
        assert client.get("/organization").status_code == 200
        conversation = sim.world.conversations()[0]
        assert client.get(f"/conversations/{conversation['id']}").status_code == 200
        assert client.patch(f"/conversations/{conversation['id']}", json={}).status_code == 503
        sim.faults.clear()
        assert client.patch(f"/conversations/{conversation['id']}", json={}).status_code == 204

    def test_faults_win_over_rate_limiting(self, make_client) -> None:
        """With the budget spent, a matching fault still answers its own status."""
        with Simulator(seed=2, customers=2, conversations=2, rate_limit_per_second=1) as sim:
            http = make_client(sim)
            http.get("/organization")
            assert http.get("/organization").status_code == 429
            sim.faults.add(method="GET", path="/organization", status=503)
            assert http.get("/organization").status_code == 503


class TestAfterApplyFaults:
    def test_error_after_apply_creates_the_note(self, sim: Simulator, client: httpx.Client,
                                                new_conversation) -> None:
        """The note is created, but the client sees a 500."""
        conversation_id, _ = new_conversation()
        sim.faults.add(method="POST", path=r"/notes$", kind="error_after_apply", status=500)
        response = client.post(f"/conversations/{conversation_id}/notes", json=NOTE)
        assert response.status_code == 500 and "Location" not in response.headers
        assert note_count(sim, conversation_id) == 1

    def test_error_after_apply_sends_the_reply(self, sim: Simulator, client: httpx.Client,
                                               new_conversation) -> None:
        """The reply reaches the customer, but the client sees a 503."""
        conversation_id, item_id = new_conversation()
        sim.faults.add(method="POST", path=r"/reply$", kind="error_after_apply", status=503)
        response = client.post(f"/conversation-items/{item_id}/reply",
                               json={"content": {"type": "EMAIL", "body": "On its way"}})
        assert response.status_code == 503
        assert [i["content"]["content"] for i in sim.world.items_by_agent(conversation_id)] == [
            "On its way"]

    def test_drop_after_apply_loses_the_response(self, sim: Simulator, client: httpx.Client,
                                                 new_conversation) -> None:
        """The connection closes with no response, yet the note exists: a blind retry would
        make two."""
        conversation_id, _ = new_conversation()
        sim.faults.add(method="POST", path=r"/notes$", kind="drop_after_apply")
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(f"/conversations/{conversation_id}/notes", json=NOTE)
        assert note_count(sim, conversation_id) == 1
        assert sim.requests[-1].status is None
        assert client.post(f"/conversations/{conversation_id}/notes", json=NOTE).status_code == 201
        assert note_count(sim, conversation_id) == 2

    def test_drop_after_apply_on_patch(self, sim: Simulator, client: httpx.Client,
                                       new_conversation) -> None:
        """A dropped PATCH has still moved the conversation."""
        conversation_id, _ = new_conversation()
        escalations = sim.world.inbox_id("Escalations")
        sim.faults.add(method="PATCH", kind="drop_after_apply")
        with pytest.raises(httpx.TransportError):
            client.patch(f"/conversations/{conversation_id}",
                         json={"assignee": {"inboxId": escalations}})
        assert sim.world.conversation(conversation_id)["inboxId"] == escalations


class TestBeforeApplyFaults:
    def test_reset_before_apply_creates_nothing(self, sim: Simulator, client: httpx.Client,
                                                new_conversation) -> None:
        """A reset connection is a transport error and nothing was written."""
        conversation_id, _ = new_conversation()
        sim.faults.add(method="POST", path=r"/notes$", kind="reset_before_apply")
        with pytest.raises(httpx.TransportError):
            client.post(f"/conversations/{conversation_id}/notes", json=NOTE)
        assert note_count(sim, conversation_id) == 0
        assert sim.requests[-1].status is None

    def test_delay_times_out_the_client_but_still_applies(self, sim: Simulator, make_client,
                                                          new_conversation) -> None:
        """A delay longer than the client's read timeout gives ReadTimeout; the write still
        lands once the delay is over."""
        conversation_id, _ = new_conversation()
        sim.faults.add(method="POST", path=r"/notes$", kind="delay", seconds=0.6)
        http = make_client(sim, timeout=httpx.Timeout(5.0, read=0.2))
        with pytest.raises(httpx.ReadTimeout):
            http.post(f"/conversations/{conversation_id}/notes", json=NOTE)
        deadline = time.monotonic() + 5
        while note_count(sim, conversation_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert note_count(sim, conversation_id) == 1

    def test_apply_late_applies_after_the_client_gave_up(self, sim: Simulator, make_client,
                                                          new_conversation) -> None:
        """apply_late: the client times out with nothing written; the write lands `seconds` later,
        exactly once, and no answer ever comes."""
        conversation_id, _ = new_conversation()
        sim.faults.add(method="POST", path=r"/notes$", kind="apply_late", seconds=1.0)
        http = make_client(sim, timeout=httpx.Timeout(5.0, read=0.2))
        with pytest.raises(httpx.ReadTimeout):
            http.post(f"/conversations/{conversation_id}/notes", json=NOTE)
        assert note_count(sim, conversation_id) == 0
        deadline = time.monotonic() + 5
        while note_count(sim, conversation_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert note_count(sim, conversation_id) == 1
        time.sleep(0.2)
        assert sim.requests[-1].status is None

    def test_delay_within_the_timeout_succeeds(self, sim: Simulator, client: httpx.Client) -> None:
        """A short delay only slows the answer."""
        sim.faults.add(path="/organization", kind="delay", seconds=0.2)
        started = time.monotonic()
        assert client.get("/organization").status_code == 200
        assert time.monotonic() - started >= 0.2


class TestFaultApi:
    def test_unknown_kind_is_refused(self, sim: Simulator) -> None:
        """A typo in the kind fails at add() rather than silently never firing."""
        with pytest.raises(ValueError, match="unknown fault kind"):
            sim.faults.add(kind="explode")
