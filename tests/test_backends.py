"""EmailBackend through Django's own mail API, against the running sandbox."""

from __future__ import annotations

import base64
from email.mime.image import MIMEImage
from typing import Any

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.translation import gettext_lazy

from django_cloudmails import dispatch, suppression
from django_cloudmails.backends import EmailBackend
from django_cloudmails.client import CloudMailsClient
from django_cloudmails.exceptions import (
    CloudMailsConfigurationError,
    CloudMailsInvalidMessage,
    CloudMailsInvalidRequest,
    CloudMailsSenderNotVerified,
    CloudMailsServerError,
    CloudMailsSuppressed,
    CloudMailsTransportError,
    CloudMailsUnauthorized,
    CloudMailsUnsupportedFeature,
)
from django_cloudmails.models import Delivery

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("use_backend")]

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def payloads(sandbox: Any) -> list[dict[str, Any]]:
    return [message.payload for message in sandbox.messages]


def api_requests(sandbox: Any, path: str) -> list[Any]:
    return [r for r in sandbox.requests if r.path.endswith(path) and r.method == "POST"]


def header(record: Any, name: str) -> str | None:
    return next((v for k, v in record.headers.items() if k.lower() == name.lower()), None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Django's API, field by field


def test_send_mail_sends_every_field_of_a_plain_message(sandbox: Any) -> None:
    sent = mail.send_mail("Hello", "Line 1\n<b>2</b>", None, ["ann@example.com"])

    assert sent == 1
    row = Delivery.objects.get()
    assert payloads(sandbox) == [
        {
            "to": "ann@example.com",
            "from": "Shop <noreply@shop.example>",
            "subject": "Hello",
            "html": "<pre>Line 1\n&lt;b&gt;2&lt;/b&gt;</pre>",
            "text": "Line 1\n<b>2</b>",
            "custom_args": {"cloudmails_delivery_id": str(row.id)},
        }
    ]


def test_send_mail_writes_a_sent_row_with_the_message_id(sandbox: Any) -> None:
    mail.send_mail("Hello", "Body", "sender@example.com", ["ann@example.com"])

    row = Delivery.objects.get()
    assert row.message_id == sandbox.messages[0].message_id
    assert row.status == "sent"
    assert row.attempts == 1
    assert row.sent_at is not None
    assert (row.to_email, row.from_email, row.subject) == (
        "ann@example.com",
        "sender@example.com",
        "Hello",
    )
    assert row.alias == "default"
    assert row.payload == sandbox.messages[0].payload
    assert row.error_code == row.last_error == ""


def test_single_send_carries_an_idempotency_key_from_the_row_id(sandbox: Any) -> None:
    mail.send_mail("Hello", "Body", None, ["ann@example.com"])

    (request,) = api_requests(sandbox, "/send")
    assert header(request, "Idempotency-Key") == f"cloudmails-{Delivery.objects.get().id}"


def test_send_mail_html_message_becomes_html_with_text(sandbox: Any) -> None:
    mail.send_mail("Hi", "Plain", None, ["ann@example.com"], html_message="<p>Rich</p>")

    (payload,) = payloads(sandbox)
    assert (payload["html"], payload["text"]) == ("<p>Rich</p>", "Plain")


def test_email_multi_alternatives_sends_html_and_text(sandbox: Any) -> None:
    message = EmailMultiAlternatives("Hi", "Plain", None, ["ann@example.com"])
    message.attach_alternative("<h1>Rich</h1>", "text/html")
    message.send()

    (payload,) = payloads(sandbox)
    assert (payload["html"], payload["text"]) == ("<h1>Rich</h1>", "Plain")


def test_html_content_subtype_sends_the_body_as_html_only(sandbox: Any) -> None:
    message = EmailMessage("Hi", "<p>Only html</p>", None, ["ann@example.com"])
    message.content_subtype = "html"
    message.send()

    (payload,) = payloads(sandbox)
    assert payload["html"] == "<p>Only html</p>"
    assert "text" not in payload


def test_each_to_address_becomes_one_api_message_with_cc_and_bcc_on_the_first(
    sandbox: Any,
) -> None:
    message = EmailMessage(
        "Hi",
        "Body",
        None,
        ["ann@example.com", "Bob <bob@example.com>", "cy@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
    )
    assert message.send() == 1

    by_to = {payload["to"]: payload for payload in payloads(sandbox)}
    assert set(by_to) == {"ann@example.com", "Bob <bob@example.com>", "cy@example.com"}
    assert by_to["ann@example.com"]["cc"] == ["cc@example.com"]
    assert by_to["ann@example.com"]["bcc"] == ["bcc@example.com"]
    assert "cc" not in by_to["Bob <bob@example.com>"]
    assert "bcc" not in by_to["cy@example.com"]
    rows = Delivery.objects.all()
    assert sorted(row.to_email for row in rows) == [
        "ann@example.com",
        "bob@example.com",
        "cy@example.com",
    ]
    assert {row.status for row in rows} == {"sent"}
    assert len({row.message_id for row in rows}) == 3


def test_reply_to_and_display_names_are_kept(sandbox: Any) -> None:
    EmailMessage(
        "Hi",
        "Body",
        "Shop Team <team@shop.example>",
        ["Ann Smith <ann@example.com>"],
        reply_to=["Help Desk <help@shop.example>"],
    ).send()

    (payload,) = payloads(sandbox)
    assert payload["from"] == "Shop Team <team@shop.example>"
    assert payload["to"] == "Ann Smith <ann@example.com>"
    assert payload["reply_to"] == "Help Desk <help@shop.example>"


def test_reply_to_header_is_mapped_to_reply_to(sandbox: Any) -> None:
    EmailMessage(
        "Hi", "Body", None, ["ann@example.com"], headers={"Reply-To": "help@shop.example"}
    ).send()

    assert payloads(sandbox)[0]["reply_to"] == "help@shop.example"


def test_attach_and_attach_file_send_base64_attachments(sandbox: Any, tmp_path: Any) -> None:
    path = tmp_path / "report.csv"
    path.write_text("a,b\n1,2\n")
    message = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    message.attach("logo.png", PNG, "image/png")
    message.attach("notes.txt", "héllo")
    message.attach_file(str(path))
    message.send()

    assert payloads(sandbox)[0]["attachments"] == [
        {"filename": "logo.png", "content": b64(PNG), "content_type": "image/png"},
        {
            "filename": "notes.txt",
            "content": b64("héllo".encode()),
            "content_type": 'text/plain; charset="utf-8"',
        },
        {
            "filename": "report.csv",
            "content": b64(b"a,b\n1,2\n"),
            "content_type": 'text/csv; charset="utf-8"',
        },
    ]
    assert Delivery.objects.get().payload["attachments"][0]["content"] == b64(PNG)


def _inline_image() -> Any:
    if django.VERSION >= (6, 0):  # MIMEBase attachments are deprecated there
        from email.message import MIMEPart

        part = MIMEPart()
        part.set_content(
            PNG,
            maintype="image",
            subtype="png",
            cid="<logo@shop>",
            disposition="inline",
            filename="logo.png",
        )
        return part
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<logo@shop>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    return image


def test_inline_image_is_sent_inline_with_its_content_id(sandbox: Any) -> None:
    message = EmailMultiAlternatives("Hi", "Body", None, ["ann@example.com"])
    message.attach_alternative('<img src="cid:logo@shop">', "text/html")
    message.attach(_inline_image())
    message.send()

    assert payloads(sandbox)[0]["attachments"] == [
        {
            "filename": "logo.png",
            "content": b64(PNG),
            "content_type": "image/png",
            "disposition": "inline",
            "content_id": "logo@shop",
        }
    ]


def test_non_ascii_survives_in_every_field(sandbox: Any) -> None:
    message = EmailMultiAlternatives(
        "Grüße 🎉 ça va?",
        "Straße",
        "Jörg Müller <noreply@shop.example>",
        ["Zoë <zoe@exämple.com>"],
        reply_to=["Сергей <help@shop.example>"],
    )
    message.attach_alternative("<p>日本語</p>", "text/html")
    message.attach("résumé.txt", "naïve")
    message.send()

    (payload,) = payloads(sandbox)
    assert payload["subject"] == "Grüße 🎉 ça va?"
    assert payload["from"] == "Jörg Müller <noreply@shop.example>"
    assert payload["to"] == "Zoë <zoe@xn--exmple-cua.com>"  # IDNA, as Django sends it
    assert payload["reply_to"] == "Сергей <help@shop.example>"
    assert (payload["text"], payload["html"]) == ("Straße", "<p>日本語</p>")
    assert payload["attachments"][0]["filename"] == "résumé.txt"
    assert Delivery.objects.get().subject == "Grüße 🎉 ça va?"


def test_lazy_translation_strings_are_sent_as_text(sandbox: Any) -> None:
    EmailMessage(
        gettext_lazy("Subject"), gettext_lazy("Body"), None, [gettext_lazy("ann@example.com")]
    ).send()

    (payload,) = payloads(sandbox)
    assert (payload["subject"], payload["text"], payload["to"]) == (
        "Subject",
        "Body",
        "ann@example.com",
    )


def test_custom_args_and_anymail_metadata_reach_the_api_and_the_row(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    message.metadata = {"user_id": 42, "plan": "pro"}  # type: ignore[attr-defined]
    message.custom_args = {"plan": "team", "label": gettext_lazy("x")}  # type: ignore[attr-defined]
    message.send()

    row = Delivery.objects.get()
    assert payloads(sandbox)[0]["custom_args"] == {
        "user_id": 42,
        "plan": "team",
        "label": "x",
        "cloudmails_delivery_id": str(row.id),
    }
    assert row.metadata == {"user_id": 42, "plan": "team", "label": "x"}


def test_merge_data_personalises_each_recipient(sandbox: Any) -> None:
    message = EmailMultiAlternatives(
        "Hello {{name}}", "Hi {{name}} from {{shop}}", None, ["ann@example.com", "bob@example.com"]
    )
    message.attach_alternative("<p>Hi {{ name }}</p>", "text/html")
    message.merge_global_data = {"shop": "Acme"}  # type: ignore[attr-defined]
    message.merge_data = {  # type: ignore[attr-defined]
        "ann@example.com": {"name": "Ann <3"},
        "bob@example.com": {"name": "Bob"},
    }
    message.send()

    by_to = {payload["to"]: payload for payload in payloads(sandbox)}
    assert by_to["ann@example.com"]["subject"] == "Hello Ann <3"
    assert by_to["ann@example.com"]["text"] == "Hi Ann <3 from Acme"
    assert by_to["ann@example.com"]["html"] == "<p>Hi Ann &lt;3</p>"
    assert by_to["bob@example.com"]["subject"] == "Hello Bob"


def test_tags_are_kept_on_the_row(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    message.tags = ["welcome", "onboarding"]  # type: ignore[attr-defined]
    message.send()

    assert Delivery.objects.get().tags == ["welcome", "onboarding"]
    assert "tags" not in payloads(sandbox)[0]


def test_send_mass_mail_sends_every_message_in_one_batch(sandbox: Any) -> None:
    sent = mail.send_mass_mail(
        [
            ("One", "Body 1", None, ["ann@example.com"]),
            ("Two", "Body 2", None, ["bob@example.com"]),
            ("Three", "Body 3", "sender@example.com", ["cy@example.com"]),
        ]
    )

    assert sent == 3
    assert len(api_requests(sandbox, "/send/batch")) == 1
    assert api_requests(sandbox, "/send") == []
    assert sorted(p["subject"] for p in payloads(sandbox)) == ["One", "Three", "Two"]
    rows = Delivery.objects.all()
    assert {row.status for row in rows} == {"sent"}
    assert len({row.batch_id for row in rows}) == 1
    assert rows[0].batch_id == sandbox.messages[0].batch_id
    assert {row.message_id for row in rows} == {m.message_id for m in sandbox.messages}


def test_mail_admins_sends_to_every_admin(sandbox: Any, settings: Any) -> None:
    if django.VERSION >= (6, 0):  # (name, address) pairs are deprecated there
        settings.ADMINS = ["admin@shop.example"]
    mail.mail_admins("Alert", "Something happened")

    (payload,) = payloads(sandbox)
    assert payload["to"] == "admin@shop.example"
    assert payload["subject"] == "[Django] Alert"
    assert payload["from"] == "server@shop.example"


def test_mail_managers_sends_to_every_manager(sandbox: Any, settings: Any) -> None:
    if django.VERSION >= (6, 0):
        settings.MANAGERS = ["manager@shop.example"]
    mail.mail_managers("Report", "Numbers", html_message="<b>Numbers</b>")

    (payload,) = payloads(sandbox)
    assert payload["to"] == "manager@shop.example"
    assert payload["html"] == "<b>Numbers</b>"


def test_batch_is_split_into_chunks_of_batch_size(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    cloudmails_settings["BATCH_SIZE"] = 2
    messages = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(5)]

    assert EmailBackend().send_messages(messages) == 5
    assert [len(r.json["messages"]) for r in api_requests(sandbox, "/send/batch")] == [2, 2, 1]
    assert Delivery.objects.filter(status="sent").count() == 5


def test_batch_chunks_are_sized_to_the_request_limit(sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(dispatch, "MAX_REQUEST_BYTES", 800)
    messages = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(6)]

    assert EmailBackend().send_messages(messages) == 6
    requests = api_requests(sandbox, "/send/batch")
    assert len(requests) > 1
    assert all(len(r.body) <= 800 for r in requests)
    assert sum(len(r.json["messages"]) for r in requests) == 6


def test_a_failed_request_in_the_middle_of_a_batch_fails_only_its_chunk(
    sandbox: Any, cloudmails_settings: dict[str, Any], monkeypatch: Any
) -> None:
    """Outcomes are stored while the next chunk is sent; each lands on its own rows."""
    cloudmails_settings["BATCH_SIZE"] = 2
    real_send_batch = CloudMailsClient.send_batch
    calls: list[int] = []

    def second_request_fails(client: Any, messages: Any, **kwargs: Any) -> Any:
        calls.append(len(messages))
        if len(calls) == 2:
            raise CloudMailsServerError(
                "CloudMails refused POST /send/batch (503)", status_code=503
            )
        return real_send_batch(client, messages, **kwargs)

    monkeypatch.setattr(CloudMailsClient, "send_batch", second_request_fails)
    messages = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(5)]

    with pytest.raises(CloudMailsServerError):
        EmailBackend().send_messages(messages)

    assert calls == [2, 2, 1]
    rows = dict(Delivery.objects.values_list("to_email", "status"))
    assert rows == {
        "u0@example.com": "sent",
        "u1@example.com": "sent",
        "u2@example.com": "failed",
        "u3@example.com": "failed",
        "u4@example.com": "sent",
    }
    assert set(Delivery.objects.filter(status="failed").values_list("error_code", flat=True)) == {
        "503"
    }


def test_refusals_in_several_chunks_are_all_recorded(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    cloudmails_settings["BATCH_SIZE"] = 2
    unverified = "someone@elsewhere.example"
    messages = [
        EmailMessage("Hi", "Body", unverified if i in (1, 4) else None, [f"u{i}@example.com"])
        for i in range(6)
    ]

    sent = EmailBackend(fail_silently=True).send_messages(messages)

    assert sent == 4
    failed = Delivery.objects.filter(status="failed")
    assert sorted(failed.values_list("to_email", "error_code")) == [
        ("u1@example.com", "403"),
        ("u4@example.com", "403"),
    ]
    assert Delivery.objects.filter(status="sent").count() == 4


def test_batch_requests_carry_an_idempotency_key(sandbox: Any) -> None:
    mail.send_mail("Hi", "Body", None, ["ann@example.com", "bob@example.com"])

    (request,) = api_requests(sandbox, "/send/batch")
    assert header(request, "Idempotency-Key").startswith("cloudmails-batch-")


def test_emails_are_given_their_delivery_rows(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    message.send()

    (row,) = message.cloudmails_deliveries  # type: ignore[attr-defined]
    assert row.message_id == sandbox.messages[0].message_id
    assert row.status == "sent"


# Backend object


def test_backend_as_context_manager_reuses_one_client(sandbox: Any) -> None:
    with EmailBackend() as backend:
        client = backend.client
        backend.send_messages([EmailMessage("A", "Body", None, ["ann@example.com"])])
        backend.send_messages([EmailMessage("B", "Body", None, ["bob@example.com"])])
        assert backend.client is client
    assert backend.client is None
    assert len(sandbox.messages) == 2


def test_backend_can_be_reopened_after_close(sandbox: Any) -> None:
    backend = EmailBackend()
    assert backend.open() is True
    assert backend.open() is False
    backend.close()
    assert backend.open() is True
    backend.close()


def test_send_messages_closes_only_the_client_it_opened(sandbox: Any) -> None:
    backend = EmailBackend()
    backend.send_messages([EmailMessage("A", "Body", None, ["ann@example.com"])])
    assert backend.client is None


def test_empty_message_list_sends_nothing(sandbox: Any) -> None:
    assert EmailBackend().send_messages([]) == 0
    assert sandbox.requests == []


def test_backend_keyword_arguments_override_settings(sandbox: Any) -> None:
    backend = EmailBackend(api_key="wrong-key")

    with pytest.raises(CloudMailsUnauthorized):
        backend.send_messages([EmailMessage("A", "Body", None, ["ann@example.com"])])


# Refused before sending


def test_message_without_to_raises_and_writes_no_row(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, [], cc=["cc@example.com"])

    with pytest.raises(CloudMailsInvalidMessage, match="no 'to'") as info:
        message.send()
    assert info.value.field == "to"
    assert not Delivery.objects.exists()
    assert sandbox.requests == []


def test_invalid_address_raises_naming_the_field(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, ["ann@example.com"], cc=["not an address"])

    with pytest.raises(CloudMailsInvalidMessage, match="cc") as info:
        message.send()
    assert info.value.field == "cc"
    assert not Delivery.objects.exists()


def test_one_invalid_message_stops_the_whole_call_before_anything_is_sent(
    sandbox: Any,
) -> None:
    good = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    bad = EmailMessage("Hi", "Body", None, ["ann@"])

    with pytest.raises(CloudMailsInvalidMessage):
        EmailBackend().send_messages([good, bad])
    assert sandbox.requests == []
    assert not Delivery.objects.exists()


def test_custom_header_raises_unsupported_feature(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, ["ann@example.com"], headers={"X-Campaign": "7"})

    with pytest.raises(CloudMailsUnsupportedFeature, match="x-campaign"):
        message.send()
    assert not Delivery.objects.exists()


def test_ignore_unsupported_features_sends_without_them(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    cloudmails_settings["IGNORE_UNSUPPORTED_FEATURES"] = True
    message = EmailMessage("Hi", "Body", None, ["ann@example.com"], headers={"X-Campaign": "7"})

    assert message.send() == 1
    assert "X-Campaign" not in str(payloads(sandbox)[0])


def test_fail_silently_records_a_failed_row_for_an_invalid_message(sandbox: Any) -> None:
    backend = EmailBackend(fail_silently=True)

    sent = backend.send_messages([EmailMessage("Hi", "Body", None, ["ann@"])])

    assert sent == 0
    row = Delivery.objects.get()
    assert (row.status, row.error_code, row.to_email) == ("failed", "invalid", "ann@")
    assert "not a valid email address" in row.last_error
    assert sandbox.requests == []


# Refused by the API


def test_401_raises_unauthorized_and_fails_the_row(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    cloudmails_settings["API_KEY"] = "wrong-key"

    with pytest.raises(CloudMailsUnauthorized, match="401"):
        mail.send_mail("Hi", "Body", None, ["ann@example.com"])
    row = Delivery.objects.get()
    assert (row.status, row.error_code, row.attempts) == ("failed", "401", 1)
    assert row.failed_at is not None
    assert "wrong-key" not in row.last_error


def test_403_unverified_sender_raises_and_fails_the_row(sandbox: Any) -> None:
    with pytest.raises(CloudMailsSenderNotVerified, match="not verified"):
        mail.send_mail("Hi", "Body", "someone@elsewhere.example", ["ann@example.com"])
    row = Delivery.objects.get()
    assert (row.status, row.error_code) == ("failed", "403")


def test_400_from_the_api_raises_and_fails_the_row(sandbox: Any) -> None:
    sandbox.faults.fail_next(1, status=400)

    with pytest.raises(CloudMailsInvalidRequest):
        mail.send_mail("Hi", "Body", None, ["ann@example.com"])
    row = Delivery.objects.get()
    assert (row.status, row.error_code, row.attempts) == ("failed", "400", 1)


def test_fail_silently_returns_zero_and_keeps_the_error(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    cloudmails_settings["API_KEY"] = "wrong-key"

    sent = EmailBackend(fail_silently=True).send_messages(
        [EmailMessage("Hi", "Body", None, ["ann@example.com"])]
    )

    assert sent == 0
    assert Delivery.objects.get().error_code == "401"


def test_batch_item_refusal_fails_only_that_row(sandbox: Any) -> None:
    good = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    bad = EmailMessage("Hi", "Body", "someone@elsewhere.example", ["bob@example.com"])

    with pytest.raises(CloudMailsSenderNotVerified, match=r"bob@example\.com"):
        EmailBackend().send_messages([good, bad])
    statuses = dict(Delivery.objects.values_list("to_email", "status"))
    assert statuses == {"ann@example.com": "sent", "bob@example.com": "failed"}
    assert Delivery.objects.get(to_email="bob@example.com").error_code == "403"
    assert [p["to"] for p in payloads(sandbox)] == ["ann@example.com"]


def test_batch_item_refusal_with_fail_silently_counts_the_rest(sandbox: Any) -> None:
    good = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    bad = EmailMessage("Hi", "Body", "someone@elsewhere.example", ["bob@example.com"])

    assert EmailBackend(fail_silently=True).send_messages([good, bad]) == 1


def test_batch_401_fails_every_row(sandbox: Any, cloudmails_settings: dict[str, Any]) -> None:
    cloudmails_settings["API_KEY"] = "wrong-key"
    cloudmails_settings["BATCH_SIZE"] = 2
    messages = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(5)]

    with pytest.raises(CloudMailsUnauthorized):
        EmailBackend().send_messages(messages)
    assert set(Delivery.objects.values_list("status", "error_code")) == {("failed", "401")}
    assert len(api_requests(sandbox, "/send/batch")) == 1


# Retries


def test_429_is_retried_and_each_attempt_recorded(sandbox: Any) -> None:
    sandbox.faults.throttle_next(2, retry_after=0)

    assert mail.send_mail("Hi", "Body", None, ["ann@example.com"]) == 1
    row = Delivery.objects.get()
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(sandbox.messages) == 1


def test_5xx_is_retried_and_each_attempt_recorded(sandbox: Any) -> None:
    sandbox.faults.fail_next(1, status=503)

    assert mail.send_mail("Hi", "Body", None, ["ann@example.com"]) == 1
    assert Delivery.objects.get().attempts == 2


def test_5xx_on_every_attempt_fails_the_row(sandbox: Any) -> None:
    sandbox.faults.fail_next(3, status=500)

    with pytest.raises(CloudMailsServerError):
        mail.send_mail("Hi", "Body", None, ["ann@example.com"])
    row = Delivery.objects.get()
    assert (row.status, row.error_code, row.attempts) == ("failed", "500", 3)


def test_batch_429_is_retried_and_recorded_on_every_row(sandbox: Any) -> None:
    sandbox.faults.throttle_next(1, retry_after=0)

    mail.send_mail("Hi", "Body", None, ["ann@example.com", "bob@example.com"])
    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 2)}


def test_lost_response_is_retried_without_sending_twice(sandbox: Any) -> None:
    sandbox.faults.lose_next(1)

    assert mail.send_mail("Hi", "Body", None, ["ann@example.com"]) == 1
    assert len(sandbox.messages) == 1
    row = Delivery.objects.get()
    assert (row.status, row.attempts) == ("sent", 2)
    assert row.message_id == sandbox.messages[0].message_id


def test_lost_batch_response_is_retried_without_sending_twice(sandbox: Any) -> None:
    sandbox.faults.lose_next(1)

    mail.send_mail("Hi", "Body", None, ["ann@example.com", "bob@example.com"])
    assert len(sandbox.messages) == 2
    assert {m.message_id for m in sandbox.messages} == set(
        Delivery.objects.values_list("message_id", flat=True)
    )


def test_no_answer_after_every_retry_makes_the_row_unknown_with_the_error(
    sandbox: Any,
) -> None:
    sandbox.faults.drop_next(3)

    with pytest.raises(CloudMailsTransportError):
        mail.send_mail("Hi", "Body", None, ["ann@example.com"])
    row = Delivery.objects.get()
    assert (row.status, row.error_code, row.attempts) == ("unknown", "transport", 3)
    assert row.message_id is None
    assert row.last_error


def test_row_left_unknown_can_be_resent_with_the_same_idempotency_key(sandbox: Any) -> None:
    sandbox.faults.lose_next(3)
    with pytest.raises(CloudMailsTransportError):
        mail.send_mail("Hi", "Body", None, ["ann@example.com"])
    row = Delivery.objects.get()

    with EmailBackend() as backend:
        assert backend.client is not None
        result = backend.client.send(row.payload, idempotency_key=f"cloudmails-{row.id}")

    assert len(sandbox.messages) == 1
    assert result.message_id == sandbox.messages[0].message_id


# Suppression


def test_suppressed_recipient_gets_a_failed_row_and_is_not_sent(sandbox: Any) -> None:
    suppression.suppress("Bob@Example.com", "hard_bounce")

    sent = mail.send_mail("Hi", "Body", None, ["ann@example.com", "bob@example.com"])

    assert sent == 0  # the email did not reach all of its recipients
    row = Delivery.objects.get(to_email="bob@example.com")
    assert (row.status, row.error_code) == ("failed", "suppressed")
    assert "hard_bounce" in row.last_error
    assert [p["to"] for p in payloads(sandbox)] == ["ann@example.com"]


def test_suppressed_recipient_raises_when_configured_to(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    cloudmails_settings["SUPPRESSED_RECIPIENTS"] = "raise"
    suppression.suppress("bob@example.com", "complained")

    with pytest.raises(CloudMailsSuppressed) as info:
        mail.send_mail("Hi", "Body", None, ["bob@example.com"])
    assert (info.value.address, info.value.reason) == ("bob@example.com", "complained")
    assert not Delivery.objects.exists()
    assert sandbox.requests == []


@pytest.mark.skipif(django.VERSION >= (6, 1), reason="get_connection() is deprecated on 6.1")
def test_get_connection_kwargs_reach_the_backend(sandbox: Any) -> None:
    connection = mail.get_connection(api_key="wrong-key", fail_silently=True)

    assert connection.send_messages([EmailMessage("Hi", "Body", None, ["a@example.com"])]) == 0
    assert Delivery.objects.get().error_code == "401"


def test_missing_api_key_raises_before_any_row_is_written(
    sandbox: Any, cloudmails_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOUDMAILS_API_KEY", raising=False)
    cloudmails_settings["API_KEY"] = ""

    with pytest.raises(CloudMailsConfigurationError, match="API_KEY"):
        EmailBackend(fail_silently=True).send_messages(
            [EmailMessage("Hi", "Body", None, ["ann@example.com"])]
        )
    assert not Delivery.objects.exists()
    assert sandbox.requests == []


def test_batch_size_out_of_range_raises_even_with_fail_silently(sandbox: Any) -> None:
    backend = EmailBackend(fail_silently=True, batch_size=5000)
    messages = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(2)]

    with pytest.raises(CloudMailsConfigurationError, match="batch_size"):
        backend.send_messages(messages)
    assert not Delivery.objects.exists()


def test_a_wrongly_typed_option_is_a_configuration_error(sandbox: Any) -> None:
    backend = EmailBackend(timeout="30s")  # type: ignore[arg-type]

    with pytest.raises(CloudMailsConfigurationError, match=r"manage\.py check"):
        backend.send_messages([EmailMessage("Hi", "Body", None, ["ann@example.com"])])
    assert not Delivery.objects.exists()


def test_every_backend_option_maps_to_a_setting() -> None:
    import inspect

    from django_cloudmails.conf import OPTION_KEYS

    parameters = inspect.signature(EmailBackend.__init__).parameters
    options = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}

    assert options - {"alias"} == set(OPTION_KEYS)


def test_rows_are_written_with_the_key_of_the_request_they_go_out_in(sandbox: Any) -> None:
    mail.send_mass_mail([("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(3)])
    mail.send_mail("Hi", "Body", None, ["solo@example.com"])

    batch_keys = set(
        Delivery.objects.exclude(to_email="solo@example.com").values_list(
            "idempotency_key", flat=True
        )
    )
    (batch_request,) = api_requests(sandbox, "/v1/send/batch")
    assert batch_keys == {header(batch_request, "idempotency-key")}
    solo = Delivery.objects.get(to_email="solo@example.com")
    assert solo.idempotency_key == f"cloudmails-{solo.id}"


def test_a_batch_whose_answer_was_lost_is_resent_under_its_stored_key_without_duplicates(
    sandbox: Any,
) -> None:
    sandbox.faults.lose_next(1)
    messages = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(2)]
    backend = EmailBackend(fail_silently=True, retry_attempts=1)

    assert backend.send_messages(messages) == 0
    rows = list(Delivery.objects.order_by("pk"))
    assert {row.status for row in rows} == {"unknown"}
    assert len({row.idempotency_key for row in rows}) == 1

    with CloudMailsClient("test-key", api_url=sandbox.url) as client:
        result = client.send_batch(
            [row.payload for row in rows], idempotency_key=rows[0].idempotency_key
        )
    sandbox.wait_idle()

    assert len(sandbox.messages) == 2
    assert {item.message_id for item in result.items} == {m.message_id for m in sandbox.messages}
