"""HTTP behaviour around the endpoints: Basic auth, the per-method rate limit and its headers,
routing errors and the request log."""

from __future__ import annotations

import time

import httpx
import pytest
from gladly_sync.simulator import NOPERM_EMAIL, NOPERM_TOKEN, Simulator

LIMIT_HEADERS = ("Ratelimit-Limit-Second", "Ratelimit-Remaining-Second")


class TestAuth:
    @pytest.mark.parametrize("auth", [None, ("api-user@demo.example", "wrong"),
                                      ("someone@demo.example", "demo-token"), ("", "")])
    def test_bad_credentials_are_401(self, sim: Simulator, make_client, auth) -> None:
        """Missing or wrong credentials answer 401 with a JSON errors body."""
        response = make_client(sim, auth=auth).get("/organization")
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "unauthorized"

    def test_garbage_authorization_header_is_401(self, sim: Simulator, make_client) -> None:
        """A Basic header that is not base64 is a 401, not a crash."""
        response = make_client(sim, auth=None).get("/organization",
                                                   headers={"Authorization": "Basic %%%"})
        assert response.status_code == 401

    def test_email_is_case_insensitive(self, sim: Simulator, make_client) -> None:
        """The Basic user name (an email) matches regardless of case."""
        http = make_client(sim, auth=(sim.api_email.upper(), sim.api_token))
        assert http.get("/organization").status_code == 200

    @pytest.mark.parametrize(("method", "path"), [("GET", "/organization"), ("GET", "/agents"),
                                                  ("PATCH", "/conversations/x"),
                                                  ("POST", "/conversations/x/notes")])
    def test_user_without_permission_is_403(self, sim: Simulator, make_client, method: str,
                                            path: str) -> None:
        """The no-permission user gets 403 on every call and nothing is applied."""
        http = make_client(sim, auth=(NOPERM_EMAIL, NOPERM_TOKEN))
        response = http.request(method, path, json={"content": {"body": "x"}})
        assert response.status_code == 403
        assert response.json()["errors"][0]["code"] == "forbidden"


class TestRateLimit:
    def test_headers_on_every_response(self, sim: Simulator, client: httpx.Client,
                                       make_client) -> None:
        """200, 404 and 401 answers all carry the rate-limit headers."""
        responses = [client.get("/organization"), client.get("/conversations/nope"),
                     make_client(sim, auth=None).get("/organization")]
        assert all(h in r.headers for r in responses for h in LIMIT_HEADERS)

    def test_burst_above_the_limit_gets_429(self, make_client) -> None:
        """Past the per-second budget a method gets 429 with an errors body, recorded too."""
        with Simulator(seed=2, customers=3, conversations=3, rate_limit_per_second=5) as sim:
            http = make_client(sim)
            responses = [http.get("/organization") for _ in range(12)]
            statuses = [r.status_code for r in responses]
            assert statuses[:5] == [200] * 5 and statuses.count(429) >= 5
            refused = next(r for r in responses if r.status_code == 429)
            assert refused.json()["errors"][0]["code"] == "too_many_requests"
            assert refused.headers["Ratelimit-Remaining-Second"] == "0"
            assert [r.status for r in sim.requests] == statuses

    def test_methods_have_separate_budgets(self, make_client) -> None:
        """Using up GET's budget leaves PATCH's untouched."""
        with Simulator(seed=2, customers=3, conversations=3, rate_limit_per_second=3) as sim:
            http = make_client(sim)
            for _ in range(6):
                http.get("/organization")
            conversation = sim.world.conversations()[0]
            response = http.patch(f"/conversations/{conversation['id']}", json={})
            assert response.status_code == 204
            assert response.headers["Ratelimit-Limit-Second"] == "3"

    def test_pacing_at_the_limit_never_gets_429(self, make_client) -> None:
        """A client sending exactly `limit` requests per second is never refused."""
        with Simulator(seed=2, customers=3, conversations=3, rate_limit_per_second=20) as sim:
            http = make_client(sim)
            started = time.monotonic()
            statuses = []
            for number in range(30):
                delay = started + number / 20 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                statuses.append(http.get("/organization").status_code)
            assert statuses == [200] * 30

    def test_limit_can_change_at_runtime(self, sim: Simulator, client: httpx.Client) -> None:
        """Setting rate_limit_per_second on a running simulator applies to the next requests."""
        sim.rate_limit_per_second = 2
        statuses = [client.get("/organization").status_code for _ in range(4)]
        assert statuses[:2] == [200, 200] and 429 in statuses


class TestRouting:
    def test_unknown_path_is_404(self, client: httpx.Client) -> None:
        """Paths outside the simulated API answer 404 with an errors body."""
        response = client.get("/no-such-thing")
        assert response.status_code == 404 and response.json()["errors"][0]["code"] == "not_exist"

    def test_wrong_method_is_405(self, client: httpx.Client) -> None:
        """A known path with another method answers 405 and names the allowed ones."""
        response = client.delete("/organization")
        assert response.status_code == 405 and response.headers["Allow"] == "GET"

    def test_malformed_json_is_400(self, sim: Simulator, client: httpx.Client) -> None:
        """A body that is not JSON is a 400 invalid."""
        conversation = sim.world.conversations()[0]
        response = client.patch(f"/conversations/{conversation['id']}", content=b"{nope",
                                headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and response.json()["errors"][0]["code"] == "invalid"


class TestRequestLog:
    def test_every_request_is_recorded(self, sim: Simulator, client: httpx.Client,
                                       make_client) -> None:
        """Method, path, query, body and status are kept, also for refused requests."""
        sim.reset_requests()
        client.get("/events", params={"entities": ["CONTACT", "CUSTOMER"]})
        client.post("/conversations/zzz/notes", content=b'{"body":"x"}',
                    headers={"Content-Type": "application/json"})
        make_client(sim, auth=None).get("/agents")
        first, second, third = sim.requests
        assert (first.method, first.path, first.status) == ("GET", "/api/v1/events", 400)
        assert first.query == {"entities": ["CONTACT", "CUSTOMER"]} and first.body is None
        assert (second.method, second.status, second.body) == ("POST", 404, b'{"body":"x"}')
        assert (third.path, third.status) == ("/api/v1/agents", 401)
        assert first.timestamp <= second.timestamp <= third.timestamp

    def test_reset_clears_the_log(self, sim: Simulator, client: httpx.Client) -> None:
        """reset_requests() empties the log."""
        client.get("/organization")
        sim.reset_requests()
        assert sim.requests == []


class TestLifecycle:
    def test_stop_refuses_further_connections(self, make_client) -> None:
        """After stop(), even a pooled keep-alive connection no longer gets answers."""
        sim = Simulator(seed=2, customers=2, conversations=2).start()
        http = make_client(sim)
        assert http.get("/organization").status_code == 200
        sim.stop()
        with pytest.raises(httpx.TransportError):
            http.get("/organization")
