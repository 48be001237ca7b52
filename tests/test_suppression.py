"""The suppression list: lookup, adding and lifting."""

from __future__ import annotations

from email.utils import parseaddr

import pytest

from django_cloudmails.models import Suppression
from django_cloudmails.suppression import lift, normalize_address, suppress, suppressed

pytestmark = pytest.mark.django_db


def test_normalize_address_strips_the_display_name_and_lowercases() -> None:
    assert normalize_address("Bob Smith <Bob@Example.COM>") == "bob@example.com"


@pytest.mark.parametrize(
    "address",
    [
        "Bob@Example.COM",
        "a.b+tag@sub.example.org",
        "zoë@exämple.com",
        "a..b@example.com",
        ".a@example.com",
        '"Bob Smith"@example.com',
        "Ann <Ann@Example.com>",
        " ann@example.com ",
        "ann@[127.0.0.1]",
    ],
)
def test_normalize_address_agrees_with_parseaddr(address: str) -> None:
    """Bare addresses skip parseaddr; the answer must be the one it would give."""
    expected = parseaddr(address)[1].strip().lower() or address.strip().lower()

    assert normalize_address(address) == expected


def test_suppressed_matches_case_insensitively() -> None:
    Suppression.objects.create(address="bob@example.com", reason="complained")

    assert suppressed(["Bob <Bob@Example.com>", "ann@example.com"]) == {
        "bob@example.com": "complained"
    }


def test_suppressed_of_nothing_is_empty() -> None:
    assert suppressed([]) == {}


def test_suppressed_looks_up_more_addresses_than_one_query_takes() -> None:
    Suppression.objects.bulk_create(
        Suppression(address=f"u{i}@example.com", reason="hard_bounce") for i in range(0, 1200, 7)
    )

    found = suppressed(f"u{i}@example.com" for i in range(1200))

    assert len(found) == len(range(0, 1200, 7))


def test_suppress_adds_the_normalized_address_once() -> None:
    assert suppress("Ann <Ann@Example.com>", "unsubscribed") is True
    assert suppress("ann@example.com", "complained") is False

    row = Suppression.objects.get()
    assert (row.address, row.reason) == ("ann@example.com", "unsubscribed")


def test_lift_removes_the_address() -> None:
    suppress("ann@example.com", "complained")

    assert lift("ANN@example.com") is True
    assert lift("ann@example.com") is False
    assert not Suppression.objects.exists()
