"""The store's tables, defined with SQLModel. Names and columns are an interface for analysts.

Every time is a UTC ``TIMESTAMPTZ``; every Gladly object keeps its full JSON in ``raw`` beside the
typed columns. ``source_at`` (internal) is the instant the row's data describes: the fetch time for
rows read from the API, the job's ``parameters.endAt`` for rows read from an export file; it decides
whether an export row may overwrite a stored one.

``conversation_items`` and ``events`` have no PRIMARY KEY on purpose: DuckDB keeps a PRIMARY KEY as an
in-memory ART index that grows with the table; ids stay unique because every write goes through a
de-duplicated staging table and an anti-join (see ``storage/upserts.py``). The mapper still knows
``id`` as the identity so the ORM can read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Computed, DateTime, Integer, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 4


def _ts(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), **kw))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON))


def _str(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(String, **kw))


def _key() -> Any:
    return Field(sa_column=Column(String, primary_key=True))


class Customer(SQLModel, table=True):
    __tablename__ = "customers"
    id: str = _key()
    name: str | None = _str()
    primary_email: str | None = _str()
    primary_phone: str | None = _str()
    emails: Any = _json()
    phones: Any = _json()
    external_customer_id: str | None = _str()
    custom_attributes: Any = _json()
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    merged_into: str | None = _str()
    deleted_at: datetime | None = _ts()
    raw: Any = _json()
    synced_at: datetime | None = _ts()
    source_at: datetime | None = _ts()


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    id: str = _key()
    customer_id: str | None = _str()
    inbox_id: str | None = _str()
    agent_id: str | None = _str()
    status: str | None = _str()
    topic_ids: list[str] | None = Field(default=None, sa_column=Column(ARRAY(String)))
    custom_attributes: Any = _json()
    created_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    deleted_at: datetime | None = _ts()
    raw: Any = _json()
    synced_at: datetime | None = _ts()
    source_at: datetime | None = _ts()


class ConversationItem(SQLModel, table=True):
    __tablename__ = "conversation_items"
    __mapper_args__ = {"primary_key": ["id"]}
    id: str = Field(sa_column=Column(String, nullable=False))
    conversation_id: str | None = _str()
    customer_id: str | None = _str()
    session_id: str | None = _str()
    timestamp: datetime | None = _ts()
    content_type: str | None = _str()
    initiator_type: str | None = _str()
    initiator_id: str | None = _str()
    responder_type: str | None = _str()
    responder_id: str | None = _str()
    text: str | None = _str()
    # Derived from raw (never written): one copy of the body, so an erasure or a redaction of raw
    # empties content too, and a bulk export ingest writes ~30% fewer bytes.
    content: Any = Field(
        default=None, sa_column=Column(JSON, Computed("json_extract(raw, '$.content')", persisted=False))
    )
    redacted: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    deleted_at: datetime | None = _ts()
    raw: Any = _json()
    synced_at: datetime | None = _ts()
    source_at: datetime | None = _ts()


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __mapper_args__ = {"primary_key": ["id"]}
    id: str = Field(sa_column=Column(String, nullable=False))
    type: str | None = _str()
    timestamp: datetime | None = _ts()
    conversation_id: str | None = _str()
    customer_id: str | None = _str()
    raw: Any = _json()


class SkippedEvent(SQLModel, table=True):
    """Ids of events seen but out of scope (kept ~24 h), so they never make anything dirty again."""

    __tablename__ = "skipped_events"
    id: str = _key()
    timestamp: datetime | None = _ts()


class ScopeExclusion(SQLModel, table=True):
    """Conversations found outside ``inboxes.ingest`` when last checked."""

    __tablename__ = "scope_exclusions"
    conversation_id: str = _key()
    inbox_id: str | None = _str()
    checked_at: datetime | None = _ts()


class Inbox(SQLModel, table=True):
    __tablename__ = "inboxes"
    id: str = _key()
    name: str | None = _str()
    disabled: bool | None = Field(default=None, sa_column=Column(Boolean))
    raw: Any = _json()
    synced_at: datetime | None = _ts()


class Agent(SQLModel, table=True):
    __tablename__ = "agents"
    id: str = _key()
    name: str | None = _str()
    email_address: str | None = _str()
    raw: Any = _json()
    synced_at: datetime | None = _ts()


class Topic(SQLModel, table=True):
    __tablename__ = "topics"
    id: str = _key()
    name: str | None = _str()
    disabled: bool | None = Field(default=None, sa_column=Column(Boolean))
    parent_id: str | None = _str()
    raw: Any = _json()
    synced_at: datetime | None = _ts()


class Organization(SQLModel, table=True):
    """The Gladly organization (``GET /organization``): its time zone decides ``daily_volume``'s days."""

    __tablename__ = "organization"
    id: str = _key()
    name: str | None = _str()
    timezone: str | None = _str()
    raw: Any = _json()
    synced_at: datetime | None = _ts()


