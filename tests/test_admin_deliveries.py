"""The delivery list: its columns, filters and pages (read-only, never counted)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_cloudmails.models import Delivery

pytestmark = pytest.mark.django_db
URL = "admin:cloudmails_delivery_changelist"


def listing(client: Client, **params: str) -> str:
    response = client.get(reverse(URL), params)
    assert response.status_code == 200
    return response.content.decode()


def test_the_list_shows_recipient_subject_and_times(
    admin_client: Client, make_delivery: Any
) -> None:
    make_delivery(subject="Your order", status="delivered", delivered_at=timezone.now(), opens=2)

    page = listing(admin_client)

    assert "ann@example.com" in page
    assert "Your order" in page
    assert "2 / 0" in page
    assert page.count("<time datetime=") == 2  # sent and delivered


def test_status_is_a_badge_that_reads_as_text(admin_client: Client, make_delivery: Any) -> None:
    make_delivery(status="unknown")

    page = listing(admin_client)

    assert 'class="cm-badge cm-status-unknown"' in page
    assert "outcome unknown</span>" in page


def test_a_bounce_reason_is_shortened_with_the_whole_in_its_tooltip(
    admin_client: Client, make_delivery: Any
) -> None:
    reason = "550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown in table"
    make_delivery(status="bounced", bounce_reason=reason)

    page = listing(admin_client)

    assert f'title="{reason.replace("<", "&lt;").replace(">", "&gt;")}"' in page
    assert "Recipient address rejected: User unknown in table</span>" not in page


def test_a_resend_is_marked_in_the_list(admin_client: Client, make_delivery: Any) -> None:
    original = make_delivery()
    make_delivery(resent_from=original)

    assert 'class="cm-resend"' in listing(admin_client)


def test_the_list_has_no_add_button(admin_client: Client, make_delivery: Any) -> None:
    make_delivery()

    assert reverse("admin:cloudmails_delivery_add") not in listing(admin_client)
    assert admin_client.get(reverse("admin:cloudmails_delivery_add")).status_code == 403


def test_the_list_never_loads_payloads(admin_client: Client, make_delivery: Any) -> None:
    make_delivery()

    with CaptureQueriesContext(connection) as queries:
        listing(admin_client)

    selects = [q["sql"] for q in queries if "cloudmails_delivery" in q["sql"]]
    assert selects
    assert not any('"payload"' in sql or "payload," in sql for sql in selects)


def test_the_list_is_never_counted(admin_client: Client, make_delivery: Any) -> None:
    make_delivery()

    with CaptureQueriesContext(connection) as queries:
        listing(admin_client, status__exact="sent")

    assert not any("COUNT(" in q["sql"].upper() for q in queries)


def test_pages_link_to_older_and_newer_rows(admin_client: Client, make_delivery: Any) -> None:
    for number in range(101):
        make_delivery(subject=f"Message {number:03}")

    first = listing(admin_client)
    second = listing(admin_client, p="2")

    assert "Deliveries 1\u2013100" in first
    assert "?p=2" in first
    assert 'rel="prev"' not in first
    assert "Deliveries 101\u2013101" in second
    assert "Message 000" in second
    assert 'rel="next"' not in second


def test_search_finds_a_message_id_an_address_and_subject_words(
    admin_client: Client, make_delivery: Any
) -> None:
    make_delivery(subject="Your order", to_email="bob@example.com")

    assert "Your order" in listing(admin_client, q="msg_1")
    assert "Your order" not in listing(admin_client, q="msg_2")
    assert "Your order" in listing(admin_client, q="bob@example.com")
    assert "Your order" in listing(admin_client, q="order")


def test_the_status_filter_offers_outcome_unknown(admin_client: Client, make_delivery: Any) -> None:
    make_delivery(subject="Lost answer", status="unknown")
    make_delivery(subject="Fine", status="delivered")

    page = listing(admin_client, status__exact="unknown")

    assert "?status__exact=unknown" in page
    assert "outcome unknown" in page
    assert "Lost answer" in page
    assert "Fine" not in page


@pytest.mark.parametrize(
    ("choice", "shown"),
    [("today", {"now"}), ("7d", {"now", "3 days"}), ("30d", {"now", "3 days", "20 days"})],
)
def test_the_created_filter_keeps_recent_rows(
    admin_client: Client, make_delivery: Any, choice: str, shown: set[str]
) -> None:
    ages = {
        "now": timedelta(0),
        "3 days": timedelta(days=3),
        "20 days": timedelta(days=20),
        "40 days": timedelta(days=40),
    }
    for label, age in ages.items():
        row = make_delivery(subject=f"Made {label} ago")
        Delivery.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)

    page = listing(admin_client, created=choice)

    assert {label for label in ages if f"Made {label} ago" in page} == shown


def test_the_alias_filter_lists_the_configured_aliases(
    admin_client: Client, make_delivery: Any
) -> None:
    make_delivery(subject="Default one")

    page = listing(admin_client, alias="default")

    assert "?alias=default" in page
    assert "Default one" in page
    assert "Default one" not in listing(admin_client, alias="other")


def test_the_tag_filter_keeps_rows_carrying_the_tag(
    admin_client: Client, make_delivery: Any
) -> None:
    make_delivery(subject="Tagged", tags=["newsletter", "spring"])
    make_delivery(subject="Other tag", tags=["receipt"])
    make_delivery(subject="Untagged", tags=[])

    page = listing(admin_client, tag="spring")

    assert "Tagged" in page
    assert "Other tag" not in page
    assert "Untagged" not in page


def test_the_tag_filter_suggests_recent_tags_and_takes_any(
    admin_client: Client, make_delivery: Any
) -> None:
    make_delivery(tags=["newsletter"])

    page = listing(admin_client)

    assert 'name="tag"' in page
    assert "?tag=newsletter" in page


def test_the_batch_filter_keeps_one_batch(admin_client: Client, make_delivery: Any) -> None:
    make_delivery(subject="In batch", batch_id="batch_7")
    make_delivery(subject="Elsewhere", batch_id="batch_8")

    page = listing(admin_client, batch="batch_7")

    assert "In batch" in page
    assert "Elsewhere" not in page
    assert 'value="batch_7"' in page


def test_a_filter_form_keeps_the_other_filters(admin_client: Client, make_delivery: Any) -> None:
    make_delivery()

    page = listing(admin_client, status__exact="sent", batch="b")

    assert '<input type="hidden" name="status__exact" value="sent">' in page
