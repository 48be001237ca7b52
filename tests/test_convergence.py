"""Every Delivery converges to the truth: random fates, unreliable webhooks, one poll run.

Property (hypothesis): whatever the fates and however the webhooks arrive (a share
dropped for good, the rest duplicated, reordered, batched), after the sandbox is done
and one poll run with the engagement window on, every row equals what the sandbox's
``GET /emails/{id}`` reports (status, delivered_at, opens, clicks), every bounced
address is suppressed, and ``email_bounced`` fired once per bounced Delivery.

Drops happen on the receiving end (:class:`tests.conftest.WebhookDropper` answers 503 to
the chosen webhook ids every time, so the sender gives up), which works whatever the
sandbox's own switches are.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.core.mail import EmailMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_cloudmails import signals
from django_cloudmails.backends import EmailBackend
from django_cloudmails.client import CloudMailsClient
from django_cloudmails.models import Delivery, Suppression
from django_cloudmails.polling import poll
from tests.conftest import API_KEY
from tests.factories import webhook_url

pytestmark = pytest.mark.django_db(transaction=True)

SIM = "simulator.cloudmails.test"
FATES = (
    "delivered",
    "bounce",
    "softbounce",
    "deferred",
    "complaint",
    "open",
    "click",
    "unsubscribe",
    "reject",
)
EXAMPLE = itertools.count()


@pytest.fixture
def world(sandbox: Any, webhook_server: Any, cloudmails_settings: dict[str, Any]) -> dict[str, Any]:
    """The sandbox posting webhooks to the live server; bounce signals recorded."""
    cloudmails_settings.update(
        POLL_ENGAGEMENT_FOR=3600,
        SUPPRESS_ON=["hard_bounce", "soft_bounce"],
    )
    sandbox.configure_webhook(webhook_url(webhook_server))
    sandbox.wait_idle()  # the test ping
    bounced: list[Any] = []

    def on_bounce(sender: Any, delivery: Any, event: Any, **kwargs: Any) -> None:
        bounced.append(delivery.pk)

    signals.email_bounced.connect(on_bounce, weak=False)
    yield {"sandbox": sandbox, "dropper": webhook_server.dropper, "bounced": bounced}
    signals.email_bounced.disconnect(on_bounce)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fates=st.lists(st.sampled_from(FATES), min_size=1, max_size=8),
    faults=st.fixed_dictionaries(
        {
            "duplicate_webhooks": st.booleans(),
            "shuffle_webhooks": st.booleans(),
            "webhook_batch": st.sampled_from([1, 3]),
        }
    ),
    drop_rate=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_every_row_converges_to_the_apis_answer(
    world: dict[str, Any], fates: list[str], faults: dict[str, Any], drop_rate: float, seed: int
) -> None:
    sandbox, dropper, bounced = world["sandbox"], world["dropper"], world["bounced"]
    number = next(EXAMPLE)
    sandbox.faults.update(faults)
    dropper.rate, dropper.seed = drop_rate, seed
    bounced.clear()
    emails = [
        EmailMessage("Hi", "Body", None, [f"{fate}+x{number}n{i}@{SIM}"])
        for i, fate in enumerate(fates)
    ]

    sandbox.pause_processing()  # every row is stored before any event arrives
    EmailBackend().send_messages(emails)
    sandbox.resume_processing()
    sandbox.wait_idle(30)
    poll(ignore_schedule=True)

    rows = [Delivery.objects.get(pk=e.cloudmails_deliveries[0].pk) for e in emails]  # type: ignore[attr-defined]
    with CloudMailsClient(API_KEY, api_url=sandbox.url) as client:
        for row in rows:
            truth = client.get_email(row.message_id)
            assert (row.status, row.delivered_at, row.opens, row.clicks) == (
                truth.status,
                truth.delivered_at,
                truth.opens,
                truth.clicks,
            ), row.to_email
    bounced_rows = [row for row in rows if row.status == "bounced"]
    assert sorted(bounced) == sorted(row.pk for row in bounced_rows)
    suppressed = set(Suppression.objects.values_list("address", flat=True))
    assert {row.to_email for row in bounced_rows} <= suppressed
