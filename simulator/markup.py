"""HTML to plain text, the way an email client shows a reply body that came without `bodyPlain`."""

from __future__ import annotations

import html
import re

_BREAKS = re.compile(r"<\s*(br|/p|/div|/h[1-6]|/li)\s*/?\s*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]*>")
_BLANKS = re.compile(r"[ \t]+")


def html_to_text(markup: str) -> str:
    """Drop tags, turn block ends and <br> into newlines, unescape entities."""
    text = _BREAKS.sub("\n", markup)
    text = html.unescape(_TAGS.sub("", text))
    lines = [_BLANKS.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(lines).strip()
