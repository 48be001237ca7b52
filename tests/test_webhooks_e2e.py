"""End to end over real HTTP: the sandbox's webhook sender posting to a live server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from django_cloudmails import lifecycle
from django_cloudmails.lifecycle import Tracking
from django_cloudmails.models import Delivery, DeliveryEvent, Suppression
from tests.factories import webhook_url

pytestmark = pytest.mark.django_db(transaction=True)

SIM = "simulator.cloudmails.test"
FATES = ("delivered", "bounce", "softbounce", "complaint", "open", "click", "unsubscribe")


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers["Authorization"] = "Bearer test-key"
        yield http


def send_all(
    sandbox: Any, session: requests.Session, fates: tuple[str, ...] = FATES
) -> list[Delivery]:
    """One Delivery per simulator fate, sent through the sandbox API, as the outbox does."""
    sandbox.pause_processing()
    deliveries = []
    for fate in fates:
        delivery = Delivery.objects.create(
            status="queued", to_email=f"{fate}@{SIM}", from_email="shop@shop.example"
        )
        response = session.post(
            f"{sandbox.url}/send",
            json={
                "to": f"{fate}@{SIM}",
                "from": "shop@shop.example",
                "subject": "Hello",
                "html": "<p>Hello</p>",
                "custom_args": {"cloudmails_delivery_id": str(delivery.pk), "fate": fate},
            },
            timeout=5,
        )
        response.raise_for_status()
        Delivery.objects.filter(pk=delivery.pk).update(
            message_id=response.json()["message_id"], status="sent"
        )
        deliveries.append(delivery)
    for delivery in deliveries:
        delivery.refresh_from_db()
        if delivery.to_email.startswith(("open@", "click@")):
            sandbox.emit(delivery.message_id, "opened")
    sandbox.resume_processing()
    return deliveries


def moment(event: dict[str, Any]) -> datetime:
    """The sandbox's timestamp (``...T14:30:00.123456Z``) as an aware datetime."""
    return datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc
    )


def expected_tracking(sandbox: Any, message_id: str) -> Tracking:
    """The row the sandbox's events should give. A ``bounced`` event in the reference's
    shape has neither type nor reason: it is a hard bounce (the reference's ``bounced``
    is "rejected by recipient server")."""
    events = sorted(sandbox.message(message_id).events, key=moment)
    return lifecycle.replay(
        (
            lifecycle.effect_of(
                e["event"],
                bounce_reason=e.get("bounce_reason", ""),
                bounce_type=e.get("bounce_type", "hard"),
            ),
            moment(e),
        )
        for e in events
    )


def tracking_of(delivery: Delivery) -> Tracking:
    delivery.refresh_from_db()
    return Tracking(**{f.name: getattr(delivery, f.name) for f in fields(Tracking)})


def assert_rows_match_the_sandbox(sandbox: Any, deliveries: list[Delivery]) -> None:
    sent = sum(len(sandbox.message(d.message_id).events) for d in deliveries)
    assert DeliveryEvent.objects.count() == sent
    assert not DeliveryEvent.objects.filter(delivery__isnull=True).exists()
    for delivery in deliveries:
        assert tracking_of(delivery) == expected_tracking(sandbox, delivery.message_id), (
            delivery.to_email
        )


def test_ping_from_the_sandbox_gets_200(sandbox: Any, webhook_server: Any) -> None:
    sandbox.configure_webhook(webhook_url(webhook_server))
    sandbox.wait_idle()
    assert [status for _, status, _ in sandbox.webhook_attempts] == [200]
    assert not DeliveryEvent.objects.exists()


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"duplicate_webhooks": True, "shuffle_webhooks": True},
        {"duplicate_webhooks": True, "shuffle_webhooks": True, "webhook_batch": 3},
    ],
    ids=["plain", "duplicated-shuffled", "duplicated-shuffled-batched"],
)
def test_every_event_type_from_the_sandbox_lands_in_the_rows(
    sandbox: Any, webhook_server: Any, session: requests.Session, switches: dict[str, Any]
) -> None:
    sandbox.configure_webhook(webhook_url(webhook_server))
    sandbox.wait_idle()
    sandbox.faults.update(switches)
    deliveries = send_all(sandbox, session)
    sandbox.wait_idle(timeout=30)
    assert {status for _, status, _ in sandbox.webhook_attempts} == {200}
    assert_rows_match_the_sandbox(sandbox, deliveries)
    statuses = {d.to_email.partition("@")[0]: d.status for d in deliveries}
    assert statuses == {
        "delivered": "delivered",
        "bounce": "bounced",
        "softbounce": "bounced",
        "complaint": "delivered",
        "open": "delivered",
        "click": "delivered",
        "unsubscribe": "delivered",
    }
    # Without bounce_type (the reference's shape) the soft bounce's final bounce is hard.
    assert dict(Suppression.objects.values_list("address", "reason")) == {
        f"bounce@{SIM}": "hard_bounce",
        f"softbounce@{SIM}": "hard_bounce",
        f"complaint@{SIM}": "complained",
        f"unsubscribe@{SIM}": "unsubscribed",
    }


