"""Management commands: cloudmails_sendtest, cloudmails_purge_bodies, cloudmails_outbox."""

from __future__ import annotations

import json
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


def outbox_row(status: str, *, age: timedelta, claimed: bool = False) -> Delivery:
    row = Delivery.objects.create(
        status=status,
        to_email="a@example.com",
        attempt_started_at=timezone.now() if claimed else None,
    )
    Delivery.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    return row


def outbox(*args: str) -> str:
    out = StringIO()
    call_command("cloudmails_outbox", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_outbox_counts_each_state_and_ages_the_oldest_queued_and_unknown() -> None:
    outbox_row("queued", age=timedelta(minutes=4, seconds=2))
    outbox_row("queued", age=timedelta(seconds=5), claimed=True)
    outbox_row("unknown", age=timedelta(hours=1, minutes=20))
    for _ in range(3):
        outbox_row("sent", age=timedelta(days=3))

    lines = outbox().splitlines()

    assert lines[0].split() == ["status", "rows", "oldest"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["queued"].split()[1:6] == ["2", "4", "min", "02", "s"]
    assert "(1 waiting for a worker, 1 claimed)" in rows["queued"]
    assert rows["unknown"].split()[1:] == ["1", "1", "h", "20", "min"]
    assert rows["sent"].split() == ["sent", "3"]
    assert rows["bounced"].split() == ["bounced", "0"]
    assert rows["total"].split() == ["total", "6"]


@pytest.mark.django_db
def test_outbox_with_nothing_waiting_shows_no_age() -> None:
    rows = {line.split()[0]: line.split()[1:] for line in outbox().splitlines()[1:]}

    assert rows["queued"] == ["0", "-"]
    assert rows["unknown"] == ["0", "-"]


@pytest.mark.django_db
def test_outbox_json_is_one_object_for_monitoring() -> None:
    outbox_row("queued", age=timedelta(seconds=90))
    outbox_row("failed", age=timedelta(seconds=1))

    state = json.loads(outbox("--json"))

    assert state["counts"]["queued"] == 1
    assert state["counts"]["failed"] == 1
    assert state["waiting"] == 1
    assert 90 <= state["oldest_queued"] < 120
    assert state["oldest_unknown"] is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (3.7, "3 s"), (242, "4 min 02 s"), (4800, "1 h 20 min"), (183600, "2 d 3 h")],
)
def test_outbox_ages_read_at_a_glance(seconds: float | None, shown: str) -> None:
    from django_cloudmails.management.commands.cloudmails_outbox import format_age

    assert format_age(seconds) == shown
