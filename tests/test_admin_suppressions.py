"""The suppression list: lift, add by hand, link to the cause, export and import CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from django_cloudmails.models import DeliveryEvent, Suppression

pytestmark = pytest.mark.django_db
LIST = "admin:cloudmails_suppression_changelist"


@pytest.fixture
def suppression() -> Suppression:
    return Suppression.objects.create(address="gone@example.com", reason="hard_bounce")


def messages_of(client: Client, response: Any) -> list[str]:
    return [str(m) for m in client.get(response["Location"]).context["messages"]]


def upload(client: Client, text: str, reason: str = "manual") -> Any:
    file = SimpleUploadedFile("list.csv", text.encode(), content_type="text/csv")
    return client.post(
        reverse("admin:cloudmails_suppression_import"), {"file": file, "reason": reason}
    )


def export(client: Client, **params: str) -> list[list[str]]:
    response = client.get(reverse("admin:cloudmails_suppression_export"), params)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="suppressions-')
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_list_shows_the_addresses(admin_client: Client, suppression: Suppression) -> None:
    assert b"gone@example.com" in admin_client.get(reverse(LIST)).content


def test_a_suppression_is_lifted_by_deleting_it(
    admin_client: Client, suppression: Suppression
) -> None:
    url = reverse("admin:cloudmails_suppression_delete", args=[suppression.pk])

    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Suppression.objects.exists()


def test_an_address_added_by_hand_is_normalized(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:cloudmails_suppression_add"),
        {"address": "Someone <Someone@Example.COM>", "reason": "manual"},
    )

    assert response.status_code == 302
    assert Suppression.objects.get().address == "someone@example.com"


def test_added_by_hand_is_the_default_reason(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:cloudmails_suppression_add"))

    assert response.context["adminform"].form.initial["reason"] == "manual"


def test_an_existing_address_in_another_case_is_refused(
    admin_client: Client, suppression: Suppression
) -> None:
    response: Any = admin_client.post(
        reverse("admin:cloudmails_suppression_add"),
        {"address": "GONE@example.com", "reason": "manual"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Suppression.objects.count() == 1


def test_a_suppression_links_to_its_source_event_and_delivery(
    admin_client: Client, make_delivery: Any
) -> None:
    delivery = make_delivery(status="bounced")
    event = DeliveryEvent.objects.create(
        delivery=delivery,
        dedupe_key="evt_b",
        event="bounced",
        message_id=delivery.message_id,
        occurred_at=datetime(2026, 5, 19, tzinfo=timezone.utc),
    )
    row = Suppression.objects.create(
        address="ann@example.com", reason="hard_bounce", source_event=event
    )

    listing = admin_client.get(reverse(LIST)).content.decode()
    detail = admin_client.get(
        reverse("admin:cloudmails_suppression_change", args=[row.pk])
    ).content.decode()

    for page in (listing, detail):
        assert reverse("admin:cloudmails_deliveryevent_change", args=[event.pk]) in page
        assert reverse("admin:cloudmails_delivery_change", args=[delivery.pk]) in page


def test_the_export_is_csv_of_the_filtered_list(admin_client: Client) -> None:
    Suppression.objects.create(address="gone@example.com", reason="hard_bounce")
    Suppression.objects.create(address="angry@example.com", reason="complained")

    rows = export(admin_client, reason__exact="complained")

    assert rows[0] == ["address", "reason", "created_at", "source_event", "delivery"]
    assert [row[:2] for row in rows[1:]] == [["angry@example.com", "complained"]]


def test_the_export_quotes_what_a_spreadsheet_would_run(admin_client: Client) -> None:
    Suppression.objects.create(address="=cmd@example.com", reason="manual")

    assert export(admin_client)[1][0] == "'=cmd@example.com"


def test_the_export_needs_the_view_permission(staff_client: Any) -> None:
    response = staff_client().get(reverse("admin:cloudmails_suppression_export"))

    assert response.status_code == 403


def test_an_import_adds_normalized_addresses_and_counts(
    admin_client: Client, suppression: Suppression
) -> None:
    text = (
        "address,reason\nAnn <Ann@Example.com>,complained\nGONE@example.com,\n"
        "bob@example.com,\nann@example.com,\nnot an address,\n"
    )

    response = upload(admin_client, text)

    assert response.status_code == 302
    assert dict(Suppression.objects.values_list("address", "reason")) == {
        "gone@example.com": "hard_bounce",
        "ann@example.com": "complained",
        "bob@example.com": "manual",
    }
    messages = messages_of(admin_client, response)
    assert "Imported 2 addresses; 1 were on the list already, 1 repeated in the file." in messages
    assert "1 lines had no valid address and were skipped: line 6 (not an address)." in messages


def test_an_import_without_a_header_reads_the_first_column(admin_client: Client) -> None:
    upload(admin_client, "ann@example.com,some note\nbob@example.com\n", reason="unsubscribed")

    assert set(Suppression.objects.values_list("address", "reason")) == {
        ("ann@example.com", "unsubscribed"),
        ("bob@example.com", "unsubscribed"),
    }


def test_an_export_imports_back_unchanged(admin_client: Client) -> None:
    Suppression.objects.create(address="=cmd@example.com", reason="complained")
    Suppression.objects.create(address="ann@example.com", reason="hard_bounce")
    body = io.StringIO()
    csv.writer(body).writerows(export(admin_client))
    Suppression.objects.all().delete()

    upload(admin_client, body.getvalue())

    assert set(Suppression.objects.values_list("address", "reason")) == {
        ("=cmd@example.com", "complained"),
        ("ann@example.com", "hard_bounce"),
    }


def test_the_import_needs_the_add_permission(staff_client: Any) -> None:
    client = staff_client("cloudmails.view_suppression")

    assert client.get(reverse("admin:cloudmails_suppression_import")).status_code == 403
    assert upload(client, "ann@example.com\n").status_code == 403
    assert not Suppression.objects.exists()


def test_the_list_links_to_export_and_import(admin_client: Client) -> None:
    page = admin_client.get(reverse(LIST), {"reason__exact": "manual"}).content.decode()

    assert reverse("admin:cloudmails_suppression_export") + "?reason__exact=manual" in page
    assert reverse("admin:cloudmails_suppression_import") in page