def test_rich_events_from_the_sandbox_keep_the_bounce_type_and_reason(
    sandbox: Any, webhook_server: Any, session: requests.Session
) -> None:
    sandbox.rich_events = True
    sandbox.configure_webhook(webhook_url(webhook_server))
    deliveries = send_all(sandbox, session, fates=("bounce", "softbounce", "click"))
    sandbox.wait_idle(timeout=30)
    assert {status for _, status, _ in sandbox.webhook_attempts} == {200}
    assert_rows_match_the_sandbox(sandbox, deliveries)
    facts = {d.to_email.partition("@")[0]: (d.bounce_type, d.bounce_reason) for d in deliveries}
    assert facts == {
        "bounce": ("hard", "550 5.1.1 user unknown"),
        "softbounce": ("soft", "452 4.2.2 mailbox full"),
        "click": ("", ""),
    }
    assert DeliveryEvent.objects.get(event="clicked").payload["url"] == "https://example.com/"
    assert dict(Suppression.objects.values_list("address", "reason")) == {
        f"bounce@{SIM}": "hard_bounce"
    }


def test_rows_agree_with_the_api_status_on_delivery_time(
    sandbox: Any, webhook_server: Any, session: requests.Session
) -> None:
    sandbox.configure_webhook(webhook_url(webhook_server))
    deliveries = send_all(sandbox, session, fates=("delivered", "open", "click"))
    sandbox.wait_idle(timeout=30)
    for delivery in deliveries:
        delivery.refresh_from_db()
        status = session.get(f"{sandbox.url}/emails/{delivery.message_id}", timeout=5).json()
        assert (delivery.status, delivery.delivered_at) == (
            status["status"],
            moment({"timestamp": status["delivered_at"]}),
        )


def test_events_the_sandbox_drops_never_reach_the_rows(
    sandbox: Any, webhook_server: Any, session: requests.Session
) -> None:
    sandbox.configure_webhook(webhook_url(webhook_server))
    sandbox.wait_idle()
    sandbox.faults.webhook_drop_rate = 1.0
    (delivery,) = send_all(sandbox, session, fates=("delivered",))
    sandbox.wait_idle(timeout=30)
    delivery.refresh_from_db()
    assert [e["event"] for e in sandbox.webhook_dropped] == ["delivered"]
    assert (delivery.status, DeliveryEvent.objects.exists()) == ("sent", False)


def test_signed_webhooks_from_the_sandbox_verify(
    sandbox: Any, webhook_server: Any, session: requests.Session, settings: Any
) -> None:
    settings.CLOUDMAILS = {
        **settings.CLOUDMAILS,
        "WEBHOOK_SIGNING_SECRET": sandbox.webhook_signing_secret,
    }
    sandbox.configure_webhook(webhook_url(webhook_server))
    deliveries = send_all(sandbox, session)
    sandbox.wait_idle(timeout=30)
    assert {status for _, status, _ in sandbox.webhook_attempts} == {200}
    assert_rows_match_the_sandbox(sandbox, deliveries)


def test_wrong_credentials_in_the_url_are_refused_and_record_nothing(
    sandbox: Any, webhook_server: Any, session: requests.Session
) -> None:
    sandbox.configure_webhook(webhook_url(webhook_server, "hook:wrong"))
    send_all(sandbox, session, fates=("bounce",))
    sandbox.wait_idle(timeout=30)
    assert {status for _, status, _ in sandbox.webhook_attempts} == {401}
    assert sandbox.webhook_failures
    assert not DeliveryEvent.objects.exists()
