"""EmailMessage -> API message dicts, without the network or the database."""

from __future__ import annotations

import base64
from email.mime.text import MIMEText
from typing import Any

import django
import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.safestring import mark_safe

from django_cloudmails import attachments
from django_cloudmails.exceptions import CloudMailsInvalidMessage, CloudMailsUnsupportedFeature
from django_cloudmails.payloads import DELIVERY_ID_ARG, build_api_messages, with_delivery_id


def build(message: EmailMessage, **kwargs: Any) -> list[dict[str, Any]]:
    return [api.payload for api in build_api_messages(message, **kwargs)]


def plain(**kwargs: Any) -> EmailMessage:
    defaults: dict[str, Any] = {
        "subject": "Hi",
        "body": "Body",
        "from_email": "from@shop.example",
        "to": ["ann@example.com"],
    }
    return EmailMessage(**{**defaults, **kwargs})


def test_plain_text_is_sent_as_escaped_pre_html_and_as_text() -> None:
    (payload,) = build(plain(body="a < b & c"))

    assert payload["html"] == "<pre>a &lt; b &amp; c</pre>"
    assert payload["text"] == "a < b & c"


def test_empty_body_still_has_the_html_the_api_requires() -> None:
    (payload,) = build(plain(body=""))

    assert payload["html"] == "<pre></pre>"
    assert "text" not in payload


def test_one_api_message_per_to_address_in_order() -> None:
    payloads = build(plain(to=["a@example.com", "b@example.com"], cc=["c@example.com"]))

    assert [p["to"] for p in payloads] == ["a@example.com", "b@example.com"]
    assert payloads[0]["cc"] == ["c@example.com"]
    assert "cc" not in payloads[1]


def test_to_email_of_the_row_is_the_bare_address() -> None:
    (api,) = build_api_messages(plain(to=["Ann <Ann@Example.com>"]))

    assert api.to_email == "Ann@Example.com"
    assert api.payload["to"] == "Ann <Ann@Example.com>"


def test_empty_to_entries_are_ignored() -> None:
    assert [p["to"] for p in build(plain(to=["", "ann@example.com"]))] == ["ann@example.com"]


def test_no_to_is_refused() -> None:
    with pytest.raises(CloudMailsInvalidMessage) as info:
        build(plain(to=[], bcc=["b@example.com"]))
    assert info.value.field == "to"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", ["ann"]),
        ("to", ["a@b@"]),
        ("to", ["a@example.com, b@example.com"]),
        ("cc", ["Ann <ann@example.com"]),
        ("bcc", ["ann@exa mple.com"]),
        ("reply_to", ["line\nbreak@example.com"]),
        ("from_email", "nobody"),
    ],
)
def test_invalid_address_is_refused_naming_its_field(field: str, value: Any) -> None:
    with pytest.raises(CloudMailsInvalidMessage, match="not a valid email address") as info:
        build(plain(**{field: value}))
    assert info.value.field == field.replace("_email", "")


def test_multiple_reply_to_is_unsupported() -> None:
    with pytest.raises(CloudMailsUnsupportedFeature, match="reply_to"):
        build(plain(reply_to=["a@example.com", "b@example.com"]))


def test_multiple_reply_to_keeps_the_first_when_ignoring_unsupported() -> None:
    message = plain(reply_to=["a@example.com", "b@example.com"])

    assert build(message, ignore_unsupported=True)[0]["reply_to"] == "a@example.com"


def test_from_header_overrides_from_email() -> None:
    (payload,) = build(plain(headers={"From": "Shop <shop@shop.example>"}))

    assert payload["from"] == "Shop <shop@shop.example>"


def test_custom_header_is_unsupported() -> None:
    with pytest.raises(CloudMailsUnsupportedFeature) as info:
        build(plain(headers={"List-Unsubscribe": "<mailto:u@shop.example>"}))
    assert info.value.field == "headers"


def test_custom_header_is_dropped_when_ignoring_unsupported() -> None:
    (payload,) = build(plain(headers={"X-Tag": "1"}), ignore_unsupported=True)

    assert "X-Tag" not in str(payload)


def test_two_html_alternatives_are_unsupported() -> None:
    message = EmailMultiAlternatives("Hi", "Body", "f@shop.example", ["a@example.com"])
    message.attach_alternative("<p>1</p>", "text/html")
    message.attach_alternative("<p>2</p>", "text/html")

    with pytest.raises(CloudMailsUnsupportedFeature, match="2 HTML bodies"):
        build(message)


