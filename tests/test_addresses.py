"""Addresses parsed and rewritten as the running Django's SMTP backend does."""

from __future__ import annotations

from typing import Any

import django
import pytest
from django.core.mail.message import BadHeaderError
from hypothesis import given
from hypothesis import strategies as st

from django_cloudmails import addresses, headers
from django_cloudmails.addresses import parse_address
from django_cloudmails.exceptions import CloudMailsInvalidAddress
from django_cloudmails.headers import CloudMailsBadHeader, header_value

MODERN = django.VERSION >= (6, 0)


@pytest.mark.parametrize(
    ("value", "name", "addr_spec"),
    [
        ("a@example.com", "", "a@example.com"),
        ("Shop <noreply@shop.example>", "Shop", "noreply@shop.example"),
        ("  Zoë Ünïcode <zoe@exämple.de>  ", "Zoë Ünïcode", "zoe@xn--exmple-cua.de"),
        ("bounce+42@simulator.cloudmails.test", "", "bounce+42@simulator.cloudmails.test"),
        ("user@bücher.example", "", "user@xn--bcher-kva.example"),
        ('"Doe, John" <x@example.com>', "Doe, John", "x@example.com"),
        ('"quoted local"@example.com', "", '"quoted local"@example.com'),
        ("u@[192.0.2.1]", "", "u@[192.0.2.1]"),
        ("=?utf-8?q?Zo=C3=AB?= <z@example.com>", "Zoë", "z@example.com"),
    ],
)
def test_addresses_django_sends_are_parsed_into_name_and_addr_spec(
    value: str, name: str, addr_spec: str
) -> None:
    parsed = parse_address(value, field="to")

    assert (parsed.display_name, parsed.addr_spec) == (name, addr_spec)


def test_a_tab_in_a_display_name_is_accepted() -> None:
    assert parse_address("Tab\there <t@example.com>", field="to").addr_spec == "t@example.com"


def test_display_names_with_specials_are_quoted_for_the_api() -> None:
    assert parse_address('"Doe, John" <x@example.com>', field="to").formatted == (
        '"Doe, John" <x@example.com>'
    )
    assert parse_address('"Ann \\"B\\"" <a@example.com>', field="to").formatted == (
        '"Ann \\"B\\"" <a@example.com>'
    )


@pytest.mark.parametrize(
    "value",
    [
        "Doe, John <x@example.com>",  # two mailboxes (or one unparsable) to Django
        "a@b <c@example.com>",
        "a@example.com, b@example.com",
        "a@b@",
        "ann@exa mple.com",
        "Ann <ann@example.com",  # Django < 6.0 repairs the envelope, not the header
        "ann",  # a local mailbox Django takes; the API needs a domain
        "",
    ],
)
def test_what_django_or_the_api_cannot_take_is_a_value_error_naming_the_field(value: str) -> None:
    with pytest.raises(ValueError, match=r"cc: .* is not a valid email address") as info:
        parse_address(value, field="cc")
    assert isinstance(info.value, CloudMailsInvalidAddress)
    assert info.value.field == "cc"


def test_a_non_ascii_local_part_is_rewritten_or_refused_as_django_does() -> None:
    if MODERN:  # prep_address() refuses what SMTP without SMTPUTF8 cannot carry
        with pytest.raises(ValueError, match="non-ASCII"):
            parse_address("üser@example.com", field="to")
    else:  # sanitize_address() makes it an encoded word
        assert parse_address("üser@example.com", field="to").addr_spec == (
            "=?utf-8?b?w7xzZXI=?=@example.com"
        )


@pytest.mark.parametrize("value", ["Hi\nthere", "Hi\r\nthere", "Hi\n", "\rHi"])
def test_a_header_with_a_line_break_is_refused_with_djangos_bad_header_error(value: str) -> None:
    with pytest.raises(BadHeaderError) as info:  # ValueError itself on Django 6.0+
        header_value("Subject", value, field="subject")
    assert isinstance(info.value, CloudMailsBadHeader)
    assert info.value.field == "subject"


def test_other_line_boundaries_are_refused_only_where_django_refuses_them() -> None:
    if MODERN:  # the modern policy splits on every str.splitlines() boundary
        with pytest.raises(ValueError, match="line breaks"):
            header_value("Subject", "a\u2028b", field="subject")
    else:
        assert header_value("Subject", "a\u2028b", field="subject") == "a\u2028b"


# The shortcuts for plain ASCII give exactly what the full machinery gives.

PLAIN_ADDRESSES = [
    "user@example.com",
    "first.last+tag@mail.example.co.uk",
    "o'brien&co{x}|y~z`@example.com",
    "user@xn--bcher-kva.example",
    f"user@{'a' * 63}.example",
    "a-b@c-d.e-f.example",
]


@pytest.mark.parametrize("address", PLAIN_ADDRESSES)
def test_a_plain_address_takes_the_shortcut_and_parses_as_django_parses_it(address: str) -> None:
    assert addresses._PLAIN.fullmatch(address)
    assert parse_address(address, field="to") == addresses._parse(address, "utf-8")


@pytest.mark.parametrize(
    "address",
    [f"user@{'a' * 64}.example", "user@-bad.example", "user@localhost", "a..b@example.com"],
)
def test_an_address_outside_the_shortcut_goes_through_django(address: str) -> None:
    assert not addresses._PLAIN.fullmatch(address)


@given(st.from_regex(addresses._PLAIN, fullmatch=True))
def test_every_address_the_shortcut_takes_parses_the_same_without_it(address: str) -> None:
    assert parse_address(address, field="to") == addresses._parse(address, "utf-8")


def _outcome(check: Any, text: str) -> str:
    try:
        return str(check(text))
    except ValueError:  # BadHeaderError on every version, our subclass of it
        return "refused"
    except Exception as error:  # Django's own crash (HeaderParseError), on both sides
        return type(error).__name__


@given(st.text(st.characters(max_codepoint=127)))
def test_an_ascii_header_value_is_checked_as_django_checks_it(text: str) -> None:
    ours = _outcome(lambda value: header_value("Subject", value, field="subject"), text)
    djangos = _outcome(lambda value: headers._checked("Subject", value, "utf-8"), text)

    assert ours == djangos
