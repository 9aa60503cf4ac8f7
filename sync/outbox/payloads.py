"""Outbox rows → Gladly request bodies, and the text normalisation reconciliation compares with.

Pure functions: no I/O, tested with literal dicts.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser
from typing import Any

__all__ = ["escalation_patch", "html_to_text", "normalise_text", "note_body", "reply_content", "reply_text"]

# Tags that end a line of text; every other tag is dropped without a gap ("<b>Fol</b>low" → "Follow").
_BREAKING_TAGS = frozenset(
    ("br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "table", "blockquote", "pre", "hr")
    + ("h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer")
)
_SKIPPED_TAGS = frozenset(("script", "style", "head", "title"))
_MESSAGE_CHANNELS = frozenset(("SMS", "WHATSAPP", "FACEBOOK_MESSAGE", "INSTAGRAM_DIRECT", "TWITTER"))


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BREAKING_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAKING_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BREAKING_TAGS and tag != "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Readable plain text of an HTML fragment: tags dropped, entities unescaped, one line per
    block, at most one blank line in a row, no trailing spaces."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def normalise_text(text: str | None) -> str:
    """What reconciliation compares: HTML stripped, entities unescaped, Unicode NFC, whitespace
    collapsed to single spaces. A sent item's text and its queued body normalise to the same string."""
    if not text:
        return ""
    plain = html_to_text(text) if "<" in text or "&" in text else text
    plain = html.unescape(plain)  # entities double-escaped by a round trip through plain text
    return " ".join(unicodedata.normalize("NFC", plain).split())


def plain_to_html(text: str) -> str:
    """Plain text as HTML: escaped, line breaks kept as ``<br>``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<br>".join(html.escape(line, quote=False) for line in lines)


def reply_content(row: dict[str, Any]) -> dict[str, Any]:
    """The ``content`` of ``POST /conversation-items/{reply_to_item_id}/reply`` for an outbox reply."""
    channel = row["channel"]
    body = row["body"]
    if channel == "EMAIL":
        if row.get("body_is_html"):
            return {"type": "EMAIL", "body": body, "bodyPlain": html_to_text(body)}
        return {"type": "EMAIL", "body": plain_to_html(body), "bodyPlain": body}
    if channel == "CHAT_MESSAGE":
        return {"type": "CHAT_MESSAGE", "messageType": "TEXT", "body": body}
    if channel in _MESSAGE_CHANNELS:
        return {"type": channel, "body": body}
    raise ValueError(f"cannot reply on channel {channel!r}")


def reply_text(row: dict[str, Any]) -> str:
    """The plain text a sent reply shows in its item's ``content.content`` (email: ``bodyPlain``)."""
    content = reply_content(row)
    return content.get("bodyPlain", content["body"])


def note_body(text: str) -> str:
    """The body of ``POST /conversations/{id}/notes``: the note as written (plain text or Gladly's
    rich-content HTML), surrounding whitespace trimmed."""
    return text.strip()


def escalation_patch(conversation: dict[str, Any], inbox_id: str) -> dict[str, Any]:
    """``PATCH /conversations/{id}`` moving the conversation to ``inbox_id``, unassigned.

    ``agentId`` is left out (never sent as null). A CLOSED conversation is reopened in the same
    request, since Gladly will not reassign a closed one.
    """
    patch: dict[str, Any] = {"assignee": {"inboxId": inbox_id}}
    if conversation.get("status") == "CLOSED":
        patch["status"] = {"value": "OPEN"}
    return patch
