"""Refreshing a delivery's status from the admin, in bulk and one row at a time: its own
permission, a confirmation first, the answers of the sandbox over HTTP (which sends no
webhook here, so the rows learn only from the refresh), the admin history, and a result
in words."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.mail import EmailMessage
from django.test import Client
from django.urls import reverse

from django_cloudmails.backends import EmailBackend
from django_cloudmails.models import Delivery

pytestmark = pytest.mark.django_db
LIST = "admin:cloudmails_delivery_changelist"
SIM = "simulator.cloudmails.test"


@pytest.fixture
def support(staff_client: Any, use_backend: dict[str, Any]) -> Client:
    """Staff who may view and refresh deliveries; polling asks one question at a time, so
    a scripted fault hits a known row."""
    use_backend["POLL_CONCURRENCY"] = 1
    client: Client = staff_client("cloudmails.view_delivery", "cloudmails.refresh_delivery")
    return client


def send(sandbox: Any, address: str, *, settle: bool = True) -> Delivery:
    """One email sent through the backend; with ``settle`` its fate is played out at the
    sandbox (the row, with no webhook, still says ``sent``)."""
    email = EmailMessage("Hi", "Body", None, [address])
    EmailBackend().send_messages([email])
    if settle:
        sandbox.wait_idle()
    row: Delivery = email.cloudmails_deliveries[0]  # type: ignore[attr-defined]
    return row


def bulk(client: Client, rows: list[Delivery], **extra: str) -> Any:
    data = {"action": "refresh", "_selected_action": [str(row.pk) for row in rows], **extra}
    return client.post(reverse(LIST), data)


def status_gets(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "GET" and "/emails/" in r.path]


def shown(client: Client, response: Any) -> list[str]:
    return [str(m) for m in client.get(response["Location"]).context["messages"]]


def statuses(rows: list[Delivery]) -> list[str]:
    return [Delivery.objects.get(pk=row.pk).status for row in rows]


def test_the_list_offers_refresh_with_its_permission(support: Client, make_delivery: Any) -> None:
    make_delivery()

    html = support.get(reverse(LIST)).content.decode()

    assert '<option value="refresh">Refresh status from the API</option>' in html


def test_the_list_offers_no_refresh_without_its_permission(
    staff_client: Any, make_delivery: Any
) -> None:
    make_delivery()
    viewer = staff_client("cloudmails.view_delivery", "cloudmails.resend_delivery")

    assert 'value="refresh"' not in viewer.get(reverse(LIST)).content.decode()


def test_bulk_refresh_asks_for_confirmation_first(support: Client, sandbox: Any) -> None:
    row = send(sandbox, f"delivered@{SIM}")

    response = bulk(support, [row])

    html = response.content.decode()
    assert response.status_code == 200
    assert "Ask CloudMails now for the status of these messages?" in html
    assert f"delivered@{SIM}" in html
    assert status_gets(sandbox) == []
    assert statuses([row]) == ["sent"]


def test_a_confirmed_refresh_moves_rows_to_what_the_api_says(support: Client, sandbox: Any) -> None:
    rows = [send(sandbox, f"delivered+{n}@{SIM}") for n in (1, 2)]

    response = bulk(support, rows, post="yes")

    assert statuses(rows) == ["delivered", "delivered"]
    assert len(status_gets(sandbox)) == 2
    assert shown(support, response) == ["Asked CloudMails about 2 deliveries: 2 now delivered."]


def test_the_result_says_what_changed_what_did_not_and_what_could_not_be_asked(
    support: Client, sandbox: Any
) -> None:
    first, second = (send(sandbox, f"delivered+{n}@{SIM}") for n in (1, 2))
    sandbox.pause_processing()  # its fate waits: the API still says "sent"
    waiting = send(sandbox, f"delivered+3@{SIM}", settle=False)
    last = send(sandbox, f"delivered+4@{SIM}", settle=False)
    sandbox.faults.script("ok", "ok", "ok")
    sandbox.faults.throttle_next(1, retry_after=30)

    response = bulk(support, [first, second, waiting, last], post="yes")

    sandbox.resume_processing()
    assert statuses([first, second, waiting, last]) == ["delivered", "delivered", "sent", "sent"]
    assert shown(support, response) == [
        "Asked CloudMails about 3 deliveries: 2 now delivered, 1 still sent.",
        "1 could not be asked: CloudMails is rate limiting, try again in 30 s.",
    ]


def test_each_row_asked_is_logged_in_its_history(support: Client, sandbox: Any) -> None:
    moved = send(sandbox, f"delivered@{SIM}")
    sandbox.pause_processing()
    same = send(sandbox, f"delivered+2@{SIM}", settle=False)
    unasked = send(sandbox, f"delivered+3@{SIM}", settle=False)
    sandbox.faults.script("ok", "ok", 429)

    bulk(support, [moved, same, unasked], post="yes")

    sandbox.resume_processing()
    entries = {e.object_id: e for e in LogEntry.objects.filter(action_flag=CHANGE)}
    assert set(entries) == {str(moved.pk), str(same.pk)}
    assert entries[str(moved.pk)].get_change_message() == (
        "Refreshed from CloudMails: sent, now delivered."
    )
    assert entries[str(same.pk)].get_change_message() == "Refreshed from CloudMails: still sent."
    assert entries[str(moved.pk)].user.username == "support"


def test_a_message_the_api_does_not_know_is_named(
    support: Client, sandbox: Any, make_delivery: Any
) -> None:
    row = make_delivery(message_id="msg_000000000000000000000000", to_email="lost@example.com")

    response = bulk(support, [row], post="yes")

    assert shown(support, response) == ["1 is unknown to CloudMails (lost@example.com)."]
    assert statuses([row]) == ["sent"]


def test_rows_without_a_message_id_are_not_asked_about(
    support: Client, sandbox: Any, make_delivery: Any
) -> None:
    row = make_delivery(message_id=None, status="unknown", to_email="pending@example.com")

    confirm = bulk(support, [row]).content.decode()
    response = bulk(support, [row], post="yes")

    assert "1 has no message id yet and is left alone (pending@example.com)." in confirm
    assert status_gets(sandbox) == []
    assert shown(support, response) == [
        "1 has no message id yet, so CloudMails has nothing to say about it (pending@example.com)."
    ]
    assert not LogEntry.objects.exists()


def test_a_bounce_the_api_reports_is_recorded_as_an_event(support: Client, sandbox: Any) -> None:
    row = send(sandbox, f"bounce@{SIM}")

    response = bulk(support, [row], post="yes")

    row.refresh_from_db()
    assert (row.status, row.events.get().event) == ("bounced", "bounced")
    assert shown(support, response) == ["Asked CloudMails about 1 delivery: 1 now bounced."]


def test_one_row_is_refreshed_from_its_page_after_confirming(support: Client, sandbox: Any) -> None:
    row = send(sandbox, f"delivered@{SIM}")
    page = reverse("admin:cloudmails_delivery_change", args=[row.pk])
    url = reverse("admin:cloudmails_delivery_refresh", args=[row.pk])
    assert url in support.get(page).content.decode()

    confirm = support.get(url)
    assert confirm.status_code == 200
    assert status_gets(sandbox) == []
    response = support.post(url)

    assert response["Location"] == page
    assert statuses([row]) == ["delivered"]
    assert shown(support, response) == ["Asked CloudMails about 1 delivery: 1 now delivered."]
    assert LogEntry.objects.get(object_id=str(row.pk)).action_flag == CHANGE


def test_a_row_without_a_message_id_offers_no_refresh_button(
    support: Client, make_delivery: Any
) -> None:
    row = make_delivery(message_id=None, status="queued")

    html = support.get(reverse("admin:cloudmails_delivery_change", args=[row.pk])).content
    assert reverse("admin:cloudmails_delivery_refresh", args=[row.pk]) not in html.decode()


def test_one_row_refresh_needs_the_permission(
    staff_client: Any, sandbox: Any, use_backend: Any
) -> None:
    row = send(sandbox, f"delivered@{SIM}")
    viewer = staff_client("cloudmails.view_delivery", "cloudmails.retry_delivery")
    url = reverse("admin:cloudmails_delivery_refresh", args=[row.pk])

    page = viewer.get(reverse("admin:cloudmails_delivery_change", args=[row.pk]))
    assert url not in page.content.decode()
    assert viewer.get(url).status_code == 403
    assert viewer.post(url).status_code == 403
    bulk(viewer, [row], post="yes")
    assert status_gets(sandbox) == []
    assert statuses([row]) == ["sent"]


def test_a_missing_api_key_is_said_and_changes_nothing(
    support: Client, sandbox: Any, make_delivery: Any, settings: Any
) -> None:
    row = make_delivery()
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "API_KEY": ""}

    response = bulk(support, [row], post="yes")

    (message,) = shown(support, response)
    assert message.startswith("Nothing was asked: No CloudMails API key: set CLOUDMAILS")
    assert status_gets(sandbox) == []
