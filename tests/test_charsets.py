"""Text attachments and bodies in the message's charset, labelled as Django labels them."""

from __future__ import annotations

import base64

import django
import pytest
from django.core.mail import EmailMessage

from django_cloudmails.exceptions import CloudMailsUnencodable
from django_cloudmails.payloads import build_api_messages


def attachment(message: EmailMessage) -> dict[str, str]:
    (api,) = build_api_messages(message)
    item: dict[str, str] = api.payload["attachments"][0]
    return item


def message_with(
    text: str, encoding: str | None = None, mimetype: str = "text/plain"
) -> EmailMessage:
    message = EmailMessage("Hi", "Body", "f@shop.example", ["a@example.com"])
    if encoding:
        message.encoding = encoding
    message.attach("notes.txt", text, mimetype)
    return message


def test_a_text_attachment_is_labelled_with_the_default_charset() -> None:
    item = attachment(message_with("héllo"))

    assert item["content_type"] == 'text/plain; charset="utf-8"'
    assert base64.b64decode(item["content"]) == "héllo".encode()


def test_message_encoding_decides_the_bytes_and_the_label() -> None:
    item = attachment(message_with("café", "latin-1"))

    assert item["content_type"] == 'text/plain; charset="iso-8859-1"'
    assert base64.b64decode(item["content"]) == b"caf\xe9"


def test_shift_jis_is_converted_and_labelled_as_each_django_version_does() -> None:
    item = attachment(message_with("日本", "shift_jis"))

    label = "shift_jis" if django.VERSION >= (6, 0) else "iso-2022-jp"
    assert item["content_type"] == f'text/plain; charset="{label}"'
    assert base64.b64decode(item["content"]).decode(label) == "日本"


def test_other_parameters_of_the_mimetype_are_kept_and_its_charset_replaced() -> None:
    item = attachment(message_with("x", mimetype="text/plain; format=flowed; charset=ascii"))

    assert item["content_type"] == 'text/plain; format="flowed"; charset="utf-8"'


def test_text_the_charset_cannot_encode_is_refused_as_django_refuses_it() -> None:
    with pytest.raises(ValueError, match="iso-8859-1") as info:  # UnicodeEncodeError in Django
        attachment(message_with("日本", "iso-8859-1"))
    assert isinstance(info.value, CloudMailsUnencodable)
    assert info.value.field == "attachments"


def test_a_body_the_charset_cannot_encode_is_refused() -> None:
    message = EmailMessage("Hi", "日本", "f@shop.example", ["a@example.com"])
    message.encoding = "iso-8859-1"

    with pytest.raises(CloudMailsUnencodable) as info:
        build_api_messages(message)
    assert info.value.field == "body"


def test_a_str_for_a_binary_type_becomes_the_bytes_django_makes_of_it() -> None:
    message = EmailMessage("Hi", "Body", "f@shop.example", ["a@example.com"])
    message.attach("data.json", '{"a": "é€"}', "application/json")

    data = base64.b64decode(attachment(message)["content"])
    # Django < 6.0 leaves it to Message.get_payload(decode=True): raw-unicode-escape.
    expected = '{"a": "é€"}'.encode() if django.VERSION >= (6, 0) else b'{"a": "\xe9\\u20ac"}'
    assert data == expected
