"""Customer profiles over HTTP: lookups, 404s, merges answering 301, deletes."""

from __future__ import annotations

import httpx
import pytest
from gladly_sync.simulator import Simulator


def open_conversation(sim: Simulator, customer_id: str) -> str:
    return sim.world.new_conversation(customer_id, sim.world.inbox_id("Email Support"))


class TestGetProfile:
    def test_profile_is_returned(self, sim: Simulator, client: httpx.Client) -> None:
        """A live profile answers 200 with the world's profile."""
        profile = sim.world.customers()[0]
        response = client.get(f"/customer-profiles/{profile['id']}")
        assert response.status_code == 200 and response.json() == profile

    def test_unknown_profile_is_a_single_object_404(self, client: httpx.Client) -> None:
        """An unknown id answers 404 in the single-object form Gladly's spec shows."""
        response = client.get("/customer-profiles/AAAAAAAAAAAAAAAAAAAAAA")
        assert response.status_code == 404
        assert response.json() == {"errors": {
            "code": "not_exist", "detail": "customer profile [AAAAAAAAAAAAAAAAAAAAAA] does not exist"}}


class TestFindProfiles:
    @pytest.mark.parametrize("query", [
        {"email": "MIXED.Case@Example.com"},
        {"phoneNumber": "+14155550007"},
        {"externalCustomerId": "ext-42"},
    ])
    def test_one_identifier_finds_the_profile(self, sim: Simulator, client: httpx.Client,
                                              query: dict[str, str]) -> None:
        """Email (case-insensitive), E.164 phone (sent as %2B...) and external id all match."""
        customer_id = sim.world.new_customer(email="mixed.case@example.com", phone="+14155550007",
                                             externalCustomerId="ext-42")
        response = client.get("/customer-profiles", params=query)
        assert response.status_code == 200
        assert [p["id"] for p in response.json()] == [customer_id]

    @pytest.mark.parametrize("query", [{}, {"email": "a@example.com", "phoneNumber": "+14155550007"},
                                       {"email": ""}])
    def test_not_exactly_one_identifier_is_refused(self, client: httpx.Client,
                                                   query: dict[str, str]) -> None:
        """No identifier, or two, is a 400 `invalid`."""
        response = client.get("/customer-profiles", params=query)
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "invalid"

    def test_at_most_fifty_most_recently_updated_first(self, sim: Simulator,
                                                       client: httpx.Client) -> None:
        """55 matches give the 50 most recently updated, newest first."""
        ids = [sim.world.new_customer(externalCustomerId="shared") for _ in range(55)]
        found = client.get("/customer-profiles", params={"externalCustomerId": "shared"}).json()
        assert [p["id"] for p in found] == ids[::-1][:50]


class TestCustomerConversations:
    def test_oldest_first(self, sim: Simulator, client: httpx.Client) -> None:
        """A customer's conversations come oldest first with no Limited-Data header."""
        customer_id = sim.world.new_customer(email="two@example.com")
        first = open_conversation(sim, customer_id)
        sim.world.close(first)
        second = open_conversation(sim, customer_id)
        response = client.get(f"/customers/{customer_id}/conversations")
        assert [c["id"] for c in response.json()] == [first, second]
        assert "Gladly-Limited-Data" not in response.headers

    def test_more_than_a_hundred_are_capped(self, sim: Simulator, client: httpx.Client) -> None:
        """With 101 conversations, the oldest 100 come back flagged Gladly-Limited-Data."""
        customer_id = sim.world.new_customer(email="busy@example.com")
        ids = []
        for _ in range(101):
            ids.append(open_conversation(sim, customer_id))
            sim.world.close(ids[-1])
        response = client.get(f"/customers/{customer_id}/conversations")
        assert [c["id"] for c in response.json()] == ids[:100]
        assert response.headers["Gladly-Limited-Data"] == "true"


class TestMerge:
    def test_old_id_answers_301_with_the_new_id(self, sim: Simulator, client: httpx.Client) -> None:
        """A merged-away id answers 301 whose body names the surviving id."""
        source, dest = (sim.world.new_customer(email=f"{n}@example.com") for n in ("src", "dst"))
        sim.world.merge_customers(source, dest)
        response = client.get(f"/customer-profiles/{source}")
        assert response.status_code == 301
        assert response.json() == {"errors": [{
            "attr": "customerId", "code": "moved", "detail": "customer id has changed",
            "meta": {"old": source, "new": dest}}]}
        assert response.headers["Location"] == f"/api/v1/customer-profiles/{dest}"
        assert client.get(f"/customers/{source}/conversations").status_code == 301

    def test_conversations_move_to_the_destination(self, sim: Simulator,
                                                   client: httpx.Client) -> None:
        """A closed source conversation keeps its id; it and its items now name the destination."""
        source, dest = (sim.world.new_customer(email=f"{n}@example.com") for n in ("s2", "d2"))
        kept = open_conversation(sim, source)
        sim.world.close(kept)
        sim.world.merge_customers(source, dest)
        conversation = client.get(f"/conversations/{kept}").json()
        items = client.get(f"/conversations/{kept}/items").json()
        assert conversation["customerId"] == dest
        assert {i["customerId"] for i in items} == {dest}
        assert [c["id"] for c in client.get(f"/customers/{dest}/conversations").json()] == [kept]

    def test_open_into_open_drops_the_source_conversation(self, sim: Simulator,
                                                          client: httpx.Client,
                                                          events_of) -> None:
        """An OPEN source conversation merged into the destination's OPEN one is 404 for good."""
        source, dest = (sim.world.new_customer(email=f"{n}@example.com") for n in ("s3", "d3"))
        gone, survivor = open_conversation(sim, source), open_conversation(sim, dest)
        moved_item = sim.world.items(gone)[0]["id"]
        sim.world.merge_customers(source, dest)
        assert client.get(f"/conversations/{gone}").status_code == 404
        assert client.get(f"/conversations/{gone}/items").status_code == 404
        survivor_items = client.get(f"/conversations/{survivor}/items").json()
        assert moved_item in [i["id"] for i in survivor_items]
        [merged] = events_of(sim, "CUSTOMER/MERGED", sourceCustomerId=source)
        assert merged["content"] == {"sourceCustomerId": source, "destinationCustomerId": dest,
                                     "sourceConversationId": gone,
                                     "destinationConversationId": survivor}


class TestDelete:
    def test_deleted_profile_and_its_conversations_are_404(self, sim: Simulator,
                                                           client: httpx.Client) -> None:
        """After a delete, the profile, its conversations and items are gone."""
        customer_id = sim.world.new_customer(email="gone@example.com")
        conversation_id = open_conversation(sim, customer_id)
        item_id = sim.world.items(conversation_id)[0]["id"]
        sim.world.delete_profile(customer_id)
        assert client.get(f"/customer-profiles/{customer_id}").status_code == 404
        assert client.get(f"/conversations/{conversation_id}").status_code == 404
        assert client.get(f"/conversation-items/{item_id}").status_code == 404
