"""Retrying deliveries whose send outcome is unknown, from the admin: its own permission,
a confirmation first, recovery against the sandbox over HTTP (evidence first, then a
resend under the stored Idempotency-Key), the admin history, a result in words, and the
rows it leaves alone and why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.mail import EmailMessage
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_cloudmails.backends import EmailBackend
from django_cloudmails.models import Delivery, DeliveryEvent

pytestmark = pytest.mark.django_db
LIST = "admin:cloudmails_delivery_changelist"
SIM = "simulator.cloudmails.test"


@pytest.fixture
def support(staff_client: Any, use_backend: Any) -> Client:
    """Staff who may view deliveries and retry those of unknown outcome."""
    client: Client = staff_client("cloudmails.view_delivery", "cloudmails.retry_delivery")
    return client


def unknown(sandbox: Any, address: str, fault: str = "lose", sender: str | None = None) -> Delivery:
    """A row whose every attempt got no answer: ``lose`` (the sandbox accepted it, the
    answer was lost) or ``drop`` (the connection closed before the sandbox read it)."""
    sandbox.faults.script(fault, fault, fault)
    email = EmailMessage("Hi", "Body", sender, [address])
    EmailBackend(fail_silently=True, retry_attempts=3).send_messages([email])
    sandbox.wait_idle()
    row: Delivery = email.cloudmails_deliveries[0]  # type: ignore[attr-defined]
    assert (row.status, row.message_id) == ("unknown", None)
    return row


def bulk(client: Client, rows: list[Delivery], **extra: str) -> Any:
    data = {"action": "retry", "_selected_action": [str(row.pk) for row in rows], **extra}
    return client.post(reverse(LIST), data)


def sends(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "POST" and r.path.startswith("/v1/send")]


def shown(client: Client, response: Any) -> list[str]:
    return [str(m) for m in client.get(response["Location"]).context["messages"]]


def fresh(row: Delivery) -> Delivery:
    return Delivery.objects.get(pk=row.pk)


def test_the_list_offers_retry_with_its_permission(support: Client, make_delivery: Any) -> None:
    make_delivery()

    html = support.get(reverse(LIST)).content.decode()

    assert '<option value="retry">Retry unknown outcome</option>' in html


def test_the_list_offers_no_retry_without_its_permission(
    staff_client: Any, make_delivery: Any
) -> None:
    make_delivery()
    viewer = staff_client("cloudmails.view_delivery", "cloudmails.refresh_delivery")

    assert 'value="retry"' not in viewer.get(reverse(LIST)).content.decode()


def test_bulk_retry_asks_for_confirmation_first(support: Client, sandbox: Any) -> None:
    row = unknown(sandbox, "ann@example.com")
    before = len(sends(sandbox))

    response = bulk(support, [row])

    html = response.content.decode()
    assert response.status_code == 200
    assert "Settle these messages whose send outcome is unknown, now?" in html
    assert "under their stored Idempotency-Key" in html
    assert len(sends(sandbox)) == before
    assert fresh(row).status == "unknown"


def test_a_lost_answer_is_settled_by_a_resend_the_api_accepts_once(
    support: Client, sandbox: Any
) -> None:
    row = unknown(sandbox, "ann@example.com")

    response = bulk(support, [row], post="yes")

    (message,) = sandbox.messages
    row = fresh(row)
    assert (row.status, row.message_id, row.recoveries) == ("sent", message.message_id, 1)
    assert sends(sandbox)[-1].headers["idempotency-key"] == row.idempotency_key
    (message,) = support.get(response["Location"]).context["messages"]
    assert str(message) == "Retried 1 delivery whose outcome was unknown: 1 accepted by CloudMails."
    assert message.level_tag == "success"
    entry = LogEntry.objects.get(object_id=str(row.pk))
    assert (entry.action_flag, entry.user.username) == (CHANGE, "support")
    assert entry.get_change_message() == f"Retried: accepted by CloudMails as {row.message_id}."


def test_the_result_says_accepted_settled_still_unknown_and_left_alone(
    support: Client, sandbox: Any
) -> None:
    accepted = unknown(sandbox, "ann@example.com")
    evidenced = unknown(sandbox, "bob@example.com")
    message = next(m for m in sandbox.messages if m.payload["to"] == "bob@example.com")
    # An event naming it came while its row could not take it (it is stored unlinked).
    DeliveryEvent.objects.create(
        dedupe_key="evt_1",
        event="delivered",
        message_id=message.message_id,
        delivery_ref=evidenced.pk,
        occurred_at=timezone.now(),
    )
    # Never read by the sandbox, and refused when resent: its sender is not verified.
    refused = unknown(sandbox, "cy@example.com", "drop", sender="someone@unverified.example")
    held = unknown(sandbox, "dee@example.com", "drop")
    claimed_by_another_run = timezone.now() - timedelta(seconds=10)
    Delivery.objects.filter(pk=held.pk).update(
        recoveries=1, attempt_started_at=claimed_by_another_run
    )
    before = len(sends(sandbox))

    response = bulk(support, [accepted, evidenced, refused, held], post="yes")

    error = fresh(refused).last_error
    assert shown(support, response) == [
        "Retried 3 deliveries whose outcome was unknown: 1 accepted by CloudMails, "
        "1 settled by an event, 1 still unknown.",
        f"1 is still of unknown outcome ({error}): an event naming it or the next recovery "
        "run settles it.",
        "1 left alone (dee@example.com): held by another recovery run; try again in 2 min.",
    ]
    assert [fresh(row).status for row in (accepted, evidenced, refused, held)] == [
        "sent",
        "delivered",
        "unknown",
        "unknown",
    ]
    assert {r.headers["idempotency-key"] for r in sends(sandbox)[before:]} == {
        accepted.idempotency_key,
        refused.idempotency_key,
    }
    logged = set(LogEntry.objects.values_list("object_id", flat=True))
    assert logged == {str(accepted.pk), str(evidenced.pk), str(refused.pk)}


def test_a_retry_that_settles_nothing_is_a_warning(support: Client, sandbox: Any) -> None:
    row = unknown(sandbox, "ann@example.com", "drop")
    sandbox.faults.script(503, 503, 503)

    response = bulk(support, [row], post="yes")

    levels = {str(m): m.level_tag for m in support.get(response["Location"]).context["messages"]}
    summary = "Retried 1 delivery whose outcome was unknown: 1 still unknown."
    assert levels[summary] == "warning"
    assert (fresh(row).status, fresh(row).recoveries) == ("unknown", 1)


def test_rows_whose_outcome_is_not_unknown_are_left_alone_with_the_reason(
    support: Client, sandbox: Any, make_delivery: Any
) -> None:
    rows = [
        make_delivery(status="delivered", to_email="done@example.com"),
        make_delivery(status="queued", message_id=None, to_email="waits@example.com"),
        make_delivery(
            status="queued",
            message_id=None,
            to_email="sending@example.com",
            attempt_started_at=timezone.now(),
        ),
    ]

    confirm = bulk(support, rows).content.decode()
    response = bulk(support, rows, post="yes")

    assert "3 are not of unknown outcome and are left alone" in confirm
    assert set(shown(support, response)) == {
        "1 left alone (done@example.com): outcome already known.",
        "1 left alone (waits@example.com): not sent yet, waiting for a worker.",
        "1 left alone (sending@example.com): being sent right now.",
    }
    assert sends(sandbox) == []
    assert not LogEntry.objects.exists()


def test_a_row_left_queued_by_a_dead_process_is_retried(
    support: Client, sandbox: Any, make_delivery: Any
) -> None:
    row = unknown(sandbox, "ann@example.com")
    long_ago = timezone.now() - timedelta(hours=1)
    Delivery.objects.filter(pk=row.pk).update(status="queued", attempt_started_at=long_ago)

    response = bulk(support, [row], post="yes")

    assert fresh(row).status == "sent"
    assert len(sandbox.messages) == 1
    assert shown(support, response) == [
        "Retried 1 delivery whose outcome was unknown: 1 accepted by CloudMails."
    ]


def test_a_delivery_of_unknown_outcome_explains_it_and_offers_retry(
    support: Client, sandbox: Any
) -> None:
    row = unknown(sandbox, "ann@example.com")
    Delivery.objects.filter(pk=row.pk).update(recoveries=2)

    html = support.get(reverse("admin:cloudmails_delivery_change", args=[row.pk])).content.decode()

    assert reverse("admin:cloudmails_delivery_retry", args=[row.pk]) in html
    assert "may or may not have accepted it" in html
    assert "under the same Idempotency-Key" in html
    assert "Recovery has tried 2 of 5 times" in html
    assert '<div class="readonly">2 of 5</div>' in html  # recovery tries


def test_a_delivery_whose_outcome_is_known_offers_no_retry(
    support: Client, make_delivery: Any
) -> None:
    row = make_delivery(status="delivered")

    html = support.get(reverse("admin:cloudmails_delivery_change", args=[row.pk])).content.decode()

    assert reverse("admin:cloudmails_delivery_retry", args=[row.pk]) not in html
    assert "recovery tries" not in html
    assert "what this means" not in html.lower()


def test_one_row_is_retried_from_its_page_after_confirming(support: Client, sandbox: Any) -> None:
    row = unknown(sandbox, "ann@example.com")
    url = reverse("admin:cloudmails_delivery_retry", args=[row.pk])
    before = len(sends(sandbox))

    confirm = support.get(url)
    assert confirm.status_code == 200
    assert len(sends(sandbox)) == before
    response = support.post(url)

    assert response["Location"] == reverse("admin:cloudmails_delivery_change", args=[row.pk])
    assert fresh(row).status == "sent"
    assert LogEntry.objects.get(object_id=str(row.pk)).action_flag == CHANGE


def test_one_row_retry_needs_the_permission(
    staff_client: Any, sandbox: Any, use_backend: Any
) -> None:
    row = unknown(sandbox, "ann@example.com")
    viewer = staff_client("cloudmails.view_delivery", "cloudmails.resend_delivery")
    url = reverse("admin:cloudmails_delivery_retry", args=[row.pk])
    before = len(sends(sandbox))

    page = viewer.get(reverse("admin:cloudmails_delivery_change", args=[row.pk]))
    assert url not in page.content.decode()
    assert viewer.get(url).status_code == 403
    assert viewer.post(url).status_code == 403
    bulk(viewer, [row], post="yes")
    assert len(sends(sandbox)) == before
    assert fresh(row).status == "unknown"
