"""The sandbox's own reading of addresses and MIME types (no code shared with the package)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from django_cloudmails.sandbox.mailboxes import (
    AddressError,
    Mailbox,
    parse_content_type,
    parse_mailbox,
)

SANDBOX = Path(__file__).resolve().parent.parent / "django_cloudmails" / "sandbox"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@example.com", Mailbox("", "a", "example.com")),
        ("Shop <noreply@shop.example>", Mailbox("Shop", "noreply", "shop.example")),
        (
            "  Zoë Ünïcode <zoe@xn--exmple-cua.de>  ",
            Mailbox("Zoë Ünïcode", "zoe", "xn--exmple-cua.de"),
        ),
        ('"Doe, John" <x@example.com>', Mailbox("Doe, John", "x", "example.com")),
        ('"Ann \\"B\\"" <a@example.com>', Mailbox('Ann "B"', "a", "example.com")),
        ("John Q. Public <j@example.com>", Mailbox("John Q. Public", "j", "example.com")),
        ('"quoted local"@example.com', Mailbox("", '"quoted local"', "example.com")),
        ('"john.doe"@example.com', Mailbox("", "john.doe", "example.com")),
        ("u@[192.0.2.1]", Mailbox("", "u", "[192.0.2.1]")),
        ("u@[IPv6:2001:db8::1]", Mailbox("", "u", "[IPv6:2001:db8::1]")),
        ("a@example.com (a comment)", Mailbox("", "a", "example.com")),
        ("Tab\there <t@example.com>", Mailbox("Tab here", "t", "example.com")),
        (
            "bounce+42@simulator.cloudmails.test",
            Mailbox("", "bounce+42", "simulator.cloudmails.test"),
        ),
        ("=?utf-8?b?w7xzZXI=?=@example.com", Mailbox("", "=?utf-8?b?w7xzZXI=?=", "example.com")),
    ],
)
def test_mailboxes_are_read_into_name_local_part_and_domain(value: str, expected: Mailbox) -> None:
    assert parse_mailbox(value) == expected


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
        "Doe, John <x@example.com>",
        "a@example.com, b@example.com",
        "a b@example.com",
        "user@bücher.example",  # not IDNA-encoded
        "üser@example.com",  # needs SMTPUTF8
        "u@[999.1.1.1]",
        "Ann <a@example.com>\r\nBcc: x@evil.example",
    ],
)
def test_what_no_mail_system_takes_is_refused(value: str) -> None:
    with pytest.raises(AddressError):
        parse_mailbox(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("image/png", ("image/png", {})),
        ('text/plain; charset="utf-8"', ("text/plain", {"charset": "utf-8"})),
        (
            'Text/Plain; format="flowed"; charset=iso-8859-1',
            ("text/plain", {"format": "flowed", "charset": "iso-8859-1"}),
        ),
        (
            "application/pdf; name*=utf-8''r%C3%A9sum%C3%A9.pdf",
            ("application/pdf", {"name*": "utf-8''r%C3%A9sum%C3%A9.pdf"}),
        ),
    ],
)
def test_mime_types_are_read_with_their_parameters(
    value: str, expected: tuple[str, dict[str, str]]
) -> None:
    assert parse_content_type(value) == expected


@pytest.mark.parametrize("value", ["", "text", "text/", "text/plain; charset", 'text/plain; a="b'])
def test_what_is_no_mime_type_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a MIME type"):
        parse_content_type(value)


def test_the_sandbox_imports_nothing_from_the_package_but_limits_and_signing() -> None:
    """Its validation must be its own, so that it can catch the package's mistakes."""
    imported = set()
    for path in SANDBOX.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.ImportFrom) and node.level > 1:
                imported.add(f"..{node.module}")
    ours = {name for name in imported if name.startswith(("django_cloudmails", ".."))}
    # signing belongs to the webhook side (the receiving branch gives the sandbox its own)
    assert ours <= {"django_cloudmails.limits", "django_cloudmails.signing"}