class ExportJob(SQLModel, table=True):
    """Export jobs already ingested (by id and ``updatedAt``)."""

    __tablename__ = "export_jobs"
    id: str = _key()
    updated_at: datetime | None = _ts()
    start_at: datetime | None = _ts()
    end_at: datetime | None = _ts()
    processed_at: datetime | None = _ts()
    items: int | None = Field(default=None, sa_column=Column(BigInteger))
    customers: int | None = Field(default=None, sa_column=Column(BigInteger))


class ExportSkippedLine(SQLModel, table=True):
    """Export file lines that were not valid JSON (or not an object): skipped, the rest stored."""

    __tablename__ = "export_skipped_lines"
    job_id: str = Field(sa_column=Column(String, primary_key=True))
    file: str = Field(sa_column=Column(String, primary_key=True))
    line: int = Field(sa_column=Column(BigInteger, primary_key=True))
    reason: str | None = _str()
    recorded_at: datetime | None = _ts()


class SyncState(SQLModel, table=True):
    __tablename__ = "sync_state"
    stream: str = _key()
    cursor: str | None = _str()
    updated_at: datetime | None = _ts()


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_runs"
    run_id: str = _key()
    job: str = Field(sa_column=Column(String, nullable=False))
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    status: str | None = _str()
    requests: int | None = Field(default=None, sa_column=Column(Integer))
    rate_limited: int | None = Field(default=None, sa_column=Column(Integer))
    rows: Any = _json()
    error: str | None = _str()
    pid: int | None = Field(default=None, sa_column=Column(Integer))
    host: str | None = _str()


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    applied_at: datetime | None = _ts()


# --------------------------------------------------------------------------- descriptions (COMMENTs)
# The store's documentation for analysts, written once here and applied as ``COMMENT ON`` by
# ``storage/schema.py``: DuckDB's ``duckdb_tables()``/``duckdb_columns()`` (and PostgreSQL's
# ``\d+``) show them, so the snapshot explains itself. A test checks every column of every analyst
# table and view has one.


@dataclass(frozen=True)
class Described:
    """A table's or view's COMMENT and one COMMENT per column."""

    comment: str
    columns: dict[str, str]


_SYNCED_AT = "When gladly-sync last wrote this row (UTC)."
_SOURCE_AT = (
    "Internal: the instant this row's data describes (fetch time for the API, the export job's end "
    "for export rows); decides whether an export row may overwrite it."
)
_RAW = "The object exactly as Gladly sent it (JSON); blanked when the data is erased."

