"""RFC 3339 timestamps as Gladly writes them: UTC, a `Z`, and a varying number of fraction digits.

Gladly's documents show `2019-07-03T04:30:12.07Z`, `2016-04-11T14:09:23.000Z`,
`2019-02-21T07:15:18.07272933Z` and `2016-01-02T00:10:00Z`; the simulator serves all four styles
so clients must parse leniently. A formatted value never rounds up, so parsing it back gives a
time at or before the original and order is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

STYLES = ("centis", "millis", "nanos", "seconds")


def utc_now() -> datetime:
    """The real current time, in UTC."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime, style: str = "millis", extra_nanos: int = 0) -> str:
    """`moment` as RFC 3339 UTC text in one of STYLES (`extra_nanos` pads the nanos style)."""
    moment = moment.astimezone(UTC)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micros = moment.microsecond
    if style == "seconds":
        return base + "Z"
    if style == "centis":
        return f"{base}.{micros // 10000:02d}Z"
    if style == "nanos":
        return f"{base}.{micros:06d}{extra_nanos % 1000:03d}Z"
    return f"{base}.{micros // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """Lenient ISO 8601 parse; naive values are UTC. Raises ValueError on garbage."""
    value = text.strip()
    if " " in value and "T" in value:
        # A `+hh:mm` offset sent unescaped in a query string arrives as a space.
        value = value.replace(" ", "+")
    if value.endswith(("z", "Z")):
        value = value[:-1] + "+00:00"
    head, sep, tail = value.partition(".")
    if sep:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        fraction, offset = tail[:digits], tail[digits:]
        value = f"{head}.{(fraction + '000000')[:6]}{offset}" if fraction else head + offset
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def canonical(moment: datetime, style: str = "millis", extra_nanos: int = 0) -> tuple[datetime, str]:
    """The formatted text and the instant it denotes when parsed back (truncated to the style)."""
    text = format_timestamp(moment, style, extra_nanos)
    return parse_timestamp(text), text


def day_start(moment: datetime) -> datetime:
    """Midnight UTC of the day containing `moment`."""
    moment = moment.astimezone(UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


ONE_MILLISECOND = timedelta(milliseconds=1)
