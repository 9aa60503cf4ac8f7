"""The pull path: one ``sync_once(ctx)`` keeps the store up to date with Gladly.

A run, in order:

1. **Events pass.** Poll ``GET /events`` from the saved cursor (an overlap of Gladly's 15 s
   lateness) to now. Events whose id is already known (stored in ``events`` or remembered in
   ``skipped_events``) change nothing. The new ones name the dirty conversations, customers,
   merges and deleted profiles (``collect_changes``, pure).
2. **Resolve.** Each dirty conversation is read once (``GET /conversations/{id}``, and its items
   when it is in scope), then customers that became known and customers that changed
   (``GET /customer-profiles/{id}``, following 301 merges). Work is written in short transactions of
   ``BATCH`` conversations; each stores the events it covers, so a failed run loses nothing and a
   retry does not redo what was stored. The events cursor moves only in the last transaction,
   to ``endAt - 15 s``, also when no event came.
3. **Export pass** (``sync/export.py``) when the store is fresh, on ``--full``/``--since``, after a
   cursor fell out of Gladly's 24 h window, or when ``reconcile_every`` has passed: backfill and
   gap repair from export jobs, then the reference lists. It counts as a reconcile pass.
4. Publish the read snapshot.

Local work is never the bottleneck: requests go out on a small thread pool and the client's pacer
keeps them at the rate budget; the database is opened per batch, never across a request. The run's
deadline belongs to the caller (the daemon's client factory sets it on the client); a run stopped by
it keeps every batch it wrote, and the next run carries on from there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from storage import rows as rowmaps
from storage import upserts
from storage.errors import UsageError
from sync.client import GladlyClient, Moved
from sync.context import Context
from sync.errors import GladlyNotFound, MalformedResponse
from sync.runs import RunHandle, run_job

__all__ = [
    "ENTITIES",
    "Changes",
    "Merge",
    "Resolver",
    "Scope",
    "SyncSummary",
    "add_gap",
    "collect_changes",
    "event_conversation_ids",
    "event_inbox_hint",
    "subtract_windows",
    "sync_once",
]

ENTITIES = ("CONVERSATION", "CONTACT", "CUSTOMER", "CUSTOMER_PROFILE")
LATENESS = timedelta(seconds=15)  # Gladly: events are up to 15 s behind real time
FIRST_LOOKBACK = timedelta(hours=23)  # Gladly rejects a startAt 24 h back exactly
SINCE_LIMIT = timedelta(hours=23)
CURSOR_EXPIRY = timedelta(hours=23, minutes=50)  # older than this, the poll would leave the window
SKIPPED_EVENTS_KEEP = timedelta(hours=25)
BATCH = 50  # conversations per write transaction
WORKERS = 4  # concurrent requests; the pacer sets the pace

EVENTS_STREAM = "events"
RECONCILE_STREAM = "reconcile"
GAPS_STREAM = "gaps"
COVERAGE_STREAM = "coverage"

Mode = Literal["incremental", "full", "since"]


# --------------------------------------------------------------------------- pure: events -> changes


@dataclass(frozen=True)
class Merge:
    """``source_customer_id`` was merged into ``destination_customer_id`` (an event or a 301)."""

    source_customer_id: str
    destination_customer_id: str
    at: datetime
    event_id: str | None = None


@dataclass
class Changes:
    """What the new events of one poll say changed. Lists keep first-seen order, without repeats."""

    events: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    deleted_profiles: list[str] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    inbox_hints: dict[str, str] = field(default_factory=dict)

    def customer_ids(self) -> list[str]:
        """Every customer id the changes name (profiles, deletions, both sides of merges)."""
        ids = [*self.profiles, *self.deleted_profiles]
        for merge in self.merges:
            ids += [merge.source_customer_id, merge.destination_customer_id]
        return list(dict.fromkeys(ids))


def _content(event: dict[str, Any]) -> dict[str, Any]:
    content = event.get("content")
    return content if isinstance(content, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def event_conversation_ids(event: dict[str, Any]) -> list[str]:
    """Conversations an event is about: ``conversationId``, or both sides of a ``CUSTOMER/MERGED``."""
    content = _content(event)
    if event.get("type") == "CUSTOMER/MERGED":
        keys = ("sourceConversationId", "destinationConversationId")
    else:
        keys = ("conversationId",)
    return list(dict.fromkeys(cid for key in keys if (cid := _text(content.get(key)))))


def event_inbox_hint(event: dict[str, Any]) -> str | None:
    """The conversation's inbox as of the event: the new ``assignee`` of an assignee update, else the
    ``context.assignee`` (which on an assignee update is the previous one, so it is not used there)."""
    content = _content(event)
    assignee = content.get("assignee")
    if isinstance(assignee, dict) and _text(assignee.get("inboxId")):
        return assignee["inboxId"]
    if str(event.get("type", "")).startswith("CONVERSATION_ASSIGNEE/"):
        return None
    context = content.get("context")
    assignee = context.get("assignee") if isinstance(context, dict) else None
    if isinstance(assignee, dict):
        return _text(assignee.get("inboxId"))
    return None


def _when(event: dict[str, Any]) -> datetime:
    return _event_at(event) or datetime.min.replace(tzinfo=UTC)


def collect_changes(events: Sequence[dict[str, Any]], known_ids: Iterable[str]) -> Changes:
    """The dirty sets of one poll. Events whose id is in ``known_ids`` (or repeated) change nothing;
    inbox hints come from the newest event that carries one, known or not."""
    known = set(known_ids)
    changes = Changes()
    conversations: dict[str, None] = {}
    profiles: dict[str, None] = {}
    deleted: dict[str, None] = {}
    newest_hint: dict[str, tuple[datetime, int]] = {}
    for index, event in enumerate(events):
        kind = event.get("type")
        content = _content(event)
        hint = event_inbox_hint(event)
        if hint is not None:
            for conversation_id in event_conversation_ids(event):
                key = (_when(event), index)
                if conversation_id not in newest_hint or key >= newest_hint[conversation_id]:
                    newest_hint[conversation_id] = key
                    changes.inbox_hints[conversation_id] = hint
        event_id = event.get("id")
        if event_id in known:
            continue
        known.add(event_id)
        changes.events.append(event)
        for conversation_id in event_conversation_ids(event):
            conversations.setdefault(conversation_id)
        customer_id = _text(content.get("customerId"))
        if kind == "CUSTOMER/MERGED":
            source = _text(content.get("sourceCustomerId"))
            destination = _text(content.get("destinationCustomerId"))
            if source and destination and source != destination:
                changes.merges.append(Merge(source, destination, _when(event), event_id))
        elif kind in ("CUSTOMER_PROFILE/CREATED", "CUSTOMER_PROFILE/UPDATED") and customer_id:
            profiles.setdefault(customer_id)
        elif kind == "CUSTOMER_PROFILE/DELETED" and customer_id:
            deleted.setdefault(customer_id)
    changes.conversations = list(conversations)
    changes.deleted_profiles = list(deleted)
    changes.profiles = [cid for cid in profiles if cid not in deleted]
    return changes


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


# --------------------------------------------------------------------------- pure: gaps


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
    value = json.dumps([[_iso(start), _iso(end)] for start, end in gaps])
    upserts.save_cursor(con, GAPS_STREAM, value, at)


def extend_coverage(con: Any, start: datetime, at: datetime) -> None:
    """Remember the earliest instant the store covers (first events poll, oldest export job)."""
    text = upserts.load_cursor(con, COVERAGE_STREAM)
    if text is None or start < datetime.fromisoformat(text):
        upserts.save_cursor(con, COVERAGE_STREAM, _iso(start), at)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# --------------------------------------------------------------------------- fetching and writing


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


@dataclass
class Tally:
    """Counts of one run, shared by the events and export passes."""

    rows: dict[str, int] = field(default_factory=dict)
    conversations_fetched: int = 0
    customers_fetched: int = 0
    skipped_inbox_filter: int = 0
    items_limited: int = 0
    warnings: list[str] = field(default_factory=list)

    def add(self, table: str, count: int | None) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + int(count)


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
        self, ids: Sequence[str], *, stored: set[str], items: bool
    ) -> list[FetchedConversation]:
        """GET each conversation (and, in scope and with ``items``, its items); 404 gives ``None``."""
        ids = [cid for cid in dict.fromkeys(ids) if cid not in self.fetched_conversations]
        self.fetched_conversations.update(ids)
        results = list(self.pool.map(lambda cid: self._fetch_conversation(cid, cid in stored, items), ids))
        self.tally.conversations_fetched += len(results)
        return results

    def _fetch_conversation(self, conversation_id: str, stored: bool, items: bool) -> FetchedConversation:
        fetched_at = self.ctx.clock()
        try:
            conversation = self.client.get_conversation(conversation_id)
        except GladlyNotFound:
            return FetchedConversation(conversation_id, fetched_at, None)
        for key in ("id", "customerId", "inboxId"):
            if not _text(conversation.get(key)):
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
        return result

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
        self, ids: Sequence[str], *, stored: set[str], items: bool
    ) -> tuple[list[FetchedConversation], list[FetchedCustomer]]:
        """Conversations, then the customers of the in-scope ones that the store lacks."""
        conversations = self.fetch_conversations(ids, stored=stored, items=items)
        customers = self.fetch_customers(self.customers_of(conversations))
        return conversations, customers

    # ------------------------------------------------------------------ writing the store

    def write(self, con: Any, batch: Batch, stored: set[str]) -> None:
        """Store one batch in the open transaction ``con``. ``stored``: conversation ids in the store."""
        now = self.ctx.clock()
        tally = self.tally
        customer_rows, erase = [], list(batch.erase)
        merges = list(batch.merges)
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
            tally.add("customers", len(customer_rows))
            self.stored_customers.update(row["id"] for row in customer_rows)

        in_scope = [c for c in batch.conversations if c.conversation is not None and c.in_scope]
        if in_scope:
            upserts.upsert_conversations(
                con,
                [
                    rowmaps.conversation_row(c.conversation, synced_at=now, source_at=c.fetched_at)
                    for c in in_scope
                    if c.conversation is not None
                ],
            )
            tally.add("conversations", len(in_scope))
            upserts.clear_exclusions(con, [c.id for c in in_scope])
        for fetched in in_scope:
            if fetched.items is None:
                continue
            if fetched.limited:
                tally.items_limited += 1
                self.ctx.log.warning("items_limited", conversation_id=fetched.id, items=len(fetched.items))
            count = upserts.upsert_items(
                con,
                fetched.items,
                source_at=fetched.fetched_at,
                synced_at=now,
                complete_conversation_id=None if fetched.limited else fetched.id,
            )
            tally.add("conversation_items", count if count is not None else len(fetched.items))

        gone = [c.id for c in batch.conversations if c.conversation is None and c.id in stored]
        if gone:
            tally.add("conversations", upserts.mark_conversations_deleted(con, gone, now))
        excluded = [c for c in batch.conversations if c.conversation is not None and not c.in_scope]
        if excluded:
            upserts.exclude_conversations(con, [(c.id, c.inbox_id, c.fetched_at) for c in excluded])
            tally.skipped_inbox_filter += len(excluded)
            for c in excluded:
                self.ctx.log.info(
                    "conversation_out_of_scope",
                    conversation_id=c.id,
                    inbox_id=c.inbox_id,
                    stored=c.id in stored,
                )

        for merge in dict.fromkeys(merges):
            source, destination = merge.source_customer_id, merge.destination_customer_id
            for table, count in upserts.apply_customer_merge(con, source, destination, merge.at).items():
                tally.add(table, count)
        for customer_id in dict.fromkeys(erase):
            for table, count in upserts.erase_customer(con, customer_id, now).items():
                tally.add(table, count)

        if batch.events:
            tally.add("events", upserts.insert_events(con, batch.events))
        if batch.skipped_events:
            upserts.remember_skipped_events(con, batch.skipped_events)


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _event_at(event: dict[str, Any]) -> datetime | None:
    try:
        return rowmaps.parse_timestamp(event.get("timestamp"))
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- the events pass


@dataclass
class EventsOutcome:
    seen: int = 0
    new: int = 0
    start_at: datetime | None = None
    end_at: datetime | None = None
    expired: bool = False


def events_pass(
    ctx: Context,
    resolver: Resolver,
    *,
    start_at: datetime,
    end_at: datetime,
    expired_from: datetime | None = None,
    fresh: bool = False,
) -> EventsOutcome:
    """Poll events in ``[start_at, end_at]``, apply what changed, save the cursor at ``end_at - 15 s``."""
    db, log = ctx.db, ctx.log
    events = resolver.client.list_events(start_at, end_at, ENTITIES)
    outcome = EventsOutcome(len(events), 0, start_at, end_at, expired=expired_from is not None)

    stored_rows: dict[str, Any] = {}
    exclusions: dict[str, Any] = {}
    stored_customers: set[str] = set()
    with db.connect() as con:  # local reads only: what is known, what is stored
        known = upserts.known_event_ids(con, list({event["id"] for event in events})) if events else set()
        changes = collect_changes(events, known)
        dirty, customer_ids = changes.conversations, changes.customer_ids()
        if dirty:
            stored_rows = upserts.stored_conversations(con, dirty)
            exclusions = upserts.scope_exclusions(con, dirty)
        if customer_ids:
            stored_customers = set(upserts.stored_customer_ids(con, customer_ids))
    outcome.new = len(changes.events)
    log.info(
        "events_polled",
        events=len(events),
        new=len(changes.events),
        conversations=len(changes.conversations),
        start_at=_iso(start_at),
        end_at=_iso(end_at),
    )
    stored = set(stored_rows)
    resolver.stored_customers.update(stored_customers)

    # An inbox hint outside the scope saves the GET of a conversation we do not keep.
    scope = resolver.scope
    to_fetch, hinted_out = [], set()
    for conversation_id in changes.conversations:
        hint = changes.inbox_hints.get(conversation_id)
        keeps = conversation_id in stored and conversation_id not in exclusions
        if hint is not None and not keeps and not scope.admits(hint, stored=conversation_id in stored):
            hinted_out.add(conversation_id)
        else:
            to_fetch.append(conversation_id)
    if hinted_out:
        resolver.tally.skipped_inbox_filter += len(hinted_out)
        log.info("conversations_skipped_by_hint", conversations=len(hinted_out))

    by_conversation: dict[str, list[dict[str, Any]]] = {}
    rest: list[dict[str, Any]] = []
    for event in changes.events:
        conversation_ids = event_conversation_ids(event)
        if event.get("type") == "CUSTOMER/MERGED" or not conversation_ids:
            rest.append(event)
        else:
            by_conversation.setdefault(conversation_ids[0], []).append(event)

    for batch_ids in chunks(to_fetch, BATCH):
        conversations, customers = resolver.resolve(batch_ids, stored=stored, items=True)
        batch = Batch(customers=customers, conversations=conversations)
        for fetched in conversations:
            keep = fetched.in_scope or (fetched.conversation is None and fetched.id in stored)
            for event in by_conversation.get(fetched.id, []):
                if keep:
                    batch.events.append(event)
                else:
                    batch.skipped_events.append((event["id"], _event_at(event) or end_at))
        with db.transaction() as con:
            resolver.write(con, batch, stored)
        stored.update(c.id for c in conversations if c.in_scope and c.conversation is not None)

    # Customers: changed profiles and merges of customers in scope, then erasures.
    final = Batch()
    for conversation_id in hinted_out:
        final.skipped_events += [
            (e["id"], _event_at(e) or end_at) for e in by_conversation.get(conversation_id, [])
        ]
    in_store = resolver.stored_customers
    refresh = [cid for cid in changes.profiles if cid in in_store]
    for merge in changes.merges:
        if merge.source_customer_id in in_store or merge.destination_customer_id in in_store:
            final.merges.append(merge)
            refresh.append(merge.destination_customer_id)
    final.erase = list(changes.deleted_profiles)  # storage erases what it holds of each
    erased = set(final.erase)
    final.customers = resolver.fetch_customers(cid for cid in refresh if cid not in erased)
    known_after = in_store | {c.profile["id"] for c in final.customers if c.profile and c.profile.get("id")}
    for event in rest:
        content = _content(event)
        if event.get("type") == "CUSTOMER/MERGED" or _text(content.get("customerId")) in known_after:
            final.events.append(event)
        else:
            final.skipped_events.append((event["id"], _event_at(event) or end_at))

    now = ctx.clock()
    with db.transaction() as con:
        resolver.write(con, final, stored)
        if expired_from is not None:
            save_gaps(con, add_gap(load_gaps(con), expired_from, start_at), now)
        if fresh:
            extend_coverage(con, start_at, now)
        upserts.prune_skipped_events(con, now - SKIPPED_EVENTS_KEEP)
        upserts.save_cursor(con, EVENTS_STREAM, _iso(end_at - LATENESS), now)
    return outcome


# --------------------------------------------------------------------------- sync_once


@dataclass
class SyncSummary:
    """What one ``sync`` did; ``to_dict()`` is what ``sync --json`` prints."""

    run_id: str
    mode: Mode
    rows: dict[str, int] = field(default_factory=dict)
    events_seen: int = 0
    events_new: int = 0
    conversations_fetched: int = 0
    customers_fetched: int = 0
    skipped_inbox_filter: int = 0
    items_limited: int = 0
    requests: int = 0
    rate_limited: int = 0
    duration_seconds: float = 0.0
    export_jobs: int = 0
    reconciled: bool = False
    events_start_at: str | None = None
    events_end_at: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_cursor(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_since(since: datetime, now: datetime) -> datetime:
    """``--since`` must lie within the last 23 h (Gladly keeps events 24 h); older needs ``--full``."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if since > now:
        raise UsageError(f"--since {_iso(since)} is in the future; give a time within the last 23 h")
    if now - since > SINCE_LIMIT:
        raise UsageError(
            f"--since {_iso(since)} is more than 23 h ago and Gladly keeps events for 24 h only; "
            "use `gladly-sync sync --full` to re-read the export jobs (14 days) instead"
        )
    return since


