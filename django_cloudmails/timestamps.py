"""Reading an event's time the ways senders write it, the same on every Python version.

A webhook's ``timestamp`` is a fact we would rather have than refuse: an unreadable one
means "use the time received", never a 4xx (which would lose the event). Read here:

* ISO 8601 / RFC 3339: ``2026-05-19T14:30:00Z``, with an offset (``+02:00``, ``+0200``,
  ``+02``), with any number of fractional digits (``.1`` to nanoseconds; digits past
  microseconds are dropped), a space instead of ``T``, seconds optional; without an
  offset it is UTC;
* Unix epoch seconds or milliseconds, as a JSON number or a string of digits (with an
  optional fraction): values from 10^11 on are milliseconds (10^11 seconds is the year
  5138, 10^11 milliseconds 1973);
* RFC 2822 / HTTP dates (``Tue, 19 May 2026 14:30:00 GMT``).

:func:`datetime.fromisoformat` is not used: before Python 3.11 it takes neither ``Z`` nor
fractions other than 3 or 6 digits, and the same body must give the same row everywhere.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

#: Longer strings are not timestamps (and are not worth a regular expression).
MAX_LENGTH = 64
#: Epoch values from here on are milliseconds; from here times 1000 on, unreadable.
MILLISECONDS_FROM = 10**11

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_WIRE_LENGTHS = frozenset({20, 24, 27})
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r" ?(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)?"
)
_DIGITS = re.compile(r"\d{1,20}(?:\.\d{1,9})?")


def parse_timestamp(value: object) -> datetime | None:
    """``value`` as an aware UTC datetime, or None when it is not a readable time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(value)
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    return _from_text(value.strip())


def _from_text(text: str) -> datetime | None:
    if len(text) in _WIRE_LENGTHS and text[-1] in "Zz" and text[10] in "Tt ":
        # The wire form (``2026-05-19T14:30:00.123456Z``, 0, 3 or 6 fractional digits),
        # which every supported Python parses alike, 4x faster than the expression.
        try:
            return datetime.fromisoformat(text[:-1] + "+00:00")
        except ValueError:
            pass
    match = _ISO.fullmatch(text)
    if match is not None:
        return _from_iso(match)
    if _DIGITS.fullmatch(text):
        return _from_epoch(float(text) if "." in text else int(text))
    return _from_rfc2822(text)


def _from_epoch(number: float) -> datetime | None:
    if not math.isfinite(number) or number < 0:
        return None
    if number >= MILLISECONDS_FROM:
        if number >= MILLISECONDS_FROM * 1000:
            return None
        delta = (
            timedelta(milliseconds=number)
            if isinstance(number, int)
            else timedelta(seconds=number / 1000)
        )
    else:
        delta = timedelta(seconds=number)
    return _EPOCH + delta


def _from_iso(match: re.Match[str]) -> datetime | None:
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    offset = timezone.utc
    if sign:
        minutes = int(off_h) * 60 + int(off_m or 0)
        try:
            offset = timezone(timedelta(minutes=-minutes if sign == "-" else minutes))
        except ValueError:  # 24 hours or more
            return None
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=offset,
        )
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _from_rfc2822(text: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        return None