ANALYST_TABLES: dict[str, Described] = {
    "organization": Described(
        "The Gladly organization (GET /organization); its timezone decides the days of daily_volume.",
        {
            "id": "Gladly's organization id.",
            "name": "The organization's name.",
            "timezone": "The organization's IANA time zone, e.g. America/Los_Angeles.",
            "raw": _RAW,
            "synced_at": _SYNCED_AT,
        },
    ),
    "customers": Described(
        "Customer profiles of in-scope conversations; merged ones keep merged_into, erased ones deleted_at.",
        {
            "id": "Gladly's customer id.",
            "name": "The customer's name.",
            "primary_email": "The email address marked primary, else the first one.",
            "primary_phone": "The phone number marked primary (normalized), else the first one.",
            "emails": "Every email address, as Gladly's objects (JSON).",
            "phones": "Every phone number, as Gladly's objects (JSON).",
            "external_customer_id": "The id of this customer in the company's own systems.",
            "custom_attributes": "The profile's custom attributes (JSON object).",
            "created_at": "When the profile was created in Gladly (UTC).",
            "updated_at": "When the profile was last updated in Gladly (UTC).",
            "merged_into": "The surviving customer's id when this profile was merged into another.",
            "deleted_at": "When the profile was deleted (erased); its personal columns are then empty.",
            "raw": _RAW,
            "synced_at": _SYNCED_AT,
            "source_at": _SOURCE_AT,
        },
    ),
    "conversations": Described(
        "Conversations in the ingested inboxes, with their current inbox, agent and status.",
        {
            "id": "Gladly's conversation id.",
            "customer_id": "The customer the conversation is with (customers.id).",
            "inbox_id": "The inbox the conversation is currently in (inboxes.id).",
            "agent_id": "The agent currently assigned (agents.id), NULL when unassigned.",
            "status": "OPEN, WAITING or CLOSED.",
            "topic_ids": "The topics applied to the conversation (topics.id).",
            "custom_attributes": "The conversation's custom attributes (JSON list of {id, value}).",
            "created_at": "When the conversation started (UTC).",
            "closed_at": "When the conversation was last closed (UTC), NULL unless CLOSED.",
            "deleted_at": "When the conversation was erased or disappeared in a customer merge.",
            "raw": _RAW,
            "synced_at": _SYNCED_AT,
            "source_at": _SOURCE_AT,
        },
    ),
    "conversation_items": Described(
        "Everything that happened in a conversation: messages, calls, notes, status and topic changes.",
        {
            "id": "Gladly's item id.",
            "conversation_id": "The conversation the item belongs to (conversations.id).",
            "customer_id": "The customer of the conversation (customers.id).",
            "session_id": "The chat session, for chat items.",
            "timestamp": "When the item happened (UTC).",
            "content_type": "The item type: EMAIL, CHAT_MESSAGE, SMS, PHONE_CALL, CONVERSATION_NOTE, ...",
            "initiator_type": "Who created the item: CUSTOMER, AGENT, API, AUTOMATION, SYSTEM, ...",
            "initiator_id": "The id of the customer or agent who created the item.",
            "responder_type": "Who the item was addressed to, when Gladly says.",
            "responder_id": "The id of the responder, when Gladly says.",
            "text": "The readable body as plain text (email: subject, blank line, body; notes without HTML).",
            "content": "The item's content object as Gladly sent it (JSON).",
            "redacted": "True when Gladly redacted the item; text, content and raw are then emptied.",
            "deleted_at": "When the item was erased with its conversation or customer.",
            "raw": _RAW,
            "synced_at": _SYNCED_AT,
            "source_at": _SOURCE_AT,
        },
    ),
    "events": Described(
        "Gladly events about in-scope conversations and customers (Gladly keeps events 24 h).",
        {
            "id": "Gladly's event id.",
            "type": "The event type, e.g. CONVERSATION/CLOSED or CONTACT/MESSAGE_RECEIVED.",
            "timestamp": "When the event happened (UTC).",
            "conversation_id": "The conversation the event is about, if any.",
            "customer_id": "The customer the event is about, if any.",
            "raw": _RAW,
        },
    ),
    "inboxes": Described(
        "The organization's inboxes; refreshed by sync --full and each reconcile pass.",
        {
            "id": "Gladly's inbox id.",
            "name": "The inbox name.",
            "disabled": "True when the inbox is disabled.",
            "raw": _RAW,
            "synced_at": _SYNCED_AT,
        },
    ),
    "agents": Described(
        "The organization's agents (people and the API user); refreshed with the inboxes.",
        {
            "id": "Gladly's agent id.",
            "name": "The agent's name.",
            "email_address": "The agent's login email address.",
            "raw": _RAW,
            "synced_at": _SYNCED_AT,
        },
    ),
    "topics": Described(
        "The organization's conversation topics; refreshed with the inboxes.",
        {
            "id": "Gladly's topic id.",
            "name": "The topic name.",
            "disabled": "True when the topic can no longer be applied.",
            "parent_id": "The parent topic (topics.id), if any.",
            "raw": _RAW,
            "synced_at": _SYNCED_AT,
        },
    ),
    "outbox": Described(
        "Replies, notes and escalations queued for Gladly, with their delivery state.",
        {
            "id": "The action's id (UUID).",
            "kind": "reply, note or escalation.",
            "conversation_id": "The conversation the action is for (conversations.id).",
            "body": "The reply or note text (for an escalation: its optional note).",
            "body_is_html": "True when the body is sent as HTML.",
            "channel": "The reply's channel, taken from the message it answers.",
            "target_inbox_id": "The inbox an escalation moves the conversation to.",
            "reply_to_item_id": "The customer message a reply answers (conversation_items.id).",
            "dedupe_key": "The caller's idempotency key; unique when set.",
            "status": "pending, sending, unknown, sent, failed or cancelled.",
            "attempts": "Attempts that may have reached Gladly.",
            "last_attempt_at": "When the last attempt started (UTC).",
            "next_attempt_at": "When the action is next due (UTC).",
            "last_error": "Gladly's refusal or the last failure, if any.",
            "note_item_id": "The escalation note's item id once sent.",
            "gladly_item_id": "The item Gladly created for the action once sent.",
            "created_at": "When the action was queued (UTC).",
            "sent_at": "When Gladly accepted the action (UTC).",
            "seq": "Queue order; actions of one conversation go out in this order.",
        },
    ),
}

