"""The outbox database's tables, in SQLAlchemy Core, for every backend the outbox runs on.

``outbox`` keeps the name and columns analysts know (SPEC, Tables). Times are stored in UTC and
always read back UTC-aware (:class:`UTCDateTime`), also on SQLite, which has no time zone type.

``seq`` (queue order) comes from a sequence, never ``max(seq) + 1``: on a backend with sequences
(PostgreSQL) it is ``outbox_seq``; on SQLite it is the AUTOINCREMENT key of ``outbox_seq``, a
one-column table whose rows are only ever used to draw numbers (see ``database.next_seq``).

``outbox_meta`` is a small key/value table: ``store_outbox_imported`` records that an older
DuckDB store's outbox rows were moved here (``bridge.import_store_outbox``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

__all__ = ["METADATA", "OUTBOX", "OUTBOX_META", "OUTBOX_SEQ", "SEQUENCE", "UTCDateTime"]


class UTCDateTime(TypeDecorator[datetime]):
    """A ``timestamptz`` that takes aware datetimes, stores them in UTC and returns them UTC-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"outbox times must be timezone-aware, got {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


METADATA = MetaData()

SEQUENCE = Sequence("outbox_seq_seq", metadata=METADATA)

OUTBOX = Table(
    "outbox",
    METADATA,
    Column("id", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("conversation_id", String, nullable=False),
    Column("body", String),
    Column("body_is_html", Boolean, nullable=False, default=False),
    Column("channel", String),
    Column("target_inbox_id", String),
    Column("reply_to_item_id", String),
    Column("dedupe_key", String, unique=True),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_attempt_at", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", String),
    Column("note_item_id", String),
    Column("gladly_item_id", String),
    Column("created_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("seq", BigInteger),
    Index("outbox_open_by_conversation", "status", "conversation_id", "seq"),
)

# SQLite's stand-in for a sequence: INSERT a row, take its AUTOINCREMENT id, delete it.
OUTBOX_SEQ = Table(
    "outbox_seq",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    sqlite_autoincrement=True,
)

OUTBOX_META = Table(
    "outbox_meta",
    METADATA,
    Column("key", String, primary_key=True),
    Column("value", String),
    Column("updated_at", UTCDateTime),
)
