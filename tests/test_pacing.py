"""The shared pace: RATE_LIMIT across every worker, and 429s that hold them all."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.mail import EmailMessage

from django_cloudmails import pacing
from django_cloudmails.backends import CeleryEmailBackend
from django_cloudmails.conf import CloudMailsSettings
from django_cloudmails.exceptions import CloudMailsRateLimited
from django_cloudmails.models import Delivery
from django_cloudmails.pacing import Pace, PacedRetry

SEND_PATHS = ("/v1/send", "/v1/send/batch")


def messages_per_request(sandbox: Any) -> list[tuple[float, int]]:
    """``(received_at, messages)`` of every send request the sandbox saw."""
    return sorted(
        (r.received_at, len(r.json["messages"]) if r.path.endswith("batch") else 1)
        for r in sandbox.requests
        if r.method == "POST" and r.path in SEND_PATHS
    )


def busiest_second(arrivals: list[tuple[float, int]]) -> int:
    """The most messages in any one-second window [t, t + 1)."""
    busiest, total, start = 0, 0, 0
    for at, count in arrivals:
        total += count
        while arrivals[start][0] <= at - 1.0:
            total -= arrivals[start][1]
            start += 1
        busiest = max(busiest, total)
    return busiest


@pytest.mark.parametrize(
    ("rate", "batch_size", "size"),
    [(None, 1000, 1000), (200, 1000, 4), (10, 1000, 1), (100_000, 500, 500), (49.9, 1000, 1)],
)
def test_a_rate_limit_caps_the_size_of_a_request(
    rate: float | None, batch_size: int, size: int
) -> None:
    conf = CloudMailsSettings({"RATE_LIMIT": rate, "BATCH_SIZE": batch_size})

    assert pacing.request_size(conf) == size


def test_busiest_second_counts_messages_in_a_sliding_window() -> None:
    arrivals = [(0.0, 4), (0.5, 4), (0.99, 4), (1.0, 4), (1.98, 4), (2.5, 1)]

    assert busiest_second(arrivals) == 12


@pytest.mark.django_db(transaction=True)
def test_a_booking_moves_the_next_slot_by_messages_over_rate() -> None:
    pace = Pace(1.0)

    pace.acquire(5)

    assert 4.0 < pace._wait() <= 5.0


class Naps:
    """A sleep that records how long it slept."""

    def __init__(self) -> None:
        self.taken: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)
        time.sleep(seconds)


@pytest.mark.django_db(transaction=True)
def test_a_booking_waits_for_the_slot_booked_before_it() -> None:
    naps = Naps()
    Pace(10.0).acquire(15)  # 1.5 s booked by another worker

    Pace(10.0, sleep=naps).acquire(1)

    assert sum(naps.taken) > 1.0


@pytest.mark.django_db(transaction=True)
def test_a_free_slot_is_taken_without_waiting() -> None:
    naps = Naps()

    Pace(10.0, sleep=naps).acquire(5)

    assert naps.taken == []


@pytest.mark.django_db(transaction=True)
def test_a_shorter_hold_never_shortens_a_longer_one() -> None:
    Pace(None).hold(30)
    Pace(None).hold(1)

    assert 25 < Pace(None)._wait() <= 30


@pytest.mark.django_db(transaction=True)
def test_without_a_rate_limit_a_sender_still_waits_out_a_hold() -> None:
    naps = Naps()
    Pace(None).hold(2)

    Pace(None, sleep=naps).acquire(1000)

    assert sum(naps.taken) > 1.0


@pytest.mark.django_db(transaction=True)
def test_a_429_holds_the_pace_for_its_retry_after(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.throttle_next(1, retry_after=20)
    conf = CloudMailsSettings({**cloudmails_settings, "RETRY_MAX_BACKOFF": 30})
    retry = PacedRetry(attempts=1, pace=Pace(None), max_backoff=30)

    with conf.client(retry) as client, pytest.raises(CloudMailsRateLimited):
        client.send({"to": "a@example.com", "from": "x@shop.example", "subject": "s", "html": "h"})

    assert 15 < Pace(None)._wait() <= 20


def send_in_parallel(calls: int, per_call: int) -> None:
    """``calls`` send_messages calls (one task each) of ``per_call`` messages."""
    for call in range(calls):
        CeleryEmailBackend().send_messages(
            [
                EmailMessage("Hi", "Body", None, [f"c{call}-{i}@example.com"])
                for i in range(per_call)
            ]
        )


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_three_workers_together_keep_to_rate_limit(
    sandbox: Any, cloudmails_settings: dict[str, Any], celery_workers: Any
) -> None:
    cloudmails_settings["RATE_LIMIT"] = 200
    celery_workers.start(3)

    send_in_parallel(6, 100)
    celery_workers.finished(6)

    assert Delivery.objects.filter(status="sent").count() == 600
    finished_by = {e["pid"] for e in celery_workers.events.history if e["event"] == "finished"}
    assert len(finished_by) == 3
    assert busiest_second(messages_per_request(sandbox)) <= 210


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_429_to_one_worker_holds_every_worker_for_its_retry_after(
    sandbox: Any, cloudmails_settings: dict[str, Any], celery_workers: Any
) -> None:
    cloudmails_settings.update(RATE_LIMIT=100, RETRY_MAX_BACKOFF=10, RETRY_ATTEMPTS=3)
    celery_workers.start(2)

    send_in_parallel(2, 60)  # 30 requests of 2 messages each, in two tasks
    celery_workers.events.wait(lambda event: event["event"] == "started", 2)  # both sending
    sandbox.faults.throttle_next(1, retry_after=2)
    celery_workers.settle()  # the throttled task retries its rows after the Retry-After

    (throttled,) = [r.received_at for r in sandbox.requests if r.status == 429]
    after = [at for at, _ in messages_per_request(sandbox) if at > throttled]
    # Requests booked before the hold was stored may still land right after the 429.
    assert not [at for at in after if throttled + 0.3 < at < throttled + 1.9]
    assert Delivery.objects.filter(status="sent").count() == 120
