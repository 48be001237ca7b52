"""The HTML body's own URL: served under headers that forbid scripts, forms and remote
loads, for staff who may view the delivery. (The browser test shows a browser obeys.)"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from django_cloudmails.models import Delivery

pytestmark = pytest.mark.django_db
HOSTILE = (
    "<script>parent.document.title='owned'</script>"
    "<img src='https://tracker.example/open.gif'>"
    "<form action='https://evil.example/'><input name=q></form><p>Hello</p>"
)


def preview(client: Client, delivery: Delivery, **params: str) -> Any:
    return client.get(reverse("admin:cloudmails_delivery_preview", args=[delivery.pk]), params)


def directives(response: Any) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in policy.split(";")
        if part.strip()
    }


def test_the_body_is_served_as_stored(admin_client: Client, make_delivery: Any) -> None:
    delivery = make_delivery(payload={**make_delivery().payload, "html": HOSTILE})

    response = preview(admin_client, delivery)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response.content.decode() == HOSTILE


def test_nothing_runs_or_loads_but_inline_styles_and_data_images(
    admin_client: Client, make_delivery: Any
) -> None:
    policy = directives(preview(admin_client, make_delivery()))

    assert policy["default-src"] == "'none'"
    assert policy["img-src"] == "data:"
    assert policy["style-src"] == "'unsafe-inline'"
    assert policy["form-action"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "script-src" not in policy  # default-src 'none' covers scripts
    assert "sandbox" in policy
    assert "allow-scripts" not in policy["sandbox"]


def test_only_the_admin_may_frame_it(admin_client: Client, make_delivery: Any) -> None:
    response = preview(admin_client, make_delivery())

    assert directives(response)["frame-ancestors"] == "'self'"
    assert response["X-Frame-Options"] == "SAMEORIGIN"


def test_it_leaks_no_referrer_and_prefetches_no_dns(
    admin_client: Client, make_delivery: Any
) -> None:
    response = preview(admin_client, make_delivery())

    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-DNS-Prefetch-Control"] == "off"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_remote_images_open_only_images(admin_client: Client, make_delivery: Any) -> None:
    policy = directives(preview(admin_client, make_delivery(), remote_images="1"))

    assert policy["img-src"] == "data: https: http:"
    assert policy["default-src"] == "'none'"
    assert policy["style-src"] == "'unsafe-inline'"


def test_inline_images_are_shown_from_their_attachment(
    admin_client: Client, make_delivery: Any
) -> None:
    pixel = base64.b64encode(b"GIF89a\x01\x00\x01\x00").decode()
    payload = {
        **make_delivery().payload,
        "html": '<img src="cid:logo@shop">',
        "attachments": [
            {
                "filename": "logo.gif",
                "content_type": "image/gif",
                "content": pixel,
                "disposition": "inline",
                "content_id": "<logo@shop>",
            }
        ],
    }

    body = preview(admin_client, make_delivery(payload=payload)).content.decode()

    assert body == f'<img src="data:image/gif;base64,{pixel}">'


def test_a_purged_body_is_not_served(admin_client: Client, make_delivery: Any) -> None:
    from django.utils import timezone

    delivery = make_delivery(body_purged_at=timezone.now())

    body = preview(admin_client, delivery).content.decode()

    assert "No HTML body is stored" in body
    assert "invoice" not in body


def test_it_needs_a_login(client: Client, make_delivery: Any) -> None:
    response = preview(client, make_delivery())

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_it_needs_the_view_permission(staff_client: Any, make_delivery: Any) -> None:
    delivery = make_delivery()

    assert preview(staff_client(), delivery).status_code == 403


def test_staff_who_may_view_deliveries_see_it(staff_client: Any, make_delivery: Any) -> None:
    delivery = make_delivery()

    assert preview(staff_client("cloudmails.view_delivery"), delivery).status_code == 200
