"""Gladly-like ids: 22-character URL-safe base64 of 16 random bytes (a "nice" slugid).

The first byte's top bit is cleared, as `slugid.nice()` does, so an id never starts with `-`
and can be passed to a command line as a positional argument.
"""

from __future__ import annotations

import base64
import random


def slug_from_int(value: int) -> str:
    """The slug for a 128-bit integer."""
    raw = bytearray(value.to_bytes(16, "big"))
    raw[0] &= 0x7F
    return base64.urlsafe_b64encode(bytes(raw)).decode("ascii")[:22]


class IdFactory:
    """Deterministic id source: the same seed gives the same sequence of ids."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def new(self) -> str:
        return slug_from_int(self._rng.getrandbits(128))
