"""The address rules shared by the backend and the sandbox."""

from __future__ import annotations

import pytest

from django_cloudmails.addresses import bare_address, split_address


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@example.com", ("", "a@example.com")),
        ("Shop <noreply@shop.example>", ("Shop", "noreply@shop.example")),
        ("  Zoë Ünïcode <zoe@exämple.de>  ", ("Zoë Ünïcode", "zoe@exämple.de")),
        ("bounce+42@simulator.cloudmails.test", ("", "bounce+42@simulator.cloudmails.test")),
    ],
)
def test_valid_addresses_split_into_name_and_address(value: str, expected: tuple[str, str]) -> None:
    assert split_address(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "no-at-sign",
        "a@",
        "@example.com",
        ".a@example.com",
        "a.@example.com",
        "a..b@example.com",
        "a@-example.com",
        "a@exam_ple.com",
        "a\n@example.com",
        "Name <a@example.com",
        "Na<me <a@example.com>",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_invalid_addresses_are_refused(value: str) -> None:
    assert split_address(value) is None


def test_bare_address_of_a_named_address() -> None:
    assert bare_address("Ann <ann@example.com>") == "ann@example.com"


def test_bare_address_of_something_invalid_is_it_stripped() -> None:
    assert bare_address("  not an address ") == "not an address"
