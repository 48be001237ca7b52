"""The events list: which delivery it is filtered to, and the way back to it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from django_cloudmails.models import Delivery, DeliveryEvent

pytestmark = pytest.mark.django_db
URL = "admin:cloudmails_deliveryevent_changelist"


def opened(delivery: Delivery | None, key: str) -> DeliveryEvent:
    return DeliveryEvent.objects.create(
        delivery=delivery,
        dedupe_key=key,
        event="opened",
        message_id="msg_x",
        recipient="ann@example.com",
        occurred_at=datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc),
    )


def test_filtered_to_one_delivery_the_list_says_which_and_links_back(
    admin_client: Client, make_delivery: Any
) -> None:
    delivery = make_delivery(subject="Spring sale")
    opened(delivery, "evt_1")
    opened(make_delivery(subject="Other"), "evt_2")

    html = admin_client.get(reverse(URL), {"delivery__id__exact": str(delivery.pk)}).content
    page = html.decode()

    assert "Showing the events of one delivery: “Spring sale” to ann@example.com." in page
    assert reverse("admin:cloudmails_delivery_change", args=[delivery.pk]) in page
    assert page.count('class="field-event"') == 1


def test_unfiltered_the_list_says_nothing_of_a_delivery(
    admin_client: Client, make_delivery: Any
) -> None:
    opened(make_delivery(), "evt_1")

    page = admin_client.get(reverse(URL)).content.decode()

    assert "Showing the events of one delivery" not in page


def test_a_filter_to_a_missing_delivery_says_so(admin_client: Client) -> None:
    page = admin_client.get(
        reverse(URL), {"delivery__id__exact": "00000000-0000-4000-8000-000000000000"}
    )

    assert "a delivery that no longer exists" in page.content.decode()


def test_the_delivery_column_is_a_short_link_with_the_whole_in_its_tooltip(
    admin_client: Client, make_delivery: Any
) -> None:
    delivery = make_delivery(subject="A subject long enough to need clipping in the list")
    opened(delivery, "evt_1")

    page = admin_client.get(reverse(URL)).content.decode()

    url = reverse("admin:cloudmails_delivery_change", args=[delivery.pk])
    assert f'<a class="cm-clip" href="{url}" title="A subject long enough' in page


def test_an_orphan_event_has_no_delivery_link(admin_client: Client) -> None:
    opened(None, "evt_orphan")

    page = admin_client.get(reverse(URL)).content.decode()

    assert '<td class="field-delivery_link">-</td>' in page
