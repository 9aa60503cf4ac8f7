"""The analysts' metric views: ``conversation_metrics`` and ``daily_volume`` (SPEC, Second release).

Their columns and definitions are an interface (dashboards depend on them); the column descriptions
live in ``storage/tables.py`` (``ANALYST_VIEWS``). The SQL is kept portable to PostgreSQL: window
functions, ``FILTER``, ``->``/``->>`` on JSON, ``extract(epoch FROM interval)`` and ``AT TIME ZONE``
mean the same in both. DuckDB-specific: ``AT TIME ZONE`` with a zone name needs DuckDB's ICU
extension, which the ``duckdb`` Python wheel links statically (no download; a test checks it).

Rules, as SPEC words them:

* message items are the content types of :data:`MESSAGE_TYPES`; items with ``deleted_at`` are
  ignored; erased conversations (``deleted_at``) have no row;
* ``channel`` is the content type of the earliest customer message (ties broken by item id);
* ``first_response_at`` is the earliest AGENT message strictly after the first customer message;
* ``reopen_count`` counts status changes to OPEN after the first status change to CLOSED;
* ``daily_volume`` counts each conversation on its creation day and each message on its own day,
  both in the organization's time zone (UTC until ``organization`` is synced), under the
  conversation's inbox and channel.
"""

from __future__ import annotations

MESSAGE_TYPES = (
    "CHAT_MESSAGE",
    "EMAIL",
    "SMS",
    "WHATSAPP",
    "FACEBOOK_MESSAGE",
    "INSTAGRAM_DIRECT",
    "TWITTER",
    "PHONE_CALL",
    "VOICEMAIL",
)
_MESSAGE = "content_type IN (" + ", ".join(f"'{kind}'" for kind in MESSAGE_TYPES) + ")"

# Each conversation's earliest customer message: its channel and time (both views need it).
_FIRST_CUSTOMER_MESSAGE = f"""first_customer_message AS (
    SELECT conversation_id, content_type AS channel, timestamp AS first_customer_message_at
    FROM (
        SELECT
            conversation_id,
            content_type,
            timestamp,
            row_number() OVER (PARTITION BY conversation_id ORDER BY timestamp, id) AS position
        FROM conversation_items
        WHERE deleted_at IS NULL AND {_MESSAGE} AND initiator_type = 'CUSTOMER'
    ) AS customer_messages
    WHERE position = 1
)"""

CONVERSATION_METRICS = f"""
CREATE OR REPLACE VIEW conversation_metrics AS
WITH live_items AS (
    SELECT
        conversation_id,
        id,
        timestamp,
        content_type,
        initiator_type,
        {_MESSAGE} AS is_message,
        CASE WHEN content_type = 'CONVERSATION_STATUS_CHANGE' THEN raw -> 'content' ->> 'status' END
            AS status_change
    FROM conversation_items
    WHERE deleted_at IS NULL
),
{_FIRST_CUSTOMER_MESSAGE},
first_close AS (
    SELECT conversation_id, min(timestamp) AS first_closed_at
    FROM live_items
    WHERE status_change = 'CLOSED'
    GROUP BY conversation_id
),
counts AS (
    SELECT
        i.conversation_id,
        min(i.timestamp) FILTER (
            WHERE i.is_message AND i.initiator_type = 'AGENT' AND i.timestamp > f.first_customer_message_at
        ) AS first_response_at,
        count(*) FILTER (WHERE i.status_change = 'OPEN' AND i.timestamp > fc.first_closed_at) AS reopen_count,
        count(*) FILTER (WHERE i.is_message AND i.initiator_type = 'CUSTOMER') AS customer_messages,
        count(*) FILTER (WHERE i.is_message AND i.initiator_type = 'AGENT') AS agent_messages,
        count(*) FILTER (WHERE i.content_type = 'CONVERSATION_NOTE') AS notes
    FROM live_items AS i
    LEFT JOIN first_customer_message AS f ON f.conversation_id = i.conversation_id
    LEFT JOIN first_close AS fc ON fc.conversation_id = i.conversation_id
    GROUP BY i.conversation_id
)
SELECT
    c.id AS conversation_id,
    c.customer_id,
    c.inbox_id,
    ib.name AS inbox_name,
    c.status,
    f.channel,
    c.created_at,
    f.first_customer_message_at,
    n.first_response_at,
    CAST(extract(epoch FROM (n.first_response_at - f.first_customer_message_at)) AS DOUBLE PRECISION)
        AS first_response_seconds,
    c.closed_at,
    CASE WHEN c.status = 'CLOSED'
        THEN CAST(extract(epoch FROM (c.closed_at - c.created_at)) AS DOUBLE PRECISION)
    END AS resolution_seconds,
    coalesce(n.reopen_count, 0) AS reopen_count,
    coalesce(n.customer_messages, 0) AS customer_messages,
    coalesce(n.agent_messages, 0) AS agent_messages,
    coalesce(n.notes, 0) AS notes
FROM conversations AS c
LEFT JOIN inboxes AS ib ON ib.id = c.inbox_id
LEFT JOIN first_customer_message AS f ON f.conversation_id = c.id
LEFT JOIN counts AS n ON n.conversation_id = c.id
WHERE c.deleted_at IS NULL
ORDER BY c.created_at, c.id
"""

DAILY_VOLUME = f"""
CREATE OR REPLACE VIEW daily_volume AS
WITH zone AS (
    SELECT coalesce(max(o.timezone), 'UTC') AS name FROM organization AS o
),
{_FIRST_CUSTOMER_MESSAGE},
live_conversations AS (
    SELECT c.id AS conversation_id, c.created_at, c.inbox_id, f.channel
    FROM conversations AS c
    LEFT JOIN first_customer_message AS f ON f.conversation_id = c.id
    WHERE c.deleted_at IS NULL
),
happenings AS (
    SELECT m.created_at AS at, m.inbox_id, m.channel, 'created' AS kind
    FROM live_conversations AS m
    UNION ALL
    SELECT i.timestamp AS at, m.inbox_id, m.channel, i.initiator_type AS kind
    FROM conversation_items AS i
    JOIN live_conversations AS m ON m.conversation_id = i.conversation_id
    WHERE i.deleted_at IS NULL AND i.{_MESSAGE} AND i.initiator_type IN ('CUSTOMER', 'AGENT')
)
SELECT
    CAST(h.at AT TIME ZONE z.name AS DATE) AS local_date,
    h.inbox_id,
    h.channel,
    count(*) FILTER (WHERE h.kind = 'created') AS conversations_created,
    count(*) FILTER (WHERE h.kind = 'CUSTOMER') AS customer_messages,
    count(*) FILTER (WHERE h.kind = 'AGENT') AS agent_messages
FROM happenings AS h
CROSS JOIN zone AS z
GROUP BY CAST(h.at AT TIME ZONE z.name AS DATE), h.inbox_id, h.channel
ORDER BY local_date, h.inbox_id, h.channel
"""

METRIC_VIEWS = (CONVERSATION_METRICS, DAILY_VOLUME)
