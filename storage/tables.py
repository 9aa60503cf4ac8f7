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

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Computed, DateTime, Integer, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 1


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


class OutboxAction(SQLModel, table=True):
    __tablename__ = "outbox"
    id: str = _key()
    kind: str = Field(sa_column=Column(String, nullable=False))
    conversation_id: str = Field(sa_column=Column(String, nullable=False))
    body: str | None = _str()
    body_is_html: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    channel: str | None = _str()
    target_inbox_id: str | None = _str()
    reply_to_item_id: str | None = _str()
    dedupe_key: str | None = _str(unique=True)
    status: str = Field(sa_column=Column(String, nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    last_attempt_at: datetime | None = _ts()
    next_attempt_at: datetime | None = _ts()
    last_error: str | None = _str()
    note_item_id: str | None = _str()
    gladly_item_id: str | None = _str()
    created_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    seq: int | None = Field(default=None, sa_column=Column(BigInteger))


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


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    applied_at: datetime | None = _ts()
