"""Addresses parsed and rewritten as the running Django's SMTP backend does."""

from __future__ import annotations

import django
import pytest
from django.core.mail.message import BadHeaderError

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