def sync_once(
    ctx: Context,
    *,
    full: bool = False,
    since: datetime | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SyncSummary:
    """One incremental pull (plus backfill / gap repair when due); returns what it did.

    ``progress`` receives the export pass's counts (jobs, items, conversations resolved, an
    estimate from the rate budget) as they change, for a progress bar.
    """
    from sync.export import reconcile, refresh_references  # export.py builds on this module

    started = time.monotonic()
    now = ctx.clock()
    if since is not None:
        since = check_since(since, now)
    with ctx.db.connect() as con:
        cursor = _parse_cursor(upserts.load_cursor(con, EVENTS_STREAM))
        last_reconcile = _parse_cursor(upserts.load_cursor(con, RECONCILE_STREAM))

    fresh = cursor is None
    mode: Mode = "full" if (full or fresh) else ("since" if since is not None else "incremental")
    expired_from = None
    if since is not None:
        start_at = since
    elif cursor is None:
        start_at = now - FIRST_LOOKBACK
    elif now - cursor > CURSOR_EXPIRY:
        expired_from, start_at = cursor, now - FIRST_LOOKBACK
    else:
        start_at = min(cursor, now - timedelta(seconds=1))
    reconcile_due = (
        full
        or fresh
        or expired_from is not None
        or last_reconcile is None
        or now - last_reconcile >= ctx.settings.schedule.reconcile_every
    )
    export_due = reconcile_due or since is not None

    with run_job(ctx, "sync") as run, ctx.client_factory() as client, ThreadPoolExecutor(WORKERS) as pool:
        summary = SyncSummary(run_id=run.run_id, mode=mode)
        tally = Tally()
        resolver = Resolver(ctx, client, tally, pool)
        log = ctx.log.bind(mode=mode)
        if expired_from is not None:
            warning = (
                f"the events cursor {_iso(expired_from)} is older than Gladly's 24 h window; "
                f"restarting at {_iso(start_at)} and repairing the gap from export jobs"
            )
            log.warning("events_cursor_expired", cursor=_iso(expired_from), restart_at=_iso(start_at))
            tally.warnings.append(warning)
        try:
            outcome = events_pass(
                ctx, resolver, start_at=start_at, end_at=now, expired_from=expired_from, fresh=fresh
            )
            summary.events_seen, summary.events_new = outcome.seen, outcome.new
            summary.events_start_at, summary.events_end_at = _iso(start_at), _iso(now)
            if export_due:
                exported = reconcile(
                    ctx, client, full=full or fresh, since=since, progress=progress, resolver=resolver
                )
                summary.export_jobs = exported.jobs_processed
            if reconcile_due:
                tally.rows.update(refresh_references(ctx, client))
                with ctx.db.transaction() as con:
                    upserts.save_cursor(con, RECONCILE_STREAM, _iso(now), ctx.clock())
                summary.reconciled = True
        finally:
            _fill(summary, run, tally, client, started)
        if ctx.settings.storage.snapshot_path is not None:
            ctx.db.publish_snapshot(ctx.settings.storage.snapshot_path)
        summary.duration_seconds = round(time.monotonic() - started, 3)
        log.info(
            "sync_finished",
            rows=summary.rows,
            events=summary.events_seen,
            new_events=summary.events_new,
            conversations=summary.conversations_fetched,
            customers=summary.customers_fetched,
            skipped_inbox_filter=summary.skipped_inbox_filter,
            requests=summary.requests,
            rate_limited=summary.rate_limited,
            export_jobs=summary.export_jobs,
            duration_seconds=summary.duration_seconds,
        )
    return summary


def _fill(summary: SyncSummary, run: RunHandle, tally: Tally, client: GladlyClient, started: float) -> None:
    summary.rows = dict(tally.rows)
    summary.conversations_fetched = tally.conversations_fetched
    summary.customers_fetched = tally.customers_fetched
    summary.skipped_inbox_filter = tally.skipped_inbox_filter
    summary.items_limited = tally.items_limited
    summary.warnings = list(tally.warnings)
    summary.requests, summary.rate_limited = client.requests, client.rate_limited
    summary.duration_seconds = round(time.monotonic() - started, 3)
    run.rows = dict(tally.rows)
    run.requests, run.rate_limited = client.requests, client.rate_limited
