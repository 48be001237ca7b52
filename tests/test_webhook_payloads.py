"""What each event the API reference documents, and each tolerated variant of it, does
to the record: posted to the webhook view, then the answer, the Delivery row, the
suppression list and the signals."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from django_cloudmails import signing
from django_cloudmails.models import Delivery, DeliveryEvent, Suppression
from tests.factories import basic_auth, without

pytestmark = pytest.mark.django_db

AUTH = basic_auth("hook:s3cret")
T = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)
MESSAGE_ID = "msg_abc123xyz"
RECIPIENT = "recipient@example.com"


def reference(name: str) -> dict[str, Any]:
    """The API reference's example webhook payload, exactly, with ``event`` set."""
    return {
        "event": name,
        "message_id": "msg_abc123xyz",
        "timestamp": "2026-05-19T14:30:00Z",
        "recipient": "recipient@example.com",
        "custom_args": {"user_id": "12345"},
    }


@pytest.fixture
def delivery() -> Delivery:
    return Delivery.objects.create(
        message_id=MESSAGE_ID,
        status="sent",
        to_email=RECIPIENT,
        from_email="shop@shop.example",
        subject="Hello",
    )


@pytest.fixture
def hook(client: Client, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST a body to the webhook view (signals run as on commit); returns the response."""

    def post(body: Any, *, auth: str | None = AUTH, **headers: str) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if auth is not None:
            headers["Authorization"] = auth
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                reverse("cloudmails:webhook"),
                data,
                content_type="application/json",
                headers=headers,
            )

    return post


def row(delivery: Delivery) -> Delivery:
    delivery.refresh_from_db()
    return delivery


def suppressions() -> dict[str, str]:
    return dict(Suppression.objects.values_list("address", "reason"))


def signal_names(sent: list[tuple[str, Any, Any]]) -> list[str]:
    return [name for name, _, _ in sent]


OK_ONE = {"received": 1, "new": 1, "invalid": []}

# The six documented events in the reference's exact shape.

DOCUMENTED: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "delivered": ("delivered", {"delivered_at": T}, None),
    "bounced": (
        "bounced",
        {"bounced_at": T, "bounce_type": "hard", "bounce_reason": ""},
        "hard_bounce",
    ),
    "opened": ("delivered", {"opens": 1, "first_opened_at": T, "last_opened_at": T}, None),
    "clicked": ("delivered", {"clicks": 1, "first_clicked_at": T, "last_clicked_at": T}, None),
    "unsubscribed": ("delivered", {"unsubscribed_at": T}, "unsubscribed"),
    "complained": ("delivered", {"complained_at": T}, "complained"),
}


@pytest.mark.parametrize("name", DOCUMENTED)
def test_documented_event_in_the_reference_shape_updates_the_row(
    name: str, hook: Any, delivery: Delivery, signals_sent: list
) -> None:
    status, facts, suppression = DOCUMENTED[name]
    response = hook(reference(name))
    assert (response.status_code, response.json()) == (200, OK_ONE)
    updated = row(delivery)
    assert updated.status == status
    assert {field: getattr(updated, field) for field in facts} == facts
    assert suppressions() == ({RECIPIENT: suppression} if suppression else {})
    assert signal_names(signals_sent) == ["email_event", f"email_{name}"]
    assert all(call[1] == delivery and call[2].event == name for call in signals_sent)
    stored = DeliveryEvent.objects.get()
    assert (stored.delivery_id, stored.payload) == (delivery.pk, reference(name))


# Variants the reference does not show but senders produce.


def test_bounce_type_in_any_case_decides_hard_or_soft(
    hook: Any, delivery: Delivery, signals_sent: list
) -> None:
    response = hook({**reference("bounced"), "bounce_type": "SOFT"})
    assert response.json() == OK_ONE
    assert (row(delivery).status, row(delivery).bounce_type) == ("bounced", "soft")
    assert suppressions() == {}  # SUPPRESS_ON leaves soft bounces out by default
    assert signal_names(signals_sent) == ["email_event", "email_bounced"]


def test_bounce_reason_may_come_as_reason(hook: Any, delivery: Delivery) -> None:
    hook({**reference("bounced"), "reason": "550 5.1.1 user unknown"})
    assert (row(delivery).bounce_type, row(delivery).bounce_reason) == (
        "hard",
        "550 5.1.1 user unknown",
    )


def test_clicked_without_url_counts_a_click(hook: Any, delivery: Delivery) -> None:
    hook(reference("clicked"))
    hook({**reference("clicked"), "timestamp": "2026-05-19T14:31:00Z"})
    assert (row(delivery).clicks, row(delivery).last_clicked_at) == (2, T + timedelta(minutes=1))


def test_event_without_timestamp_is_dated_when_received(hook: Any, delivery: Delivery) -> None:
    before = datetime.now(timezone.utc)
    assert hook(without(reference("delivered"), "timestamp")).json() == OK_ONE
    delivered_at = row(delivery).delivered_at
    assert delivered_at is not None
    assert before <= delivered_at <= datetime.now(timezone.utc)


def test_unreadable_timestamp_is_dated_when_received_not_refused(
    hook: Any, delivery: Delivery
) -> None:
    before = datetime.now(timezone.utc)
    assert hook({**reference("delivered"), "timestamp": "sometime"}).status_code == 200
    assert before <= DeliveryEvent.objects.get().occurred_at <= datetime.now(timezone.utc)


@pytest.mark.parametrize(
    "stamp",
    [
        int(T.timestamp()),
        int(T.timestamp()) * 1000,
        str(int(T.timestamp())),
        "2026-05-19T16:30:00+02:00",
    ],
    ids=["epoch seconds", "epoch milliseconds", "epoch digits", "offset"],
)
def test_timestamp_in_other_forms_dates_the_row(
    stamp: object, hook: Any, delivery: Delivery
) -> None:
    hook({**reference("delivered"), "timestamp": stamp})
    assert row(delivery).delivered_at == T


def test_event_without_recipient_updates_the_row_but_suppresses_nobody(
    hook: Any, delivery: Delivery, signals_sent: list
) -> None:
    assert hook(without(reference("complained"), "recipient")).json() == OK_ONE
    assert (row(delivery).status, row(delivery).complained_at) == ("delivered", T)
    assert suppressions() == {}
    assert DeliveryEvent.objects.get().recipient == ""
    assert signal_names(signals_sent) == ["email_event", "email_complained"]


def test_event_with_only_event_and_message_id_is_recorded(hook: Any, delivery: Delivery) -> None:
    assert hook({"event": "opened", "message_id": MESSAGE_ID}).json() == OK_ONE
    assert row(delivery).opens == 1


def test_event_type_in_another_case_is_recorded_as_the_known_type(
    hook: Any, delivery: Delivery, signals_sent: list
) -> None:
    hook(reference("Delivered"))
    assert (row(delivery).status, DeliveryEvent.objects.get().event) == ("delivered", "delivered")
    assert signal_names(signals_sent) == ["email_event", "email_delivered"]


def test_unknown_fields_are_kept_in_the_stored_payload(hook: Any, delivery: Delivery) -> None:
    body = {**reference("opened"), "ip": "192.0.2.1", "geo": {"country": "NL"}}
    hook(body)
    assert DeliveryEvent.objects.get().payload == body


def test_unknown_event_type_is_stored_and_signalled_and_changes_nothing_else(
    hook: Any, delivery: Delivery, signals_sent: list
) -> None:
    before = Delivery.objects.values().get(pk=delivery.pk)
    response = hook(reference("dropped"))
    assert (response.status_code, response.json()) == (200, OK_ONE)
    stored = DeliveryEvent.objects.get()
    assert (stored.event, stored.delivery_id, stored.occurred_at) == ("dropped", delivery.pk, T)
    assert Delivery.objects.values().get(pk=delivery.pk) == before
    assert suppressions() == {}
    assert signal_names(signals_sent) == ["email_event"]
    assert signals_sent[0][2].event == "dropped"


def test_unknown_event_type_is_deduplicated_like_any_other(hook: Any, delivery: Delivery) -> None:
    hook(reference("dropped"), **{"webhook-id": "evt_drop"})
    response = hook(reference("dropped"), **{"webhook-id": "evt_drop"})
    assert response.json() == {"received": 1, "new": 0, "invalid": []}
    assert DeliveryEvent.objects.count() == 1


@pytest.mark.parametrize(("name", "status"), [("deferred", "deferred"), ("failed", "failed")])
def test_deferred_and_failed_events_move_the_row_like_the_api_statuses(
    name: str, status: str, hook: Any, delivery: Delivery
) -> None:
    hook(reference(name))
    assert row(delivery).status == status


def test_event_for_a_row_without_message_id_matches_by_delivery_id(
    hook: Any, delivery: Delivery
) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(message_id=None)
    body = {**reference("delivered"), "custom_args": {"cloudmails_delivery_id": str(delivery.pk)}}
    hook(body)
    assert (row(delivery).status, row(delivery).message_id) == ("delivered", MESSAGE_ID)


def test_strings_the_database_cannot_store_are_replaced_and_the_event_recorded(
    hook: Any, delivery: Delivery
) -> None:
    body = json.dumps({**reference("bounced"), "bounce_reason": "550\x00 \ud800"}).encode()
    assert hook(body).json() == OK_ONE
    assert row(delivery).bounce_reason == "550\ufffd \ufffd"
    assert DeliveryEvent.objects.get().payload["bounce_reason"] == "550\ufffd \ufffd"


def test_body_nested_too_deep_is_400_and_records_nothing(hook: Any, delivery: Delivery) -> None:
    response = hook(b"[" * 5000 + b"]" * 5000)
    assert response.status_code == 400
    assert "nested more than 64" in response.json()["error"]
    assert not DeliveryEvent.objects.exists()


# Lists mixing every kind of item.


def test_mixed_list_stores_every_readable_event_and_names_the_others(
    hook: Any, delivery: Delivery, signals_sent: list
) -> None:
    body = [
        reference("delivered"),
        {"event": "opened"},
        reference("dropped"),
        {"event": "ping"},
        "not an event",
        without(reference("bounced"), "timestamp", "custom_args"),
        {**reference("clicked"), "message_id": ""},
    ]
    response = hook(body)
    assert (response.status_code, response.json()) == (
        200,
        {
            "received": 3,
            "new": 3,
            "invalid": [
                {"index": 1, "error": "missing 'message_id'."},
                {"index": 4, "error": "an event must be a JSON object."},
                {"index": 6, "error": "'message_id' must not be empty."},
            ],
        },
    )
    assert sorted(DeliveryEvent.objects.values_list("event", flat=True)) == [
        "bounced",
        "delivered",
        "dropped",
    ]
    assert (row(delivery).status, row(delivery).delivered_at) == ("bounced", T)
    assert suppressions() == {RECIPIENT: "hard_bounce"}
    assert sorted(signal_names(signals_sent)) == [
        "email_bounced",
        "email_delivered",
        "email_event",
        "email_event",
        "email_event",
    ]


def test_list_redelivered_counts_nothing_new(hook: Any, delivery: Delivery) -> None:
    body = [reference("delivered"), reference("opened"), {"event": "opened"}]
    hook(body, **{"webhook-id": "evt_list_1"})
    response = hook(body, **{"webhook-id": "evt_list_2"})
    assert response.json()["new"] == 0
    assert row(delivery).opens == 1


def test_empty_list_is_200_with_nothing_received(hook: Any) -> None:
    assert hook([]).json() == {"received": 0, "new": 0, "invalid": []}


# Test pings.

PINGS = {
    "event ping": {"event": "ping"},
    "event test": {"event": "test"},
    "type ping": {"type": "ping"},
    "test without message id": {"event": "Test", "timestamp": "2026-05-19T14:30:00Z"},
    "ping with a message id": {"event": "ping", "message_id": MESSAGE_ID},
    "verification without message id": {"type": "webhook.verification", "challenge": "x"},
    "empty object": {},
    "list of pings": [{"event": "ping"}],
}


@pytest.mark.parametrize("body", PINGS.values(), ids=PINGS.keys())
def test_ping_is_200_and_changes_nothing(
    body: Any, hook: Any, delivery: Delivery, signals_sent: list
) -> None:
    before = Delivery.objects.values().get(pk=delivery.pk)
    response = hook(body)
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert not DeliveryEvent.objects.exists()
    assert Delivery.objects.values().get(pk=delivery.pk) == before
    assert signals_sent == []


# Signatures from the reference implementations, under both header names.


@pytest.fixture
def signing_secret(settings: Any) -> str:
    secret = signing.generate_secret()
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "WEBHOOK_SIGNING_SECRET": secret}
    return secret


def test_body_signed_by_the_standardwebhooks_package_is_recorded(
    hook: Any, delivery: Delivery, signing_secret: str
) -> None:
    from standardwebhooks import Webhook

    body = json.dumps(reference("delivered")).encode()
    stamp = datetime.now(timezone.utc)
    headers = {
        "webhook-id": "msg_std_1",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(signing_secret).sign("msg_std_1", stamp, body.decode()),
    }
    assert hook(body, **headers).json() == OK_ONE
    assert DeliveryEvent.objects.get().dedupe_key == "msg_std_1"


def svix_signed(secret: str, body: bytes, msg_id: str = "msg_2LJ6cA") -> dict[str, str]:
    from svix.webhooks import Webhook as SvixWebhook

    stamp = datetime.now(timezone.utc)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(stamp.timestamp())),
        "svix-signature": SvixWebhook(secret).sign(msg_id, stamp, body.decode()),
    }


def test_body_signed_by_svix_under_svix_headers_is_recorded_and_deduplicated(
    hook: Any, delivery: Delivery, signing_secret: str
) -> None:
    body = json.dumps(reference("opened")).encode()
    assert hook(body, **svix_signed(signing_secret, body)).json() == OK_ONE
    again = hook(body, **svix_signed(signing_secret, body))
    assert again.json() == {"received": 1, "new": 0, "invalid": []}
    assert DeliveryEvent.objects.get().dedupe_key == "msg_2LJ6cA"
    assert row(delivery).opens == 1


def test_svix_signature_over_another_body_is_403(
    hook: Any, delivery: Delivery, signing_secret: str
) -> None:
    body = json.dumps(reference("opened")).encode()
    headers = svix_signed(signing_secret, json.dumps(reference("clicked")).encode())
    assert hook(body, **headers).status_code == 403
    assert not DeliveryEvent.objects.exists()


def test_unpadded_whsec_secret_verifies_bodies_signed_with_it(
    hook: Any, delivery: Delivery, settings: Any
) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"[:30]  # 30 chars: unpadded base64
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "WEBHOOK_SIGNING_SECRET": secret}
    body = json.dumps(reference("delivered")).encode()
    assert hook(body, **svix_signed(secret, body)).status_code == 200


def test_signed_body_from_our_own_signer_verifies_under_svix_names(
    hook: Any, delivery: Delivery, signing_secret: str
) -> None:
    body = json.dumps(reference("delivered")).encode()
    stamp = int(time.time())
    headers = {
        "svix-id": "evt_1",
        "svix-timestamp": str(stamp),
        "svix-signature": signing.sign(signing_secret, "evt_1", stamp, body),
    }
    assert hook(body, **headers).status_code == 200


# Empty Basic credentials.


@pytest.mark.parametrize("pair", [":", "hook:", ":pw"])
def test_empty_basic_credentials_never_authenticate(
    pair: str, hook: Any, delivery: Delivery, settings: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "WEBHOOK_SECRET": [pair, "hook:s3cret"]}
    assert hook(reference("delivered"), auth=basic_auth(pair)).status_code == 401
    assert hook(reference("delivered")).status_code == 200
