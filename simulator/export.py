"""Export jobs and their ndjson files, produced lazily as byte chunks.

Files are generated at download time from the world as it is then (so a redaction made before
a download shows in it). Gladly's OpenAPI declares the files as JSON arrays but serves ndjson:
one object per line. A bulk job's conversation_items.jsonl is synthetic and generated line by
line from a seed, so a 1,000,000-line file never exists in memory.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gladly_sync.simulator.ids import slug_from_int
from gladly_sync.simulator.lexicon import AGENT_SENTENCES, CUSTOMER_SENTENCES, NOTE_SENTENCES, SUBJECTS
from gladly_sync.simulator.organization import COMPANY_PHONE, SUPPORT_ADDRESS

EXPORT_FILES = ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl")
CHUNK_BYTES = 256 * 1024
TEXT_POOL_SIZE = 64


@dataclass
class BulkSpec:
    seed: str
    items: int
    conversations: list[tuple[str, str]]   # (conversation id, customer id)
    agent_ids: list[str]
    start: datetime
    end: datetime

    @property
    def customer_ids(self) -> list[str]:
        return [customer for _, customer in self.conversations]


@dataclass
class ExportJob:
    data: dict[str, Any]
    start: datetime
    end: datetime
    updated: datetime
    bulk: BulkSpec | None = None


def customer_export_row(profile: dict[str, Any]) -> dict[str, Any]:
    """A profile in customers.jsonl's shape: flat email/phone strings, no attributes or times."""
    row: dict[str, Any] = {"id": profile["id"], "name": profile.get("name", "")}
    if profile.get("address"):
        row["address"] = profile["address"]
    row["emailAddresses"] = [e["original"] for e in profile.get("emails", [])]
    row["phoneNumbers"] = [p.get("normalized", p["original"]) for p in profile.get("phones", [])]
    if profile.get("externalCustomerId"):
        row["externalCustomerId"] = profile["externalCustomerId"]
    if profile.get("externalCustomerIds"):
        row["externalCustomerIds"] = profile["externalCustomerIds"]
    return row


def encode_rows(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Rows as ndjson, grouped into chunks of about CHUNK_BYTES."""
    return _chunked(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n" for row in rows)


def _chunked(lines: Iterable[str]) -> Iterator[bytes]:
    """Lines joined into UTF-8 chunks of about CHUNK_BYTES, so a file streams without being built whole."""
    buffer: list[str] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(buffer).encode("utf-8")
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")


def _escaped(text: str) -> str:
    return json.dumps(text)[1:-1]


def _text_pool(rng: random.Random, sentences: tuple[str, ...]) -> list[str]:
    """Message texts of 150 to 600 characters, JSON-escaped for splicing into templates."""
    pool = []
    for _ in range(TEXT_POOL_SIZE):
        target = rng.randint(150, 600)
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < target:
            parts.append(rng.choice(sentences))
        pool.append(_escaped(" ".join(parts)[:target]))
    return pool


_HEAD = ('{"id":"%s","conversationId":"%s","customerId":"%s",%s"timestamp":"%s",'
         '"initiator":{"id":"%s","type":"%s"},')
_RESPONDER = '"responder":{"id":"%s","type":"%s"},'
_EMAIL = ('"content":{"type":"EMAIL","from":"%s","to":["%s"],"subject":"%s",'
          '"content":"%s","attachments":[]}}\n')
_CHAT = '"content":{"type":"CHAT_MESSAGE","messageType":"TEXT","sessionId":"%s","content":"%s"}}\n'
_SMS = '"content":{"type":"SMS","from":"%s","to":"%s","content":"%s"}}\n'
_NOTE = '"content":{"type":"CONVERSATION_NOTE","body":"%s"}}\n'


def bulk_item_chunks(spec: BulkSpec) -> Iterator[bytes]:
    """The bulk job's conversation_items.jsonl, deterministic, ascending by timestamp."""
    return _chunked(_bulk_item_lines(spec))


def _bulk_item_lines(spec: BulkSpec) -> Iterator[str]:
    rng = random.Random(spec.seed)
    customer_texts = _text_pool(rng, CUSTOMER_SENTENCES)
    agent_texts = _text_pool(rng, AGENT_SENTENCES)
    note_texts = _text_pool(rng, NOTE_SENTENCES + AGENT_SENTENCES)
    subjects = [_escaped(s) for s in SUBJECTS]
    threads = []
    for index, (conversation_id, customer_id) in enumerate(spec.conversations):
        threads.append((conversation_id, customer_id, f"bulk.customer{index + 1}@example.com",
                        f"+1415555{2000 + index:04d}", slug_from_int(rng.getrandbits(128))))
    agents = spec.agent_ids
    start_us = int(spec.start.timestamp() * 1_000_000)
    step_us = (spec.end - spec.start).total_seconds() * 1_000_000 / max(spec.items, 1)
    last_second, prefix = -1, ""
    for index in range(spec.items):
        conversation_id, customer_id, email, phone, session = threads[index % len(threads)]
        second, micros = divmod(start_us + int(index * step_us), 1_000_000)
        if second != last_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            last_second = second
        stamp = f"{prefix}.{micros // 1000:03d}Z"
        item_id = slug_from_int(rng.getrandbits(128))
        bits = rng.getrandbits(32)
        kind = bits % 20
        inbound = bool(bits & 32)
        agent = agents[(bits >> 6) % len(agents)]
        text_index = (bits >> 12) % TEXT_POOL_SIZE
        if kind >= 17:
            line = (_HEAD % (item_id, conversation_id, customer_id, "", stamp, agent, "AGENT")
                    + _NOTE % note_texts[text_index])
        else:
            initiator, responder = ((customer_id, "CUSTOMER"), (agent, "AGENT")) if inbound \
                else ((agent, "AGENT"), (customer_id, "CUSTOMER"))
            text = (customer_texts if inbound else agent_texts)[text_index]
            session_field = f'"sessionId":"{session}",' if 8 <= kind < 14 else ""
            head = (_HEAD % (item_id, conversation_id, customer_id, session_field, stamp,
                             initiator[0], initiator[1]) + _RESPONDER % responder)
            if kind < 8:
                subject = subjects[(bits >> 18) % len(subjects)]
                sender, receiver = (email, SUPPORT_ADDRESS) if inbound else (SUPPORT_ADDRESS, email)
                line = head + _EMAIL % (sender, receiver, subject if inbound else "Re: " + subject,
                                        text)
            elif kind < 14:
                line = head + _CHAT % (session, text)
            else:
                sender, receiver = (phone, COMPANY_PHONE) if inbound else (COMPANY_PHONE, phone)
                line = head + _SMS % (sender, receiver, text)
        yield line
