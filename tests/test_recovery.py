"""Recovery against the sandbox: evidence first, then a resend under the stored key."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.utils import timezone

from django_cloudmails import claims, outbox
from django_cloudmails.backends import EmailBackend
from django_cloudmails.models import Delivery
from django_cloudmails.payloads import build_api_messages
from django_cloudmails.recording import record_event
from django_cloudmails.recovery import recover, retry
from django_cloudmails.webhooks import parse_event
from tests.factories import event_body
from tests.threads import run_threads

pytestmark = pytest.mark.django_db(transaction=True)

ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


@pytest.fixture(autouse=True)
def settings_(cloudmails_settings: dict[str, Any]) -> dict[str, Any]:
    return cloudmails_settings


def send(count: int = 1, **options: Any) -> list[Delivery]:
    """Send ``count`` emails in one call through the backend; their rows, in id order."""
    emails = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(count)]
    EmailBackend(fail_silently=True, **{"retry_attempts": 3, **options}).send_messages(emails)
    rows = [row for email in emails for row in email.cloudmails_deliveries]  # type: ignore[attr-defined]
    return sorted(rows, key=lambda row: row.pk)


def posts(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "POST" and r.path.startswith("/v1/send")]


def fresh(rows: list[Delivery]) -> list[Delivery]:
    return [Delivery.objects.get(pk=row.pk) for row in rows]


@pytest.mark.parametrize("script", [("drop", "drop", "drop"), ("lose", "lose", "lose")])
def test_an_unknown_row_is_resent_and_accepted_exactly_once(
    sandbox: Any, script: tuple[str, ...]
) -> None:
    sandbox.faults.script(*script)
    (row,) = send()

    report = recover(older_than=0)

    (message,) = sandbox.messages
    (row,) = fresh([row])
    assert (row.status, row.message_id, row.recoveries) == ("sent", message.message_id, 1)
    assert (report.claimed, report.resent, report.accepted, report.unknown) == (1, 1, 1, 0)
    assert posts(sandbox)[-1].headers["idempotency-key"] == row.idempotency_key


def test_lose_then_500_then_500_is_settled_with_the_first_accepted_message(
    sandbox: Any,
) -> None:
    sandbox.faults.script("lose", 500, 500)
    (row,) = send()

    recover(older_than=0)

    (message,) = sandbox.messages
    assert fresh([row])[0].message_id == message.message_id


def test_a_replayed_batch_answer_is_mapped_to_the_right_rows(sandbox: Any) -> None:
    sandbox.faults.script("lose", "lose", "lose")
    rows = send(4)
    assert {row.status for row in rows} == {"unknown"}

    recover(older_than=0)

    sandbox.wait_idle()
    assert len(sandbox.messages) == 4
    for row in fresh(rows):
        message = sandbox.message(row.message_id)
        assert message.payload["custom_args"]["cloudmails_delivery_id"] == str(row.pk)
        assert row.status == "sent"


def test_rows_left_queued_by_a_killed_sender_are_sent(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, ["a@example.com", "b@example.com"])
    rows = [outbox.new_delivery(m, alias="default") for m in build_api_messages(message)]
    outbox.assign_idempotency_keys([rows], batch=True)
    outbox.insert(rows, attempt_started=True)  # ...and the process died here

    report = recover(older_than=0)

    assert report.accepted == 2
    assert {row.status for row in fresh(rows)} == {"sent"}
    assert len(sandbox.messages) == 2


def test_an_event_carrying_the_delivery_id_settles_the_row_before_any_recovery(
    sandbox: Any,
) -> None:
    sandbox.faults.script("lose", "lose", "lose")
    (row,) = send()
    (message,) = sandbox.messages
    custom_args = {"cloudmails_delivery_id": str(row.pk)}
    webhook = event_body("delivered", message_id=message.message_id, custom_args=custom_args)
    record_event(parse_event(webhook, "evt_1"))
    sent_before = len(posts(sandbox))

    report = recover(older_than=0)

    (row,) = fresh([row])
    assert (row.status, row.message_id) == ("delivered", message.message_id)
    assert report.claimed == 0
    assert len(posts(sandbox)) == sent_before


def test_an_orphan_with_the_delivery_id_is_evidence(sandbox: Any) -> None:
    from django_cloudmails.models import DeliveryEvent

    sandbox.faults.script("lose", "lose", "lose")
    (row,) = send()
    (message,) = sandbox.messages
    DeliveryEvent.objects.create(
        dedupe_key="evt_orphan",
        event="opened",
        message_id=message.message_id,
        delivery_ref=row.pk,
        occurred_at=timezone.now(),
    )

    report = recover(older_than=0)

    (row,) = fresh([row])
    assert (row.status, row.message_id, row.opens) == ("delivered", message.message_id, 1)
    assert report.evidenced == 1
    assert DeliveryEvent.objects.get().delivery_id == row.pk


def test_rows_younger_than_recover_after_are_left_alone(sandbox: Any) -> None:
    sandbox.faults.script("drop", "drop", "drop")
    send()

    assert recover().claimed == 0
    Delivery.objects.update(attempt_started_at=timezone.now() - timedelta(seconds=901))
    assert recover().claimed == 1


def test_queued_rows_no_sender_claimed_yet_are_left_alone(sandbox: Any) -> None:
    message = EmailMessage("Hi", "Body", None, ["a@example.com"])
    rows = [outbox.new_delivery(m, alias="default") for m in build_api_messages(message)]
    outbox.assign_idempotency_keys([rows], batch=False)
    outbox.insert(rows)

    assert recover(older_than=0).claimed == 0


def test_a_refused_resend_keeps_the_row_unknown_and_counts_the_try(
    sandbox: Any, settings_: dict[str, Any]
) -> None:
    settings_["RECOVER_ATTEMPTS"] = 2
    sandbox.faults.script("drop", "drop", "drop")
    (row,) = send()

    for _ in range(2):
        sandbox.faults.script(500, 500, 500)
        assert recover(older_than=0).unknown == 1
        expire_the_claim(row)
    (row,) = fresh([row])
    assert (row.status, row.error_code, row.recoveries) == ("unknown", "500", 2)
    assert row.failed_at is None

    assert recover(older_than=0).claimed == 0  # recovery stopped
    report = retry([row])  # a person asks for another try
    assert (report.claimed, report.accepted) == (1, 1)
    assert fresh([row])[0].status == "sent"


def expire_the_claim(row: Delivery) -> None:
    past = timezone.now() - timedelta(seconds=claims.LEASE + 1)
    Delivery.objects.filter(pk=row.pk).update(attempt_started_at=past)


def test_a_fresh_recovery_claim_is_not_taken_even_by_a_run_told_any_age(sandbox: Any) -> None:
    sandbox.faults.script("drop", "drop", "drop")
    (row,) = send()
    sandbox.faults.script(500, 500, 500)
    assert recover(older_than=0).claimed == 1

    assert (recover(older_than=0).claimed, retry([row]).claimed) == (0, 0)
    expire_the_claim(row)
    assert recover(older_than=0).claimed == 1


def test_retry_settles_rows_whatever_their_age_and_ignores_others(sandbox: Any) -> None:
    sandbox.faults.script("drop", "drop", "drop")
    (unknown,) = send()
    (other,) = send()

    report = retry([unknown, other.pk])

    assert (report.claimed, report.accepted) == (1, 1)
    assert [row.status for row in fresh([unknown, other])] == ["sent", "sent"]


def test_a_request_claimed_by_another_run_is_not_sent_twice(sandbox: Any) -> None:
    sandbox.faults.script("lose", "lose", "lose")
    rows = send(2)
    Delivery.objects.filter(pk=rows[0].pk).update(
        attempt_started_at=timezone.now() + timedelta(seconds=1)
    )  # another run's claim, on part of the request
    sent_before = len(posts(sandbox))

    report = recover(older_than=0)

    assert (report.claimed, report.contended) == (0, 1)
    assert len(posts(sandbox)) == sent_before


def test_a_request_with_a_deleted_row_is_not_resent(sandbox: Any) -> None:
    sandbox.faults.script("lose", "lose", "lose")
    rows = send(2)
    Delivery.objects.filter(pk=rows[1].pk).delete()
    sent_before = len(posts(sandbox))

    report = recover(older_than=0)

    assert report.unrebuildable == 1
    assert len(posts(sandbox)) == sent_before


def test_without_idempotency_a_lost_answer_is_sent_twice(sandbox: Any) -> None:
    """What the README warns about: only the API's Idempotency-Key makes a resend safe."""
    sandbox.faults.ignore_idempotency = True
    sandbox.faults.script("lose")
    (row,) = send(retry_attempts=1)

    recover(older_than=0)

    assert len(sandbox.messages) == 2  # the same email, accepted twice
    assert fresh([row])[0].message_id == sandbox.messages[1].message_id


