"""A delivery's page: the message as sent, its timeline, its facts; read-only."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from django_cloudmails.models import Delivery, DeliveryEvent

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 5, 19, 12, 0, 5, tzinfo=timezone.utc)


def page(client: Client, delivery: Delivery, **params: str) -> str:
    response = client.get(reverse("admin:cloudmails_delivery_change", args=[delivery.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


def add_event(delivery: Delivery, number: int, event: str = "clicked", **payload: Any) -> None:
    DeliveryEvent.objects.create(
        delivery=delivery,
        dedupe_key=f"evt_{delivery.pk}_{number}",
        event=event,
        message_id=delivery.message_id or "",
        recipient=f"reader{number:02}@example.com",
        occurred_at=T0.replace(minute=number),
        payload=payload,
    )


def test_the_page_groups_its_fields(admin_client: Client, make_delivery: Any) -> None:
    html = page(admin_client, make_delivery())

    for heading in ("Message", "Status and timeline", "Engagement", "Technical"):
        assert f">{heading}</" in html


def test_the_envelope_comes_from_the_payload_with_cc_bcc_and_reply_to(
    admin_client: Client, make_delivery: Any
) -> None:
    html = page(admin_client, make_delivery())

    assert "Ann Reader &lt;ann@example.com&gt;" in html
    assert "accounts@example.com" in html
    assert "audit@shop.example" in html
    assert "Help &lt;help@shop.example&gt;" in html


def test_attachments_are_listed_by_name_type_and_size_never_their_content(
    admin_client: Client, make_delivery: Any
) -> None:
    content = base64.b64encode(b"%PDF-1.4 " + b"x" * 2039).decode()
    payload = {**make_delivery().payload}
    payload["attachments"] = [
        {"filename": "invoice.pdf", "content_type": "application/pdf", "content": content}
    ]
    delivery = make_delivery(payload=payload)

    html = page(admin_client, delivery)

    assert "invoice.pdf" in html
    assert "application/pdf" in html
    assert "2.0\xa0KB" in html  # 2,048 bytes decoded
    assert content[:40] not in html


def test_the_text_body_is_shown_and_escaped(admin_client: Client, make_delivery: Any) -> None:
    payload = {**make_delivery().payload, "text": "Total: <b>42</b> EUR"}

    html = page(admin_client, make_delivery(payload=payload))

    assert "Total: &lt;b&gt;42&lt;/b&gt; EUR" in html


def test_the_html_body_is_only_in_a_sandboxed_iframe(
    admin_client: Client, make_delivery: Any
) -> None:
    payload = {**make_delivery().payload, "html": "<script>alert('x')</script><p>Hi</p>"}
    delivery = make_delivery(payload=payload)

    html = page(admin_client, delivery)

    preview = reverse("admin:cloudmails_delivery_preview", args=[delivery.pk])
    assert f'<iframe class="cm-preview" sandbox="" src="{preview}"' in html
    assert "<script>alert" not in html
    assert "allow-scripts" not in html


def test_the_page_lets_frames_show_only_this_site(admin_client: Client, make_delivery: Any) -> None:
    response = admin_client.get(
        reverse("admin:cloudmails_delivery_change", args=[make_delivery().pk])
    )

    assert response["Content-Security-Policy"] == "frame-src 'self'"


def test_the_remote_images_toggle_reaches_the_iframe(
    admin_client: Client, make_delivery: Any
) -> None:
    delivery = make_delivery()

    blocked = page(admin_client, delivery)
    loaded = page(admin_client, delivery, remote_images="1")

    assert "?remote_images=1" in blocked
    assert "/preview/?remote_images=1" not in blocked
    assert "/preview/?remote_images=1" in loaded


def test_a_purged_body_says_so(admin_client: Client, make_delivery: Any) -> None:
    delivery = make_delivery(body_purged_at=T0, payload={"to": "ann@example.com"})

    html = page(admin_client, delivery)

    assert "Purged on" in html
    assert "<iframe" not in html


def test_the_timeline_shows_the_row_and_its_events_in_local_time(
    admin_client: Client, make_delivery: Any, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    delivery = make_delivery(sent_at=T0)
    add_event(delivery, 7, "bounced", bounce_reason="550 user unknown")

    html = page(admin_client, delivery)

    assert "2026-05-19 14:00:05" in html  # sent, 12:00:05 UTC in Paris
    assert "2026-05-19 14:07:05" in html  # the event
    assert "12:00:05" not in html
    assert "Times in Europe/Paris" in html
    assert "550 user unknown" in html


def test_the_page_shows_only_the_newest_events_and_links_to_all(
    admin_client: Client, make_delivery: Any
) -> None:
    delivery = make_delivery()
    for number in range(30):
        add_event(delivery, number)

    html = page(admin_client, delivery)

    assert html.count("event: clicked") == 20
    assert "The 20 newest of 30 events are shown." in html
    link = f"?delivery__id__exact={delivery.pk}"
    assert link in html


def test_the_error_and_attempts_are_shown(admin_client: Client, make_delivery: Any) -> None:
    delivery = make_delivery(
        status="failed", error_code="403", last_error="Sender not verified", attempts=3
    )

    html = page(admin_client, delivery)

    assert '<p class="cm-error"><strong>403</strong> Sender not verified</p>' in html
    assert '<div class="readonly">3</div>' in html


def test_the_raw_payload_is_folded_and_pretty_without_base64(
    admin_client: Client, make_delivery: Any
) -> None:
    delivery = make_delivery()

    html = page(admin_client, delivery)

    assert '<details class="cm-raw">' in html
    assert "\n      &quot;filename&quot;: &quot;invoice.pdf&quot;\n    }" in html
    assert delivery.payload["attachments"][0]["content"] not in html
    assert "of base64, not shown" in html


def test_a_resend_and_its_original_link_to_each_other(
    admin_client: Client, make_delivery: Any
) -> None:
    original = make_delivery()
    resend = make_delivery(resent_from=original)

    assert reverse("admin:cloudmails_delivery_change", args=[resend.pk]) in page(
        admin_client, original
    )
    assert reverse("admin:cloudmails_delivery_change", args=[original.pk]) in page(
        admin_client, resend
    )


def test_the_batch_id_links_to_its_batch(admin_client: Client, make_delivery: Any) -> None:
    delivery = make_delivery(batch_id="batch_42")

    assert "?batch=batch_42" in page(admin_client, delivery)


def test_the_page_is_read_only(admin_client: Client, make_delivery: Any) -> None:
    delivery = make_delivery(status="delivered")
    url = reverse("admin:cloudmails_delivery_change", args=[delivery.pk])

    assert 'name="_save"' not in page(admin_client, delivery)
    admin_client.post(url, {"status": "bounced"})
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_a_malformed_id_is_not_found(admin_client: Client) -> None:
    url = reverse("admin:cloudmails_delivery_preview", args=["not-a-uuid"])

    assert admin_client.get(url).status_code == 404


def test_parts_the_row_leaves_empty_are_left_out(admin_client: Client, make_delivery: Any) -> None:
    payload = {k: v for k, v in make_delivery().payload.items() if k != "attachments"}

    html = page(admin_client, make_delivery(status="delivered", payload=payload))

    for part in ("bounce_reason", "problem", "failed_at_display", "attachment_list"):
        assert f"field-{part}" not in html
    assert "field-timeline" in html


def test_a_bounce_shows_its_type_reason_and_time(admin_client: Client, make_delivery: Any) -> None:
    html = page(
        admin_client,
        make_delivery(status="bounced", bounce_type="hard", bounce_reason="550", bounced_at=T0),
    )

    for part in ("bounce_type", "bounce_reason", "bounced_at_display"):
        assert f"field-{part}" in html
