"""Reading event times in the forms senders write them (no database)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_cloudmails.timestamps import _ISO, _from_iso, parse_timestamp

T = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)
EPOCH = int(T.timestamp())

READABLE = {
    "Z": ("2026-05-19T14:30:00Z", T),
    "lower-case z": ("2026-05-19t14:30:00z", T),
    "offset": ("2026-05-19T16:30:00+02:00", T),
    "negative offset": ("2026-05-19T09:30:00-05:00", T),
    "offset without colon": ("2026-05-19T16:30:00+0200", T),
    "offset in hours": ("2026-05-19T16:30:00+02", T),
    "no offset is UTC": ("2026-05-19T14:30:00", T),
    "space separator": ("2026-05-19 14:30:00Z", T),
    "no seconds": ("2026-05-19T14:30Z", T),
    "millisecond fraction": ("2026-05-19T14:30:00.123Z", T.replace(microsecond=123000)),
    "microsecond fraction": ("2026-05-19T14:30:00.123456Z", T.replace(microsecond=123456)),
    "one fractional digit": ("2026-05-19T14:30:00.5Z", T.replace(microsecond=500000)),
    "nanosecond fraction": ("2026-05-19T14:30:00.123456789Z", T.replace(microsecond=123456)),
    "comma fraction": ("2026-05-19T14:30:00,25Z", T.replace(microsecond=250000)),
    "surrounding spaces": ("  2026-05-19T14:30:00Z ", T),
    "epoch seconds as a number": (EPOCH, T),
    "epoch seconds as a float": (EPOCH + 0.25, T.replace(microsecond=250000)),
    "epoch milliseconds as a number": (EPOCH * 1000 + 7, T.replace(microsecond=7000)),
    "epoch seconds as digits": (str(EPOCH), T),
    "epoch milliseconds as digits": (str(EPOCH * 1000), T),
    "epoch seconds with a fraction as a string": (f"{EPOCH}.5", T.replace(microsecond=500000)),
    "RFC 2822": ("Tue, 19 May 2026 14:30:00 GMT", T),
    "RFC 2822 with an offset": ("Tue, 19 May 2026 16:30:00 +0200", T),
}


@pytest.mark.parametrize(("value", "expected"), READABLE.values(), ids=READABLE.keys())
def test_common_forms_are_read_as_utc(value: object, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is timezone.utc


UNREADABLE = {
    "missing": None,
    "empty": "",
    "words": "yesterday",
    "boolean": True,
    "list": [2026, 5, 19],
    "object": {"seconds": EPOCH},
    "negative epoch": -5,
    "epoch past milliseconds": 10**17,
    "infinite float": float("inf"),
    "month 13": "2026-13-19T14:30:00Z",
    "hour 25": "2026-05-19T25:30:00Z",
    "offset of a day": "2026-05-19T14:30:00+24:00",
    "year 1 shifted before year 1": "0001-01-01T00:00:00+01:00",
    "too long": "2026-05-19T14:30:00Z" + " " * 100,
    "date only": "2026-05-19",
}


@pytest.mark.parametrize("value", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_values_are_none(value: object) -> None:
    assert parse_timestamp(value) is None


@given(st.one_of(st.text(max_size=70), st.integers(), st.floats(), st.none(), st.booleans()))
def test_no_value_raises(value: object) -> None:
    result = parse_timestamp(value)
    assert result is None or result.tzinfo is timezone.utc


@given(st.datetimes(timezones=st.timezones()))
def test_isoformat_of_any_aware_datetime_is_read_back(moment: datetime) -> None:
    offset = moment.utcoffset()
    try:
        expected = moment.astimezone(timezone.utc)
    except OverflowError:
        expected = None  # before year 1 or after 9999 in UTC
    if offset is not None and offset.seconds % 60:
        expected = None  # offsets with seconds (historical local mean times) are not ISO 8601
    assert parse_timestamp(moment.isoformat()) == expected


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([0, 3, 6]),
    st.sampled_from("Tt "),
)
def test_wire_forms_read_the_same_by_both_paths(moment: datetime, digits: int, sep: str) -> None:
    """The fast path (fromisoformat) and the expression agree on the wire form."""
    full = f"{moment.year:04}-{moment:%m-%d}{sep}{moment:%H:%M:%S.%f}"
    text = full[: 19 + (digits + 1 if digits else 0)] + "Z"
    match = _ISO.fullmatch(text)
    assert match is not None
    expected = moment.replace(
        microsecond=moment.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits),
        tzinfo=timezone.utc,
    )
    assert parse_timestamp(text) == _from_iso(match) == expected


@given(st.text(min_size=19, max_size=26))
def test_strings_shaped_like_the_wire_form_never_raise(text: str) -> None:
    result = parse_timestamp(text[:10].ljust(10, "0") + "T" + text[10:] + "Z")
    assert result is None or result.tzinfo is timezone.utc