def test_html_body_plus_html_alternative_is_unsupported() -> None:
    message = EmailMultiAlternatives("Hi", "<p>1</p>", "f@shop.example", ["a@example.com"])
    message.content_subtype = "html"
    message.attach_alternative("<p>2</p>", "text/html")

    with pytest.raises(CloudMailsUnsupportedFeature):
        build(message)


def test_non_html_alternative_is_unsupported() -> None:
    message = EmailMultiAlternatives("Hi", "Body", "f@shop.example", ["a@example.com"])
    message.attach_alternative("BEGIN:VCALENDAR", "text/calendar")

    with pytest.raises(CloudMailsUnsupportedFeature, match="text/calendar"):
        build(message)


def test_first_html_alternative_is_kept_when_ignoring_unsupported() -> None:
    message = EmailMultiAlternatives("Hi", "Body", "f@shop.example", ["a@example.com"])
    message.attach_alternative("<p>1</p>", "text/html")
    message.attach_alternative("<p>2</p>", "text/html")

    assert build(message, ignore_unsupported=True)[0]["html"] == "<p>1</p>"


def test_other_content_subtype_is_unsupported() -> None:
    message = plain()
    message.content_subtype = "calendar"

    with pytest.raises(CloudMailsUnsupportedFeature, match="calendar"):
        build(message)


@pytest.mark.parametrize("name", ["send_at", "template_id", "track_opens", "esp_extra"])
def test_anymail_features_without_equivalent_are_unsupported(name: str) -> None:
    message = plain()
    setattr(message, name, "x")

    with pytest.raises(CloudMailsUnsupportedFeature, match=name):
        build(message)


def test_anymail_unset_sentinel_counts_as_not_set() -> None:
    message = plain()
    message.send_at = type("UNSET", (), {})  # type: ignore[attr-defined]

    assert build(message)


def test_attachment_tuple_without_mimetype_is_guessed() -> None:
    message = plain()
    message.attachments.append(("data.json", b"{}", None))

    (payload,) = build(message)
    assert payload["attachments"][0]["content_type"] == "application/json"


def test_attachment_without_filename_gets_one() -> None:
    message = plain()
    message.attachments.append((None, b"\x00\x01", "application/pdf"))

    assert build(message)[0]["attachments"][0]["filename"] == "attachment-1.pdf"


def test_email_message_attachment_is_sent_as_rfc822() -> None:
    inner = plain(subject="Forwarded")
    message = plain()
    message.attach("fwd.eml", inner, "message/rfc822")

    (item,) = build(message)[0]["attachments"]
    assert item["content_type"] == "message/rfc822"
    assert b"Subject: Forwarded" in base64.b64decode(item["content"])


def _text_part() -> Any:
    if django.VERSION >= (6, 0):  # MIMEBase attachments are deprecated there
        from email.message import MIMEPart

        part = MIMEPart()
        part.set_content("hello", disposition="attachment", filename="hello.txt")
        return part
    part = MIMEText("hello", "plain")
    part.add_header("Content-Disposition", "attachment", filename="hello.txt")
    return part


def test_mime_part_without_content_id_is_a_plain_attachment() -> None:
    message = plain()
    message.attach(_text_part())

    (item,) = build(message)[0]["attachments"]
    charset = "utf-8" if django.VERSION >= (6, 0) else "us-ascii"  # the part's own label
    assert (item["filename"], item["content_type"]) == (
        "hello.txt",
        f'text/plain; charset="{charset}"',
    )
    assert "disposition" not in item
    assert base64.b64decode(item["content"]).rstrip(b"\n") == b"hello"


def test_attachment_over_the_api_limit_is_refused_naming_it(monkeypatch: Any) -> None:
    monkeypatch.setattr(attachments, "MAX_MESSAGE_BYTES", 100)
    message = plain()
    message.attach("big.bin", b"x" * 200, "application/octet-stream")

    with pytest.raises(CloudMailsInvalidMessage, match=r'"big\.bin"') as info:
        build(message)
    assert info.value.field == "attachments"