def test_without_idempotency_evidence_still_prevents_the_duplicate(sandbox: Any) -> None:
    sandbox.faults.ignore_idempotency = True
    sandbox.faults.script("lose")
    (row,) = send(retry_attempts=1)
    (message,) = sandbox.messages
    custom_args = {"cloudmails_delivery_id": str(row.pk)}
    record_event(
        parse_event(event_body(message_id=message.message_id, custom_args=custom_args), "e1")
    )

    recover(older_than=0)

    assert len(sandbox.messages) == 1


@pytest.mark.skipif(not ON_POSTGRESQL, reason="needs PostgreSQL row locks across connections")
def test_two_runs_at_once_send_each_request_once(sandbox: Any) -> None:
    sandbox.faults.script(*["lose"] * 3, *["drop"] * 3, *["lose"] * 3)
    batch, single, third = send(3), send(), send(2)
    requests_before = len(posts(sandbox))
    run_threads(lambda index: recover(older_than=0), 2)

    resent_keys = [r.headers["idempotency-key"] for r in posts(sandbox)[requests_before:]]
    assert sorted(resent_keys) == sorted(
        {row.idempotency_key for row in fresh([*batch, *single, *third])}
    )
    assert {row.status for row in fresh([*batch, *single, *third])} == {"sent"}


def test_command_recovers_and_prints_what_it_did(sandbox: Any, capsys: Any) -> None:
    sandbox.faults.script("drop", "drop", "drop")
    send()

    call_command("cloudmails_recover", "--older-than", "0")

    out = capsys.readouterr().out
    assert "Claimed 1 deliveries" in out
    assert "1 resent, 1 accepted, 0 still unknown" in out
