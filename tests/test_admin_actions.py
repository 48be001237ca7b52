"""Resending from the admin, in bulk and one row at a time: its own permission, a
confirmation first, the sandbox receiving the messages, the admin history."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.test import Client
from django.urls import reverse

from django_cloudmails.models import Delivery, Suppression
from django_cloudmails.payloads import DELIVERY_ID_ARG

pytestmark = pytest.mark.django_db
LIST = "admin:cloudmails_delivery_changelist"
VIEW_AND_RESEND = ("cloudmails.view_delivery", "cloudmails.resend_delivery")


@pytest.fixture
def support(staff_client: Any, use_backend: Any) -> Client:
    """Staff who may view and resend deliveries, with CloudMails at the sandbox."""
    client: Client = staff_client(*VIEW_AND_RESEND)
    return client


def bulk(client: Client, rows: list[Delivery], **extra: str) -> Any:
    data = {"action": "resend", "_selected_action": [str(row.pk) for row in rows], **extra}
    return client.post(reverse(LIST), data)


def row_url(delivery: Delivery) -> str:
    return reverse("admin:cloudmails_delivery_resend", args=[delivery.pk])


def test_the_list_offers_resend_with_its_permission(support: Client, make_delivery: Any) -> None:
    make_delivery()

    assert '<option value="resend">Resend</option>' in support.get(reverse(LIST)).content.decode()


def test_the_list_offers_no_resend_without_its_permission(
    staff_client: Any, make_delivery: Any
) -> None:
    make_delivery()
    viewer = staff_client("cloudmails.view_delivery")

    assert 'value="resend"' not in viewer.get(reverse(LIST)).content.decode()


def test_bulk_resend_asks_for_confirmation_first(
    support: Client, make_delivery: Any, sandbox: Any
) -> None:
    rows = [make_delivery(to_email="ann@example.com"), make_delivery(to_email="bob@example.com")]

    response = bulk(support, rows)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Send these messages again" in html
    assert "ann@example.com" in html
    assert "bob@example.com" in html
    assert 'name="post" value="yes"' in html
    assert sandbox.messages == []
    assert Delivery.objects.count() == 2


def test_a_confirmed_bulk_resend_sends_new_deliveries_linked_to_the_originals(
    support: Client, make_delivery: Any, sandbox: Any
) -> None:
    rows = [make_delivery(to_email="ann@example.com"), make_delivery(to_email="bob@example.com")]

    response = bulk(support, rows, post="yes")

    assert response.status_code == 302
    resends = list(Delivery.objects.filter(resent_from__isnull=False).order_by("to_email"))
    assert [r.resent_from_id for r in resends] == [rows[0].pk, rows[1].pk]
    assert {r.status for r in resends} == {"sent"}
    assert {m.payload["custom_args"][DELIVERY_ID_ARG] for m in sandbox.messages} == {
        str(r.pk) for r in resends
    }
    messages = [str(m) for m in support.get(reverse(LIST)).context["messages"]]
    assert "Resent 2 deliveries as new ones." in messages


def test_a_resend_carries_the_stored_message_under_a_new_key(
    support: Client, make_delivery: Any, sandbox: Any
) -> None:
    original = make_delivery(idempotency_key="cloudmails-original")

    bulk(support, [original], post="yes")

    (message,) = sandbox.messages
    stored = {k: v for k, v in original.payload.items() if k != "custom_args"}
    assert {k: v for k, v in message.payload.items() if k != "custom_args"} == stored
    resend = Delivery.objects.get(resent_from=original)
    assert resend.idempotency_key not in ("", original.idempotency_key)
    assert message.payload["custom_args"] == {"order": "1001", DELIVERY_ID_ARG: str(resend.pk)}


def test_a_resend_is_logged_on_both_rows(support: Client, make_delivery: Any, sandbox: Any) -> None:
    original = make_delivery()

    bulk(support, [original], post="yes")

    resend = Delivery.objects.get(resent_from=original)
    changed = LogEntry.objects.get(object_id=str(original.pk))
    added = LogEntry.objects.get(object_id=str(resend.pk))
    assert (changed.action_flag, changed.user.username) == (CHANGE, "support")
    assert changed.get_change_message() == f"Resent as {resend.pk}."
    assert (added.action_flag, added.get_change_message()) == (
        ADDITION,
        f"Resend of {original.pk}.",
    )


def test_a_suppressed_recipient_is_refused_with_a_message(
    support: Client, make_delivery: Any, sandbox: Any
) -> None:
    Suppression.objects.create(address="ann@example.com", reason="hard_bounce")
    original = make_delivery(to_email="ann@example.com")

    response = bulk(support, [original], post="yes")

    assert sandbox.messages == []
    assert not Delivery.objects.filter(resent_from=original).exists()
    messages = [str(m) for m in support.get(response["Location"]).context["messages"]]
    assert (
        "Not done for ann@example.com: ann@example.com is on the suppression list "
        "(hard bounce)." in messages
    )


def test_rows_with_nothing_to_send_are_refused(
    support: Client, make_delivery: Any, sandbox: Any
) -> None:
    from django.utils import timezone

    purged = make_delivery(to_email="purged@example.com", body_purged_at=timezone.now())
    queued = make_delivery(to_email="queued@example.com", status="queued")

    response = bulk(support, [purged, queued], post="yes")

    messages = " ".join(str(m) for m in support.get(response["Location"]).context["messages"])
    assert "purged@example.com: its body was purged" in messages
    assert "queued@example.com: it has not been sent yet" in messages
    assert sandbox.messages == []


def test_the_confirmation_warns_that_an_unknown_outcome_may_still_arrive(
    support: Client, make_delivery: Any
) -> None:
    row = make_delivery(status="unknown", to_email="lost@example.com")

    html = bulk(support, [row]).content.decode()

    assert "The outcome of the first sending is unknown for lost@example.com" in html


def test_one_row_is_resent_from_its_page_after_confirming(
    support: Client, make_delivery: Any, sandbox: Any
) -> None:
    original = make_delivery()
    page = support.get(reverse("admin:cloudmails_delivery_change", args=[original.pk]))
    assert row_url(original) in page.content.decode()

    confirm = support.get(row_url(original))
    assert confirm.status_code == 200
    assert sandbox.messages == []
    response = support.post(row_url(original))

    resend = Delivery.objects.get(resent_from=original)
    assert response["Location"] == reverse("admin:cloudmails_delivery_change", args=[resend.pk])
    assert len(sandbox.messages) == 1
    assert LogEntry.objects.filter(object_id=str(resend.pk), action_flag=ADDITION).exists()


def test_one_row_resend_needs_the_permission(
    staff_client: Any, make_delivery: Any, sandbox: Any, use_backend: Any
) -> None:
    viewer = staff_client("cloudmails.view_delivery")
    original = make_delivery()

    page = viewer.get(reverse("admin:cloudmails_delivery_change", args=[original.pk]))
    assert row_url(original) not in page.content.decode()
    assert viewer.get(row_url(original)).status_code == 403
    assert viewer.post(row_url(original)).status_code == 403
    assert sandbox.messages == []


def test_bulk_resend_without_the_permission_does_nothing(
    staff_client: Any, make_delivery: Any, sandbox: Any, use_backend: Any
) -> None:
    viewer = staff_client("cloudmails.view_delivery")
    original = make_delivery()

    bulk(viewer, [original], post="yes")

    assert sandbox.messages == []
    assert Delivery.objects.count() == 1
