"""The events pass: poll ``GET /events`` from the saved cursor and resolve what changed.

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
    collect_changes,
    event_at,
    event_content,
    event_conversation_ids,
    text_or_none,
)
from gladly_sync.sync.pull.coverage import add_gap, extend_coverage, load_gaps, save_gaps, utc_iso
from gladly_sync.sync.pull.resolve import BATCH, Batch, Resolver, chunks

LATENESS = timedelta(seconds=15)  # Gladly: events are up to 15 s behind real time
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
        start_at=utc_iso(start_at),
        end_at=utc_iso(end_at),
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
                    batch.skipped_events.append((event["id"], event_at(event) or end_at))
        with db.transaction() as con:
            resolver.write(con, batch, stored)
        stored.update(c.id for c in conversations if c.in_scope and c.conversation is not None)

    # Customers: changed profiles and merges of customers in scope, then erasures.
    final = Batch()
    for conversation_id in hinted_out:
        final.skipped_events += [
            (e["id"], event_at(e) or end_at) for e in by_conversation.get(conversation_id, [])
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
        content = event_content(event)
        if event.get("type") == "CUSTOMER/MERGED" or text_or_none(content.get("customerId")) in known_after:
            final.events.append(event)
        else:
            final.skipped_events.append((event["id"], event_at(event) or end_at))

    now = ctx.clock()
    with db.transaction() as con:
        resolver.write(con, final, stored)
        if expired_from is not None:
            save_gaps(con, add_gap(load_gaps(con), expired_from, start_at), now)
        if fresh:
            extend_coverage(con, start_at, now)
        upserts.prune_skipped_events(con, now - SKIPPED_EVENTS_KEEP)
        upserts.save_cursor(con, EVENTS_STREAM, utc_iso(end_at - LATENESS), now)
    return outcome


