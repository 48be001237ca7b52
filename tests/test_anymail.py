"""django-anymail projects switch by settings: AnymailMessage, its status and its errors.

Against a real ``anymail.message.AnymailMessage`` (the dev extra installs anymail) and
the sandbox over HTTP.
"""

from __future__ import annotations

from typing import Any

import django
import pytest
from anymail.exceptions import AnymailUnsupportedFeature
from anymail.message import AnymailMessage, AnymailStatus
from anymail.utils import UNSET

from django_cloudmails.backends import EmailBackend
from django_cloudmails.exceptions import CloudMailsUnsupportedFeature
from django_cloudmails.models import Delivery

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("use_backend")]


def anymail_message(**kwargs: Any) -> AnymailMessage:
    defaults: dict[str, Any] = {
        "subject": "Hi",
        "body": "Body",
        "from_email": "news@shop.example",
        "to": ["ann@example.com"],
    }
    return AnymailMessage(**{**defaults, **kwargs})


def test_an_anymail_message_without_anymail_attributes_sends(sandbox: Any) -> None:
    message = anymail_message()
    assert message.tags is UNSET

    assert message.send() == 1
    row = Delivery.objects.get()
    assert (row.status, row.tags, row.metadata) == ("sent", [], {})


def test_an_anymail_message_sends_with_fail_silently_too(sandbox: Any) -> None:
    assert EmailBackend(fail_silently=True).send_messages([anymail_message()]) == 1


def test_tags_metadata_and_merge_attributes_are_honoured(sandbox: Any) -> None:
    message = anymail_message(
        subject="Hello {{name}}",
        to=["ann@example.com", "Bob <bob@example.com>"],
        tags=["welcome"],
        metadata={"campaign": "spring"},
        merge_global_data={"name": "friend"},
        merge_data={"bob@example.com": {"name": "Bob"}},
        merge_metadata={"bob@example.com": {"user": 2}},
    )

    assert message.send() == 1

    by_to = {m.payload["to"]: m.payload for m in sandbox.messages}
    assert by_to["ann@example.com"]["subject"] == "Hello friend"
    assert by_to["Bob <bob@example.com>"]["subject"] == "Hello Bob"
    assert by_to["Bob <bob@example.com>"]["custom_args"]["user"] == 2
    rows = {row.to_email: row for row in Delivery.objects.all()}
    assert rows["ann@example.com"].metadata == {"campaign": "spring"}
    assert rows["bob@example.com"].metadata == {"campaign": "spring", "user": 2}
    assert rows["bob@example.com"].tags == ["welcome"]


def test_anymail_status_is_filled_as_anymail_backends_fill_it(sandbox: Any) -> None:
    message = anymail_message(cc=["Cy <cy@example.com>"])

    message.send()

    status = message.anymail_status
    row = Delivery.objects.get()
    assert isinstance(status, AnymailStatus)
    assert status.message_id == row.message_id
    assert status.status == {"sent"}
    assert set(status.recipients) == {"ann@example.com", "cy@example.com"}
    assert status.recipients["cy@example.com"].message_id == row.message_id


def test_anymail_status_of_a_batch_has_one_message_id_per_recipient(sandbox: Any) -> None:
    message = anymail_message(to=["ann@example.com", "bob@example.com"])

    message.send()

    status = message.anymail_status
    assert status.status == {"queued"}  # the API processes batches asynchronously
    assert status.message_id == {row.message_id for row in Delivery.objects.all()}
    assert status.recipients["bob@example.com"].status == "queued"


def test_anymail_status_of_a_plain_email_message_is_filled_too(sandbox: Any) -> None:
    from django.core.mail import EmailMessage

    message = EmailMessage("Hi", "Body", None, ["ann@example.com"])
    message.send()

    assert message.anymail_status.status == {"sent"}  # type: ignore[attr-defined]


def test_an_unsupported_feature_is_both_ours_and_anymails(sandbox: Any) -> None:
    message = anymail_message(track_clicks=True)

    with pytest.raises(AnymailUnsupportedFeature) as info:
        message.send()
    assert isinstance(info.value, CloudMailsUnsupportedFeature)
    assert info.value.field == "track_clicks"
    assert "track_clicks" in str(info.value)
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("feature", ["headers", "alternatives", "reply_to", "attachments"])
def test_every_unsupported_feature_raises_anymails_exception(sandbox: Any, feature: str) -> None:
    message = anymail_message()
    if feature == "headers":
        message.extra_headers["X-Campaign"] = "7"
    elif feature == "alternatives":
        message.attach_alternative("BEGIN:VCALENDAR", "text/calendar")
    elif feature == "reply_to":
        message.reply_to = ["a@example.com", "b@example.com"]
    else:
        from email.mime.multipart import MIMEMultipart
        from email.mime.text import MIMEText

        if django.VERSION >= (6, 0):
            from email.message import MIMEPart

            part = MIMEPart()
            part.set_content("one")
            part.add_alternative("<p>one</p>", subtype="html")
            message.attach(part)
        else:
            message.attach(MIMEMultipart("alternative", _subparts=[MIMEText("a"), MIMEText("b")]))

    with pytest.raises(AnymailUnsupportedFeature) as info:
        message.send()
    assert info.value.field == feature


def test_anymail_ignore_unsupported_features_is_honoured(sandbox: Any, settings: Any) -> None:
    settings.ANYMAIL = {"IGNORE_UNSUPPORTED_FEATURES": True}

    assert anymail_message(track_clicks=True).send() == 1


def test_our_own_setting_wins_over_anymails(sandbox: Any, settings: Any) -> None:
    settings.ANYMAIL = {"IGNORE_UNSUPPORTED_FEATURES": True}
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "IGNORE_UNSUPPORTED_FEATURES": False}

    with pytest.raises(AnymailUnsupportedFeature):
        anymail_message(track_clicks=True).send()


def test_fail_silently_swallows_an_unsupported_feature_and_records_it(sandbox: Any) -> None:
    sent = EmailBackend(fail_silently=True).send_messages([anymail_message(send_at="x")])

    assert sent == 0
    row = Delivery.objects.get()
    assert (row.status, row.error_code) == ("failed", "unsupported")
