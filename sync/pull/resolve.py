"""The shared resolve-and-write step of both pull passes (events and export).

``Resolver`` reads each dirty conversation once (``GET /conversations/{id}``, and its items when in
scope), then the customers that became known or changed (following 301 merges), and writes a
``Batch`` in one short transaction. ``Tally`` counts what one run did.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gladly_sync.storage import rows as rowmaps
from gladly_sync.storage import upserts
from gladly_sync.sync.client import GladlyClient, Moved
from gladly_sync.sync.context import Context
from gladly_sync.sync.pull.changes import Merge, text_or_none

from gladly_sync.errors import GladlyNotFound, MalformedResponse, Rejected

BATCH = 50  # conversations per write transaction
WORKERS = 4  # concurrent requests; the pacer sets the pace


@dataclass(frozen=True)
class Scope:
    """``inboxes.ingest`` (empty = every inbox) and the escalation inbox."""

    ingest: frozenset[str]
    escalation: str | None = None

    @classmethod
    def from_settings(cls, ctx: Context) -> Scope:
        inboxes = ctx.settings.inboxes
        return cls(frozenset(inboxes.ingest), inboxes.escalation)

    def admits(self, inbox_id: str | None, *, stored: bool) -> bool:
        """In scope: every inbox when ``ingest`` is empty; a listed inbox; the escalation inbox for a
        conversation we already store."""
        if not self.ingest:
            return True
        if inbox_id in self.ingest:
            return True
        return stored and inbox_id is not None and inbox_id == self.escalation



@dataclass
class FetchedConversation:
    """One ``GET /conversations/{id}`` (and its items when in scope). ``conversation`` is None on 404."""

    id: str
    fetched_at: datetime
    conversation: dict[str, Any] | None
    in_scope: bool = False
    items: list[dict[str, Any]] | None = None
    limited: bool = False

    @property
    def inbox_id(self) -> str | None:
        return (self.conversation or {}).get("inboxId")

    @property
    def customer_id(self) -> str | None:
        return (self.conversation or {}).get("customerId")


@dataclass
class FetchedCustomer:
    """One customer id resolved: its profile (after following 301s), or missing (404)."""

    requested_id: str
    fetched_at: datetime
    profile: dict[str, Any] | None
    moves: list[Moved] = field(default_factory=list)
    missing_id: str | None = None


@dataclass
class Batch:
    """Everything one write transaction stores."""

    customers: list[FetchedCustomer] = field(default_factory=list)
    conversations: list[FetchedConversation] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    erase: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped_events: list[tuple[str, datetime | None]] = field(default_factory=list)


REFERENCE_TABLES = frozenset({"organization", "inboxes", "agents", "topics"})


@dataclass
class Tally:
    """Counts of one run, shared by the events and export passes."""

    rows: dict[str, int] = field(default_factory=dict)
    conversations_fetched: int = 0
    customers_fetched: int = 0
    skipped_inbox_filter: int = 0
    lists_cut: int = 0  # conversations whose item list Gladly cut (Gladly-Limited-Data)
    items_completed: int = 0  # items of cut lists read one by one because their events name them
    warnings: list[str] = field(default_factory=list)
    # rows counts the reference lists as listed; these are the ones new or different from the store
    reference_changes: int = 0

    def add(self, table: str, count: int | None) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + int(count)

    def changed_data(self) -> bool:
        """Whether the run wrote a row of Gladly data (what the read snapshot must show)."""
        return self.reference_changes > 0 or any(
            count for table, count in self.rows.items() if table not in REFERENCE_TABLES
        )


class Resolver:
    """Reads conversations and customers from Gladly and writes them, each id at most once per run.

    Shared by the events pass and the export pass of one run. Requests go out on at most
    ``WORKERS`` threads; the client's pacer keeps them within the rate budget.
    """

    def __init__(self, ctx: Context, client: GladlyClient, tally: Tally, pool: ThreadPoolExecutor):
        self.ctx = ctx
        self.client = client
        self.tally = tally
        self.pool = pool
        self.scope = Scope.from_settings(ctx)
        self.fetched_conversations: set[str] = set()
        self.fetched_customers: set[str] = set()
        self.stored_customers: set[str] = set()  # known to be in the store (checked or written)

    # ------------------------------------------------------------------ reading Gladly

    def fetch_conversations(
        self,
        ids: Sequence[str],
        *,
        stored: set[str],
        items: bool,
        named_items: Mapping[str, Sequence[str]] | None = None,
    ) -> list[FetchedConversation]:
        """GET each conversation (and, in scope and with ``items``, its items); 404 gives ``None``.

        ``named_items``: per conversation, item ids its events name that the store lacks; when the
        item list comes back cut (``Gladly-Limited-Data``), those items are fetched one by one.
        """
        ids = [cid for cid in dict.fromkeys(ids) if cid not in self.fetched_conversations]
        self.fetched_conversations.update(ids)
        named = named_items or {}
        results = list(
            self.pool.map(
                lambda cid: self._fetch_conversation(cid, cid in stored, items, named.get(cid, ())), ids
            )
        )
        self.tally.conversations_fetched += len(results)
        return results

    def _fetch_conversation(
        self, conversation_id: str, stored: bool, items: bool, named_items: Sequence[str] = ()
    ) -> FetchedConversation:
        fetched_at = self.ctx.clock()
        try:
            conversation = self.client.get_conversation(conversation_id)
        except GladlyNotFound:
            return FetchedConversation(conversation_id, fetched_at, None)
        for key in ("id", "customerId", "inboxId"):
            if not text_or_none(conversation.get(key)):
                raise MalformedResponse(
                    f"GET /conversations/{conversation_id}: the conversation lacks {key}",
                    method="GET",
                    url=f"/conversations/{conversation_id}",
                )
        result = FetchedConversation(conversation_id, fetched_at, conversation)
        result.in_scope = self.scope.admits(conversation["inboxId"], stored=stored)
        if result.in_scope and items:
            try:
                page = self.client.list_conversation_items(conversation_id)
            except GladlyNotFound:  # gone between the two requests
                return FetchedConversation(conversation_id, fetched_at, None)
            result.items, result.limited = page.items, page.limited
            if page.limited:
                result.items += self._complete_cut_list(conversation_id, page.items, named_items)
        return result

    def _complete_cut_list(
        self, conversation_id: str, listed: Sequence[dict[str, Any]], named_items: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The items a cut list (the oldest 1000) lacks but the conversation's events name, each
        read with ``GET /conversation-items/{id}``. One gone meanwhile (404) or refused by the API
        (400: a type it does not serve) is left out; the export pass repairs the rest."""
        have = {item.get("id") for item in listed}
        missing = [item_id for item_id in named_items if item_id not in have]
        found = []
        for item_id in missing:
            try:
                found.append(self.client.get_item(item_id))
            except (GladlyNotFound, Rejected) as error:
                self.ctx.log.info(
                    "named_item_unavailable",
                    conversation_id=conversation_id,
                    item_id=item_id,
                    status=error.status,
                )
        self.tally.items_completed += len(found)
        return found

    def fetch_customers(self, ids: Iterable[str]) -> list[FetchedCustomer]:
        """GET each profile, following 301s to the surviving customer; 404 leaves ``profile`` None."""
        todo = [cid for cid in dict.fromkeys(ids) if cid and cid not in self.fetched_customers]
        self.fetched_customers.update(todo)
        results = list(self.pool.map(self._fetch_customer, todo))
        for result in results:
            self.fetched_customers.update(move.new_id for move in result.moves)
            self.tally.customers_fetched += 1 + len(result.moves)
        return results

    def _fetch_customer(self, customer_id: str) -> FetchedCustomer:
        current, moves = customer_id, []
        for _ in range(8):  # a merge chain longer than this is a loop
            fetched_at = self.ctx.clock()
            try:
                answer = self.client.get_customer(current)
            except GladlyNotFound:
                return FetchedCustomer(customer_id, fetched_at, None, moves, missing_id=current)
            if isinstance(answer, Moved):
                moves.append(answer)
                current = answer.new_id
                continue
            return FetchedCustomer(customer_id, fetched_at, answer, moves)
        raise MalformedResponse(
            f"GET /customer-profiles/{customer_id}: 301 redirects do not end",
            method="GET",
            url=f"/customer-profiles/{customer_id}",
        )

    def customers_of(self, conversations: Iterable[FetchedConversation]) -> list[str]:
        """Customers of in-scope conversations that the store does not have yet."""
        wanted = [c.customer_id for c in conversations if c.in_scope and c.customer_id]
        wanted = [cid for cid in dict.fromkeys(wanted) if cid not in self.stored_customers]
        if wanted:
            with self.ctx.db.connect() as con:
                self.stored_customers.update(upserts.stored_customer_ids(con, wanted))
        return [cid for cid in wanted if cid not in self.stored_customers]

    def resolve(
        self,
        ids: Sequence[str],
        *,
        stored: set[str],
        items: bool,
        named_items: Mapping[str, Sequence[str]] | None = None,
    ) -> tuple[list[FetchedConversation], list[FetchedCustomer]]:
        """Conversations, then the customers of the in-scope ones that the store lacks."""
        conversations = self.fetch_conversations(ids, stored=stored, items=items, named_items=named_items)
        customers = self.fetch_customers(self.customers_of(conversations))
        return conversations, customers

    # ------------------------------------------------------------------ writing the store

    def write(self, con: Any, batch: Batch, stored: set[str]) -> None:
        """Store one batch in the open transaction ``con``. ``stored``: conversation ids in the store."""
        now = self.ctx.clock()
        merges, erase = self._write_customers(con, batch, now)
        self._write_conversations(con, batch, now)
        self._write_gone_and_excluded(con, batch, stored, now)
        for merge in dict.fromkeys(merges):
            source, destination = merge.source_customer_id, merge.destination_customer_id
            for table, count in upserts.apply_customer_merge(con, source, destination, merge.at).items():
                self.tally.add(table, count)
        for customer_id in dict.fromkeys(erase):
            for table, count in upserts.erase_customer(con, customer_id, now).items():
                self.tally.add(table, count)
        if batch.events:
            self.tally.add("events", upserts.insert_events(con, batch.events))
        if batch.skipped_events:
            upserts.remember_skipped_events(con, batch.skipped_events)

    def _write_customers(self, con: Any, batch: Batch, now: datetime) -> tuple[list[Merge], list[str]]:
        """Upsert the fetched profiles; return the merges (events and 301s) and erasures (404s of
        stored customers, and deleted profiles) still to apply."""
        customer_rows, erase, merges = [], list(batch.erase), list(batch.merges)
        for customer in batch.customers:
            merges += [Merge(m.old_id, m.new_id, customer.fetched_at) for m in customer.moves]
            if customer.profile is not None:
                customer_rows.append(
                    rowmaps.customer_row(customer.profile, synced_at=now, source_at=customer.fetched_at)
                )
            elif customer.missing_id and customer.missing_id in self.stored_customers:
                erase.append(customer.missing_id)
        if customer_rows:
            upserts.upsert_customers(con, customer_rows)
            self.tally.add("customers", len(customer_rows))
            self.stored_customers.update(row["id"] for row in customer_rows)
        return merges, erase

    def _write_conversations(self, con: Any, batch: Batch, now: datetime) -> None:
        """Upsert the in-scope conversations and their items (a cut list marks nothing deleted)."""
        in_scope = [c for c in batch.conversations if c.conversation is not None and c.in_scope]
        if in_scope:
            rows = [
                rowmaps.conversation_row(c.conversation, synced_at=now, source_at=c.fetched_at)
                for c in in_scope
                if c.conversation is not None
            ]
            upserts.upsert_conversations(con, rows)
            self.tally.add("conversations", len(in_scope))
            upserts.clear_exclusions(con, [c.id for c in in_scope])
        for fetched in in_scope:
            if fetched.items is None:
                continue
            if fetched.limited:
                self.tally.lists_cut += 1
                self.ctx.log.info("item_list_cut", conversation_id=fetched.id, items=len(fetched.items))
            count = upserts.upsert_items(
                con,
                fetched.items,
                source_at=fetched.fetched_at,
                synced_at=now,
                complete_conversation_id=None if fetched.limited else fetched.id,
            )
            self.tally.add("conversation_items", count if count is not None else len(fetched.items))

    def _write_gone_and_excluded(self, con: Any, batch: Batch, stored: set[str], now: datetime) -> None:
        """Stored conversations that vanished get deleted_at; those outside the scope are remembered."""
        gone = [c.id for c in batch.conversations if c.conversation is None and c.id in stored]
        if gone:
            self.tally.add("conversations", upserts.mark_conversations_deleted(con, gone, now))
        excluded = [c for c in batch.conversations if c.conversation is not None and not c.in_scope]
        if excluded:
            upserts.exclude_conversations(con, [(c.id, c.inbox_id, c.fetched_at) for c in excluded])
            self.tally.skipped_inbox_filter += len(excluded)
            for c in excluded:
                self.ctx.log.info(
                    "conversation_out_of_scope",
                    conversation_id=c.id,
                    inbox_id=c.inbox_id,
                    stored=c.id in stored,
                )


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


