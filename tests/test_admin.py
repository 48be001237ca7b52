"""Admin pages render for staff; deliveries are read-only; suppressions can be lifted."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from django_cloudmails.models import Delivery, DeliveryEvent, Suppression

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery() -> Delivery:
    row = Delivery.objects.create(
        message_id="msg_1",
        status="delivered",
        to_email="someone@example.com",
        from_email="shop@shop.example",
        subject="Your order",
        opens=2,
    )
    DeliveryEvent.objects.create(
        delivery=row,
        dedupe_key="evt_1",
        event="opened",
        message_id="msg_1",
        recipient="someone@example.com",
        occurred_at=datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc),
    )
    return row


@pytest.fixture
def suppression() -> Suppression:
    return Suppression.objects.create(address="gone@example.com", reason="hard_bounce")


def test_delivery_changelist_renders(admin_client: Client, delivery: Delivery) -> None:
    response = admin_client.get(reverse("admin:cloudmails_delivery_changelist"))
    assert response.status_code == 200
    assert b"Your order" in response.content


def test_delivery_changelist_has_no_add_button(admin_client: Client, delivery: Delivery) -> None:
    response = admin_client.get(reverse("admin:cloudmails_delivery_changelist"))
    assert reverse("admin:cloudmails_delivery_add").encode() not in response.content
    assert admin_client.get(reverse("admin:cloudmails_delivery_add")).status_code == 403


def test_delivery_changelist_search_by_message_id(admin_client: Client, delivery: Delivery) -> None:
    url = reverse("admin:cloudmails_delivery_changelist")
    assert b"Your order" in admin_client.get(url, {"q": "msg_1"}).content
    assert b"Your order" not in admin_client.get(url, {"q": "msg_2"}).content


def test_delivery_detail_renders_read_only_with_its_events(
    admin_client: Client, delivery: Delivery
) -> None:
    response = admin_client.get(reverse("admin:cloudmails_delivery_change", args=[delivery.pk]))
    assert response.status_code == 200
    assert b"<td>opened</td>" in response.content
    assert b'name="_save"' not in response.content


def test_delivery_page_shows_only_the_newest_events_and_links_to_all(
    admin_client: Client, delivery: Delivery
) -> None:
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(
            delivery=delivery,
            dedupe_key=f"evt_click_{i}",
            event="clicked",
            message_id="msg_1",
            recipient=f"reader{i:02}@example.com",
            occurred_at=datetime(2026, 5, 20, 9, i, tzinfo=timezone.utc),
        )
        for i in range(30)
    )

    page = admin_client.get(reverse("admin:cloudmails_delivery_change", args=[delivery.pk]))
    assert page.content.count(b"<td>clicked</td>") == 20
    assert b"reader29@example.com" in page.content
    assert b"reader09@example.com" not in page.content
    link = f"?delivery__id__exact={delivery.pk}"
    assert link.encode() in page.content

    listing = admin_client.get(reverse("admin:cloudmails_deliveryevent_changelist") + link)
    assert listing.status_code == 200
    assert b"reader09@example.com" in listing.content


def test_delivery_cannot_be_changed_by_post(admin_client: Client, delivery: Delivery) -> None:
    url = reverse("admin:cloudmails_delivery_change", args=[delivery.pk])
    admin_client.post(url, {"status": "bounced"})
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_event_changelist_and_detail_render(admin_client: Client, delivery: Delivery) -> None:
    event = delivery.events.get()
    assert admin_client.get(reverse("admin:cloudmails_deliveryevent_changelist")).status_code == 200
    detail = reverse("admin:cloudmails_deliveryevent_change", args=[event.pk])
    assert admin_client.get(detail).status_code == 200


def test_suppression_changelist_renders(admin_client: Client, suppression: Suppression) -> None:
    response = admin_client.get(reverse("admin:cloudmails_suppression_changelist"))
    assert b"gone@example.com" in response.content


def test_suppression_is_lifted_by_deleting_it(
    admin_client: Client, suppression: Suppression
) -> None:
    url = reverse("admin:cloudmails_suppression_delete", args=[suppression.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Suppression.objects.exists()


def test_suppression_can_be_added_by_hand_normalized(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:cloudmails_suppression_add"),
        {"address": "Someone <Someone@Example.COM>", "reason": "manual"},
    )
    assert response.status_code == 302
    assert Suppression.objects.get().address == "someone@example.com"


def test_manual_suppression_is_the_default_reason(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:cloudmails_suppression_add"))
    assert response.context["adminform"].form.initial["reason"] == "manual"


def test_adding_an_existing_address_in_another_case_is_refused(
    admin_client: Client, suppression: Suppression
) -> None:
    response: Any = admin_client.post(
        reverse("admin:cloudmails_suppression_add"),
        {"address": "GONE@example.com", "reason": "manual"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Suppression.objects.count() == 1


def test_delivery_search_by_address_finds_it(admin_client: Client, delivery: Delivery) -> None:
    url = reverse("admin:cloudmails_delivery_changelist")

    assert b"Your order" in admin_client.get(url, {"q": delivery.to_email}).content


def test_delivery_search_by_subject_words_still_works(
    admin_client: Client, delivery: Delivery
) -> None:
    url = reverse("admin:cloudmails_delivery_changelist")

    assert b"Your order" in admin_client.get(url, {"q": "order"}).content


def test_delivery_alias_filter_lists_the_configured_aliases(
    admin_client: Client, delivery: Delivery
) -> None:
    url = reverse("admin:cloudmails_delivery_changelist")
    response = admin_client.get(url, {"alias": "default"})

    assert b"?alias=default" in response.content
    assert b"Your order" in response.content
    assert b"Your order" not in admin_client.get(url, {"alias": "other"}).content
