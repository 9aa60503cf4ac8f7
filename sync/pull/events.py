"""The events pass: poll ``GET /events`` from the saved cursor and resolve what changed.

The poll asks for everything from the cursor to Gladly's now; where it ends (``endAt``) is read from
Gladly's clock, the ``Date`` header of the response, never the host's, so a host clock ahead of
Gladly's cannot move the cursor past events that have not happened yet. The cursor then trails
``endAt`` by ``MARGIN`` (2 min: Gladly documents events up to 15 s late, and they are later in
practice); events are deduplicated by id, so re-reading the overlap costs one request and no work.
The cursor moves only in the transaction that stores the last batch, also when no event came.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gladly_sync.storage import upserts
from gladly_sync.sync.context import Context
from gladly_sync.sync.pull.changes import (
    ENTITIES,
    Changes,
    collect_changes,
    event_at,
    event_content,
    event_conversation_ids,
    text_or_none,
)
from gladly_sync.sync.pull.coverage import add_gap, extend_coverage, load_gaps, save_gaps, utc_iso
from gladly_sync.sync.pull.resolve import BATCH, Batch, Resolver, chunks

Event = dict[str, Any]

MARGIN = timedelta(minutes=2)  # the cursor trails endAt by this much (Gladly says events lag <= 15 s)
FIRST_LOOKBACK = timedelta(hours=23)  # Gladly rejects a startAt 24 h back exactly
SINCE_LIMIT = timedelta(hours=23)
CURSOR_EXPIRY = timedelta(hours=23, minutes=50)  # older than this, the poll would leave the window
SKIPPED_EVENTS_KEEP = timedelta(hours=25)
EVENTS_STREAM = "events"



# --------------------------------------------------------------------------- the events pass


@dataclass
class EventsOutcome:
    seen: int = 0
    new: int = 0
    start_at: datetime | None = None
    end_at: datetime | None = None
    expired: bool = False


@dataclass
class _Known:
    """What the store already holds about one poll's new events."""

    changes: Changes
    stored: set[str]  # dirty conversations already stored
    exclusions: dict[str, Any]  # dirty conversations excluded by the inbox filter
    missing_items: dict[str, list[str]]  # per conversation, item ids its events name that are not stored


def events_pass(
    ctx: Context,
    resolver: Resolver,
    *,
    start_at: datetime,
    expired_from: datetime | None = None,
    fresh: bool = False,
) -> EventsOutcome:
    """Poll events from ``start_at`` to Gladly's now, apply what changed, save the cursor at
    ``endAt - MARGIN``."""
    events, end_at = _poll(ctx, resolver, start_at)
    known = _read_known(ctx, resolver, events)
    expired = expired_from is not None
    outcome = EventsOutcome(len(events), len(known.changes.events), start_at, end_at, expired)
    ctx.log.info(
        "events_polled",
        events=len(events),
        new=outcome.new,
        conversations=len(known.changes.conversations),
        start_at=utc_iso(start_at),
        end_at=utc_iso(end_at),
    )
    to_fetch, hinted_out = _split_by_hint(ctx, resolver, known)
    by_conversation, rest = _group_by_conversation(known.changes.events)
    _resolve_conversations(ctx, resolver, known, to_fetch, by_conversation, end_at)
    final = _customer_batch(resolver, known.changes, rest, end_at)
    for conversation_id in hinted_out:
        final.skipped_events += _skipped(by_conversation.get(conversation_id, []), end_at)
    _commit(ctx, resolver, final, known.stored, start_at, end_at, expired_from=expired_from, fresh=fresh)
    return outcome


def _poll(ctx: Context, resolver: Resolver, start_at: datetime) -> tuple[list[Event], datetime]:
    """The events from ``start_at`` on, and where the page ends on Gladly's clock (its ``Date``)."""
    page = resolver.client.poll_events(start_at, ENTITIES)
    if page.served_at is not None:
        return page.events, max(page.served_at, start_at)
    # No usable Date header: the host's clock, which MARGIN protects against a small skew.
    ctx.log.warning("events_date_missing", fallback="host clock")
    return page.events, max(ctx.clock(), start_at)