def test_message_over_the_api_limit_names_its_largest_attachment(monkeypatch: Any) -> None:
    from django_cloudmails import payloads

    monkeypatch.setattr(payloads, "MAX_MESSAGE_BYTES", 1000)
    message = plain()
    message.attach("a.bin", b"x" * 300, "application/octet-stream")
    message.attach("b.bin", b"x" * 600, "application/octet-stream")

    with pytest.raises(CloudMailsInvalidMessage, match=r'largest attachment is "b\.bin"'):
        build(message)


def test_custom_args_values_must_be_scalars() -> None:
    message = plain()
    message.custom_args = {"ids": [1, 2]}  # type: ignore[attr-defined]

    with pytest.raises(CloudMailsInvalidMessage, match="ids") as info:
        build(message)
    assert info.value.field == "custom_args"


def test_reserved_custom_args_key_is_refused() -> None:
    message = plain()
    message.custom_args = {DELIVERY_ID_ARG: "mine"}  # type: ignore[attr-defined]

    with pytest.raises(CloudMailsInvalidMessage, match="reserved"):
        build(message)


def test_delivery_id_is_added_to_custom_args() -> None:
    message = plain()
    message.metadata = {"order": 7}  # type: ignore[attr-defined]
    (api,) = build_api_messages(message)

    payload = with_delivery_id(api, "abc")

    assert payload["custom_args"] == {"order": 7, DELIVERY_ID_ARG: "abc"}
    assert api.metadata == {"order": 7}


def test_anymail_merge_metadata_is_added_per_recipient() -> None:
    message = plain(to=["a@example.com", "b@example.com"])
    message.metadata = {"campaign": "x"}  # type: ignore[attr-defined]
    message.merge_metadata = {"b@example.com": {"user": 2}}  # type: ignore[attr-defined]

    first, second = build_api_messages(message)
    assert first.metadata == {"campaign": "x"}
    assert second.metadata == {"campaign": "x", "user": 2}


def test_placeholders_are_left_alone_without_merge_data() -> None:
    (payload,) = build(plain(subject="{{name}}"))

    assert payload["subject"] == "{{name}}"


def test_missing_merge_value_is_refused_naming_the_placeholder() -> None:
    message = plain(subject="Hi {{name}}")
    message.merge_global_data = {"other": 1}  # type: ignore[attr-defined]

    with pytest.raises(CloudMailsInvalidMessage, match=r"\{\{name\}\}") as info:
        build(message)
    assert info.value.field == "merge_data"


def test_merge_values_are_escaped_in_html_but_not_in_text_or_subject() -> None:
    message = EmailMultiAlternatives("{{v}}", "{{v}}", "f@shop.example", ["a@example.com"])
    message.attach_alternative("<p>{{v}}</p>", "text/html")
    message.merge_global_data = {"v": "<&>"}  # type: ignore[attr-defined]

    (payload,) = build(message)
    assert (payload["subject"], payload["text"]) == ("<&>", "<&>")
    assert payload["html"] == "<p>&lt;&amp;&gt;</p>"


def test_safe_merge_values_are_not_escaped() -> None:
    message = EmailMultiAlternatives("s", "t", "f@shop.example", ["a@example.com"])
    message.attach_alternative("{{link}}", "text/html")
    message.merge_global_data = {"link": mark_safe('<a href="/x">x</a>')}

    assert build(message)[0]["html"] == '<a href="/x">x</a>'


def test_merge_data_for_text_only_messages_is_escaped_in_the_pre_block() -> None:
    message = plain(body="Hi {{name}}")
    message.merge_data = {"ann@example.com": {"name": "<Ann>"}}  # type: ignore[attr-defined]

    (payload,) = build(message)
    assert payload["text"] == "Hi <Ann>"
    assert payload["html"] == "<pre>Hi &lt;Ann&gt;</pre>"


def test_merge_data_is_found_by_bare_address_case_insensitively() -> None:
    message = plain(subject="{{n}}", to=["Ann <Ann@Example.com>"])
    message.merge_data = {"ann@example.com": {"n": "1"}}  # type: ignore[attr-defined]

    assert build(message)[0]["subject"] == "1"


def test_merge_data_must_be_a_dict() -> None:
    message = plain(subject="{{n}}")
    message.merge_global_data = ["n"]  # type: ignore[attr-defined]

    with pytest.raises(CloudMailsInvalidMessage, match="merge_global_data must be a dict"):
        build(message)