_CONVERSATION = "The conversation (conversations.id)."
_CUSTOMER = "The conversation's customer (customers.id)."
_INBOX = "The conversation's current inbox (inboxes.id)."
_INBOX_NAME = "The inbox's name."
_STATUS = "The conversation's status: OPEN, WAITING or CLOSED."
_CHANNEL = (
    "The content type of the conversation's earliest customer message (EMAIL, CHAT_MESSAGE, SMS, "
    "WHATSAPP, FACEBOOK_MESSAGE, INSTAGRAM_DIRECT, TWITTER, PHONE_CALL, VOICEMAIL); NULL if none."
)

ANALYST_VIEWS: dict[str, Described] = {
    "conversation_timeline": Described(
        "Items of live conversations joined with their conversation, customer, inbox and agent, "
        "in time order.",
        {
            "conversation_id": _CONVERSATION,
            "item_id": "The item (conversation_items.id).",
            "timestamp": "When the item happened (UTC).",
            "content_type": "The item type.",
            "initiator_type": "Who created the item: CUSTOMER, AGENT, ...",
            "initiator_id": "The customer or agent who created the item.",
            "agent_name": "The agent's name when an agent created the item.",
            "text": "The item's readable text.",
            "customer_id": _CUSTOMER,
            "customer_name": "The customer's name.",
            "inbox_id": _INBOX,
            "inbox_name": _INBOX_NAME,
            "status": _STATUS,
        },
    ),
    "open_conversations": Described(
        "OPEN and WAITING conversations with their customer, inbox, agent and latest item time.",
        {
            "conversation_id": _CONVERSATION,
            "status": "OPEN or WAITING.",
            "customer_id": _CUSTOMER,
            "customer_name": "The customer's name.",
            "inbox_id": _INBOX,
            "inbox_name": _INBOX_NAME,
            "agent_id": "The assigned agent (agents.id).",
            "agent_name": "The assigned agent's name.",
            "created_at": "When the conversation started (UTC).",
            "last_item_at": "When the conversation's latest item happened (UTC).",
        },
    ),
    "conversation_metrics": Described(
        "One row per stored (not erased) conversation: channel, first response, resolution, reopens "
        "and message counts. Items with deleted_at are ignored.",
        {
            "conversation_id": _CONVERSATION,
            "customer_id": _CUSTOMER,
            "inbox_id": _INBOX,
            "inbox_name": _INBOX_NAME,
            "status": _STATUS,
            "channel": _CHANNEL,
            "created_at": "When the conversation started (UTC).",
            "first_customer_message_at": "When the earliest customer message happened (UTC).",
            "first_response_at": "The earliest agent message strictly after the first customer message "
            "(UTC).",
            "first_response_seconds": "first_response_at - first_customer_message_at in seconds; "
            "NULL without a response.",
            "closed_at": "When the conversation was closed (UTC).",
            "resolution_seconds": "closed_at - created_at in seconds when the status is CLOSED, else NULL.",
            "reopen_count": "Status changes to OPEN that follow an earlier status change to CLOSED.",
            "customer_messages": "Messages initiated by the customer.",
            "agent_messages": "Messages initiated by an agent.",
            "notes": "Internal notes (CONVERSATION_NOTE items).",
        },
    ),
    "daily_volume": Described(
        "Per day in the organization's time zone, inbox and channel: conversations created and "
        "messages, each message counted in its conversation's inbox and channel.",
        {
            "local_date": "The day in the organization's time zone (organization.timezone; UTC if unknown).",
            "inbox_id": _INBOX,
            "channel": _CHANNEL,
            "conversations_created": "Conversations created that day.",
            "customer_messages": "Customer messages sent that day.",
            "agent_messages": "Agent messages sent that day.",
        },
    ),
}

BOOKKEEPING_TABLES: dict[str, str] = {
    "skipped_events": "gladly-sync bookkeeping: ids of out-of-scope events already seen (kept ~24 h).",
    "scope_exclusions": "gladly-sync bookkeeping: conversations found outside inboxes.ingest.",
    "export_jobs": "gladly-sync bookkeeping: Gladly export jobs already ingested.",
    "export_skipped_lines": "gladly-sync bookkeeping: export file lines skipped (not valid JSON), per job.",
    "sync_state": "gladly-sync bookkeeping: the cursor of each stream.",
    "sync_runs": "gladly-sync bookkeeping: one row per sync, drain or reconcile run.",
    "run_progress": "gladly-sync bookkeeping: the progress each running job last reported (PostgreSQL only).",
    "schema_version": "gladly-sync bookkeeping: the migrations applied to this store.",
}
