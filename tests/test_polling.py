"""Status polling against the sandbox: answers through the lifecycle, schedules, bounces.

The sandbox here has no webhook URL, so every event is lost: what the rows learn, they
learn from ``GET /emails/{id}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_cloudmails import polling, signals
from django_cloudmails.backends import EmailBackend
from django_cloudmails.models import Delivery, DeliveryEvent, Suppression
from django_cloudmails.polling import poll, refresh
from tests.factories import event_body

pytestmark = pytest.mark.django_db

SIM = "simulator.cloudmails.test"


@pytest.fixture
def settings_(cloudmails_settings: dict[str, Any]) -> dict[str, Any]:
    cloudmails_settings.update(POLL_SCHEDULE=[60, 300], POLL_CONCURRENCY=4)
    return cloudmails_settings


def sent(sandbox: Any, *fates: str) -> list[Delivery]:
    """One row per simulator fate, sent through the backend; fates played out."""
    emails = [EmailMessage("Hi", "Body", None, [f"{fate}@{SIM}"]) for fate in fates]
    EmailBackend().send_messages(emails)
    sandbox.wait_idle()
    return [email.cloudmails_deliveries[0] for email in emails]  # type: ignore[attr-defined]


def fresh(row: Delivery) -> Delivery:
    row.refresh_from_db()
    return row


def age(row: Delivery, seconds: float) -> None:
    """Make ``row`` look sent ``seconds`` ago."""
    Delivery.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


@pytest.fixture
def bounced_signals() -> Any:
    calls: list[tuple[Any, Any]] = []

    def receiver(sender: Any, delivery: Any, event: Any, **kwargs: Any) -> None:
        calls.append((delivery, event))

    signals.email_bounced.connect(receiver, weak=False)
    yield calls
    signals.email_bounced.disconnect(receiver)


# What an answer does.


@pytest.mark.parametrize(
    ("fate", "status"), [("deferred", "deferred"), ("reject", "failed"), ("delivered", "delivered")]
)
def test_a_poll_moves_the_row_to_the_api_status(
    sandbox: Any, settings_: Any, fate: str, status: str
) -> None:
    (row,) = sent(sandbox, fate)

    report = poll(ignore_schedule=True)

    assert (report.polled, report.advanced) == (1, 1)
    assert fresh(row).status == status
    assert (row.failed_at is not None) == (status == "failed")


def test_delivered_at_is_the_apis(sandbox: Any, settings_: Any) -> None:
    (row,) = sent(sandbox, "delivered")
    Delivery.objects.filter(pk=row.pk).update(delivered_at=timezone.now() - timedelta(days=1))

    poll(ignore_schedule=True)

    assert fresh(row).delivered_at == sandbox.message(row.message_id).delivered_at


def test_a_poll_never_moves_a_row_back(sandbox: Any, settings_: Any) -> None:
    (row,) = sent(sandbox, "delivered")
    Delivery.objects.filter(pk=row.pk).update(status="bounced")

    refresh([row])

    assert fresh(row).status == "bounced"


def test_counters_keep_the_higher_of_the_row_and_the_api(sandbox: Any, settings_: Any) -> None:
    low, high = sent(sandbox, "click", "click+2")
    Delivery.objects.filter(pk=high.pk).update(opens=5, clicks=4)

    refresh([low, high])

    assert (fresh(low).opens, low.clicks) == (1, 1)
    assert (fresh(high).opens, high.clicks) == (5, 4)


def test_an_unknown_row_with_a_message_id_becomes_what_the_api_says(
    sandbox: Any, settings_: Any
) -> None:
    (row,) = sent(sandbox, "deferred")
    Delivery.objects.filter(pk=row.pk).update(status="unknown")

    poll(ignore_schedule=True)

    assert fresh(row).status == "deferred"


def test_a_message_the_api_does_not_know_is_counted_and_rescheduled(
    sandbox: Any, settings_: Any
) -> None:
    (row,) = sent(sandbox, "deferred")
    Delivery.objects.filter(pk=row.pk).update(message_id="msg_gone")

    report = poll(ignore_schedule=True)

    assert (report.polled, report.not_found) == (1, 1)
    assert (fresh(row).status, row.polls) == ("sent", 1)
    assert row.next_poll_at is not None


def test_a_failed_request_is_counted_and_the_row_asked_again_later(
    sandbox: Any, settings_: Any
) -> None:
    (row,) = sent(sandbox, "deferred")
    sandbox.faults.script(503)

    report = poll(ignore_schedule=True)

    assert report.errors == 1
    assert (fresh(row).status, row.polls) == ("sent", 1)


# Bounces: suppressed and signalled like a bounce event, once.


def test_a_bounce_found_by_polling_is_recorded_suppressed_and_signalled(
    sandbox: Any,
    settings_: Any,
    bounced_signals: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    (row,) = sent(sandbox, "bounce")

    with django_capture_on_commit_callbacks(execute=True):
        report = poll(ignore_schedule=True)

    assert (report.bounced, report.advanced) == (1, 1)
    assert (fresh(row).status, row.bounce_type) == ("bounced", "hard")
    assert row.bounce_reason == sandbox.message(row.message_id).bounce_reason
    assert Suppression.objects.get().reason == "hard_bounce"
    (event,) = DeliveryEvent.objects.all()
    assert (event.event, event.delivery_id, event.payload["source"]) == ("bounced", row.pk, "poll")
    assert [(delivery.pk, sent_event.pk) for delivery, sent_event in bounced_signals] == [
        (row.pk, event.pk)
    ]


def test_a_bounce_webhook_after_the_poll_is_stored_without_a_second_bounce_signal(
    sandbox: Any,
    settings_: Any,
    bounced_signals: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django_cloudmails.recording import record_event
    from django_cloudmails.webhooks import parse_event

    (row,) = sent(sandbox, "bounce")
    with django_capture_on_commit_callbacks(execute=True):
        poll(ignore_schedule=True)
        webhook = event_body("bounced", message_id=row.message_id, recipient=row.to_email)
        assert record_event(parse_event(webhook, "evt_bounce")) is not None

    assert DeliveryEvent.objects.count() == 2
    assert len(bounced_signals) == 1
    assert Suppression.objects.count() == 1


def test_a_row_bounced_by_its_webhook_is_not_recorded_again_by_a_refresh(
    sandbox: Any, settings_: Any
) -> None:
    (row,) = sent(sandbox, "bounce")
    Delivery.objects.filter(pk=row.pk).update(status="bounced")

    report = refresh([row])

    assert (report.polled, report.bounced) == (1, 0)
    assert not DeliveryEvent.objects.exists()


def test_polling_a_bounce_twice_records_it_once(sandbox: Any, settings_: Any) -> None:
    (row,) = sent(sandbox, "bounce")
    poll(ignore_schedule=True)
    Delivery.objects.filter(pk=row.pk).update(status="sent")

    poll(ignore_schedule=True)

    assert DeliveryEvent.objects.count() == 1


# Which rows, and when.


def test_a_row_is_first_polled_after_the_first_delay(sandbox: Any, settings_: Any) -> None:
    (row,) = sent(sandbox, "deferred")

    assert poll().polled == 0
    age(row, 61)
    assert poll().polled == 1


def test_each_poll_schedules_the_next_along_the_schedule(sandbox: Any, settings_: Any) -> None:
    (row,) = sent(sandbox, "deferred")
    age(row, 61)

    before = timezone.now()
    poll()

    fresh(row)
    assert row.polls == 1
    assert (
        before + timedelta(seconds=300)
        <= row.next_poll_at
        <= timezone.now() + timedelta(seconds=300)
    )
    assert poll().polled == 0  # not due again yet
    Delivery.objects.filter(pk=row.pk).update(next_poll_at=timezone.now())
    poll()
    assert fresh(row).polls == 2
    assert row.next_poll_at >= timezone.now() + timedelta(seconds=299)  # the last repeats


def test_final_rows_are_not_polled(sandbox: Any, settings_: Any) -> None:
    sent(sandbox, "reject")
    poll(ignore_schedule=True)

    assert poll(ignore_schedule=True).polled == 0


def test_rows_older_than_poll_max_age_are_not_polled(sandbox: Any, settings_: Any) -> None:
    settings_["POLL_MAX_AGE"] = 3600
    old, young = sent(sandbox, "deferred", "deferred+2")
    age(old, 3601)
    age(young, 3599)

    poll()

    assert (fresh(old).polls, fresh(young).polls) == (0, 1)


def test_delivered_rows_are_polled_for_engagement_only_inside_the_window(
    sandbox: Any, settings_: Any
) -> None:
    (row,) = sent(sandbox, "open")
    poll(ignore_schedule=True)
    assert fresh(row).status == "delivered"

    assert poll(ignore_schedule=True).polled == 0
    settings_["POLL_ENGAGEMENT_FOR"] = 3600
    assert poll(ignore_schedule=True).polled == 1
    assert fresh(row).next_poll_at >= timezone.now() + timedelta(seconds=3599)  # hourly


def test_limit_polls_the_oldest_first(sandbox: Any, settings_: Any) -> None:
    rows = sent(sandbox, "deferred+1", "deferred+2", "deferred+3")
    for seconds, row in zip((100, 300, 200), rows, strict=True):
        age(row, seconds)

    poll(limit=2)

    assert [fresh(row).polls for row in rows] == [0, 1, 1]


def test_refresh_polls_given_rows_now_and_skips_those_without_a_message_id(
    sandbox: Any, settings_: Any
) -> None:
    (row,) = sent(sandbox, "deferred")
    unsent = Delivery.objects.create(to_email="x@example.com", from_email="a@shop.example")

    report = refresh([row, unsent.pk])

    assert (report.polled, report.skipped) == (1, 1)
    assert fresh(row).status == "deferred"


# How: bulk writes, bounded concurrency, 429.


def test_answers_are_written_in_one_statement_per_chunk(sandbox: Any, settings_: Any) -> None:
    sent(sandbox, "deferred+1", "reject", "delivered")

    with CaptureQueriesContext(connection) as queries:
        poll(ignore_schedule=True)

    updates = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "WITH"))
    ]
    assert len(updates) == 1


def test_requests_run_concurrently_on_at_most_poll_concurrency_connections(
    sandbox: Any, settings_: Any
) -> None:
    sandbox.faults.latency = 0.02
    sent(sandbox, *(f"deferred+{i}" for i in range(12)))
    first = len(sandbox.requests)

    poll(ignore_schedule=True)

    peers = {record.peer for record in sandbox.requests[first:]}
    assert 1 < len(peers) <= settings_["POLL_CONCURRENCY"]


def test_a_429_ends_the_run_early_and_reports_retry_after(sandbox: Any, settings_: Any) -> None:
    settings_["POLL_CONCURRENCY"] = 1
    rows = sent(sandbox, "deferred+1", "deferred+2", "deferred+3")
    first = len(sandbox.requests)
    sandbox.faults.script("ok", 429)

    report = poll(ignore_schedule=True)

    assert (report.rate_limited, report.retry_after, report.polled) == (True, 1.0, 1)
    assert len(sandbox.requests) - first == 2
    assert sorted(fresh(row).polls for row in rows) == [0, 0, 1]


def test_each_alias_is_polled_with_its_own_api_key(
    sandbox: Any, settings_: Any, settings: Any
) -> None:
    sandbox.api_keys.append("other-key")
    settings.MAILERS = {
        "default": {"BACKEND": "django_cloudmails.backends.EmailBackend"},
        "other": {
            "BACKEND": "django_cloudmails.backends.EmailBackend",
            "OPTIONS": {"api_key": "other-key"},
        },
    }
    (row,) = sent(sandbox, "deferred")
    Delivery.objects.filter(pk=row.pk).update(alias="other")
    first = len(sandbox.requests)

    poll(ignore_schedule=True)

    (request,) = sandbox.requests[first:]
    assert request.headers["authorization"] == "Bearer other-key"
    assert fresh(row).status == "deferred"


def test_the_poll_write_is_the_lifecycle_effect_plus_the_schedule() -> None:
    from django_cloudmails import lifecycle

    assert polling.POLL_WRITE.rules[: len(lifecycle.POLLED.rules)] == lifecycle.POLLED.rules


# The command.


def test_command_polls_and_prints_what_it_did(sandbox: Any, settings_: Any, capsys: Any) -> None:
    sent(sandbox, "deferred", "reject")

    call_command("cloudmails_poll", "--ignore-schedule", "--limit", "5")

    assert "Polled 2 deliveries: 2 moved forward" in capsys.readouterr().out


def test_command_reports_a_429(sandbox: Any, settings_: Any, capsys: Any) -> None:
    sent(sandbox, "deferred")
    sandbox.faults.script(429)

    call_command("cloudmails_poll", "--ignore-schedule")

    assert "retry after 1 s" in capsys.readouterr().err
