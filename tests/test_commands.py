"""Management commands: cloudmails_sendtest and cloudmails_purge_bodies."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import django
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_cloudmails.models import Delivery

OURS = "django_cloudmails.backends.EmailBackend"


@pytest.fixture
def backend(settings: Any, cloudmails_settings: dict[str, Any]) -> dict[str, Any]:
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": OURS}}
    else:
        settings.EMAIL_BACKEND = OURS
    return cloudmails_settings


def sendtest(*args: str) -> str:
    out = StringIO()
    call_command("cloudmails_sendtest", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_sendtest_prints_the_message_id_and_status(backend: Any, sandbox: Any) -> None:
    output = sendtest("ann@example.com")

    (message,) = sandbox.messages
    assert f"message_id: {message.message_id}" in output
    assert "status: sent" in output
    assert Delivery.objects.get().message_id == message.message_id


@pytest.mark.django_db(transaction=True)
def test_sendtest_takes_from_and_subject(backend: Any, sandbox: Any) -> None:
    sendtest("ann@example.com", "--from", "Ops <ops@shop.example>", "--subject", "Ping")

    payload = sandbox.messages[0].payload
    assert (payload["from"], payload["subject"]) == ("Ops <ops@shop.example>", "Ping")


@pytest.mark.django_db(transaction=True)
def test_sendtest_failure_is_a_command_error_without_the_api_key(
    backend: dict[str, Any], sandbox: Any
) -> None:
    backend["API_KEY"] = "secret-wrong-key"

    with pytest.raises(CommandError, match="401") as info:
        sendtest("ann@example.com")
    assert "secret-wrong-key" not in str(info.value)


@pytest.mark.django_db
def test_sendtest_without_api_key_is_a_command_error(
    backend: dict[str, Any], monkeypatch: Any
) -> None:
    monkeypatch.delenv("CLOUDMAILS_API_KEY", raising=False)
    backend["API_KEY"] = ""

    with pytest.raises(CommandError, match="API key"):
        sendtest("ann@example.com")


@pytest.mark.django_db
def test_sendtest_invalid_address_is_a_command_error(backend: Any) -> None:
    with pytest.raises(CommandError, match="not a valid email address"):
        sendtest("not-an-address")


def make_row(age_days: int) -> Delivery:
    row = Delivery.objects.create(
        to_email="ann@example.com",
        from_email="f@shop.example",
        subject="Hi",
        payload={
            "to": "ann@example.com",
            "from": "f@shop.example",
            "subject": "Hi",
            "cc": ["c@example.com"],
            "html": "<p>x</p>",
            "text": "x",
            "attachments": [{"filename": "a", "content": "eA==", "content_type": "text/plain"}],
            "custom_args": {"k": "v"},
        },
    )
    Delivery.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    return row


@pytest.mark.django_db
def test_purge_bodies_drops_bodies_of_old_rows_and_keeps_the_envelope() -> None:
    old, new = make_row(40), make_row(1)

    call_command("cloudmails_purge_bodies", "--days", "30", stdout=StringIO())

    old.refresh_from_db()
    new.refresh_from_db()
    assert old.payload == {
        "to": "ann@example.com",
        "from": "f@shop.example",
        "subject": "Hi",
        "cc": ["c@example.com"],
        "custom_args": {"k": "v"},
    }
    assert old.body_purged_at is not None
    assert "html" in new.payload
    assert new.body_purged_at is None


@pytest.mark.django_db
def test_purge_bodies_uses_the_retention_setting(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k", "BODY_RETENTION_DAYS": 7}
    row = make_row(10)
    out = StringIO()

    call_command("cloudmails_purge_bodies", stdout=out)

    row.refresh_from_db()
    assert row.body_purged_at is not None
    assert "Purged the bodies of 1 deliveries" in out.getvalue()


@pytest.mark.django_db
def test_purge_bodies_without_retention_is_a_command_error(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k"}

    with pytest.raises(CommandError, match="BODY_RETENTION_DAYS"):
        call_command("cloudmails_purge_bodies")