def _read_known(ctx: Context, resolver: Resolver, events: list[Event]) -> _Known:
    """Local reads only: which events are known, which dirty conversations, customers and named
    items the store already holds."""
    known = _Known(Changes(), set(), {}, {})
    with ctx.db.connect() as con:
        seen = upserts.known_event_ids(con, list({event["id"] for event in events})) if events else set()
        changes = known.changes = collect_changes(events, seen)
        if changes.conversations:
            known.stored = set(upserts.stored_conversations(con, changes.conversations))
            known.exclusions = upserts.scope_exclusions(con, changes.conversations)
        customer_ids = changes.customer_ids()
        if customer_ids:
            resolver.stored_customers.update(upserts.stored_customer_ids(con, customer_ids))
        named = [item_id for ids in changes.item_ids.values() for item_id in ids]
        have = upserts.stored_item_ids(con, named) if named else set()
    known.missing_items = {
        conversation_id: [item_id for item_id in ids if item_id not in have]
        for conversation_id, ids in changes.item_ids.items()
    }
    return known


def _split_by_hint(ctx: Context, resolver: Resolver, known: _Known) -> tuple[list[str], set[str]]:
    """An inbox hint outside the scope saves the GET of a conversation we do not keep."""
    to_fetch, hinted_out = [], set()
    for conversation_id in known.changes.conversations:
        hint = known.changes.inbox_hints.get(conversation_id)
        stored = conversation_id in known.stored
        keeps = stored and conversation_id not in known.exclusions
        if hint is not None and not keeps and not resolver.scope.admits(hint, stored=stored):
            hinted_out.add(conversation_id)
        else:
            to_fetch.append(conversation_id)
    if hinted_out:
        resolver.tally.skipped_inbox_filter += len(hinted_out)
        ctx.log.info("conversations_skipped_by_hint", conversations=len(hinted_out))
    return to_fetch, hinted_out


def _group_by_conversation(events: list[Event]) -> tuple[dict[str, list[Event]], list[Event]]:
    """Events by the conversation they are about; merges and conversation-less events apart."""
    by_conversation: dict[str, list[Event]] = {}
    rest: list[Event] = []
    for event in events:
        conversation_ids = event_conversation_ids(event)
        if event.get("type") == "CUSTOMER/MERGED" or not conversation_ids:
            rest.append(event)
        else:
            by_conversation.setdefault(conversation_ids[0], []).append(event)
    return by_conversation, rest


def _skipped(events: list[Event], end_at: datetime) -> list[tuple[str, datetime | None]]:
    return [(event["id"], event_at(event) or end_at) for event in events]


def _resolve_conversations(
    ctx: Context,
    resolver: Resolver,
    known: _Known,
    to_fetch: list[str],
    by_conversation: dict[str, list[Event]],
    end_at: datetime,
) -> None:
    """Fetch and write the dirty conversations in batches, each with the events it covers."""
    stored = known.stored
    for batch_ids in chunks(to_fetch, BATCH):
        conversations, customers = resolver.resolve(
            batch_ids, stored=stored, items=True, named_items=known.missing_items
        )
        batch = Batch(customers=customers, conversations=conversations)
        for fetched in conversations:
            keep = fetched.in_scope or (fetched.conversation is None and fetched.id in stored)
            events = by_conversation.get(fetched.id, [])
            if keep:
                batch.events += events
            else:
                batch.skipped_events += _skipped(events, end_at)
        with ctx.db.transaction() as con:
            resolver.write(con, batch, stored)
        stored.update(c.id for c in conversations if c.in_scope and c.conversation is not None)


def _customer_batch(resolver: Resolver, changes: Changes, rest: list[Event], end_at: datetime) -> Batch:
    """Changed profiles and merges of customers in scope, then erasures, with their events."""
    final = Batch()
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
        content = event_content(event)
        if event.get("type") == "CUSTOMER/MERGED" or text_or_none(content.get("customerId")) in known_after:
            final.events.append(event)
        else:
            final.skipped_events += _skipped([event], end_at)
    return final


def _commit(
    ctx: Context,
    resolver: Resolver,
    final: Batch,
    stored: set[str],
    start_at: datetime,
    end_at: datetime,
    *,
    expired_from: datetime | None,
    fresh: bool,
) -> None:
    """The last transaction: customers, gaps and coverage, and the cursor at ``end_at - MARGIN``."""
    now = ctx.clock()
    with ctx.db.transaction() as con:
        resolver.write(con, final, stored)
        if expired_from is not None:
            save_gaps(con, add_gap(load_gaps(con), expired_from, start_at), now)
        if fresh:
            extend_coverage(con, start_at, now)
        upserts.prune_skipped_events(con, now - SKIPPED_EVENTS_KEEP)
        upserts.save_cursor(con, EVENTS_STREAM, utc_iso(max(start_at, end_at - MARGIN)), now)
