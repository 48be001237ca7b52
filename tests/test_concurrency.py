"""Concurrent webhook requests on PostgreSQL: counters exact, duplicates once, no orphan lost.

SQLite is skipped: the suite's in-memory database is one connection, so threads could
not race on it at all.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_cloudmails import pg_ingest, recording
from django_cloudmails.models import Delivery, DeliveryEvent
from django_cloudmails.recording import apply_orphan_events

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="needs PostgreSQL row locking",
    ),
]

AUTH = "Basic " + base64.b64encode(b"hook:s3cret").decode()
T0 = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)
THREADS = 8


def open_event(number: int, message_id: str = "msg_1") -> dict[str, Any]:
    moment = T0 + timedelta(milliseconds=number)
    return {
        "event": "opened",
        "message_id": message_id,
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "recipient": "someone@example.com",
    }


def run_threads(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; each closes its connection."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def post(client: Client, body: Any, webhook_id: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": AUTH}
    if webhook_id:
        headers["webhook-id"] = webhook_id
    response = client.post(
        reverse("cloudmails:webhook"),
        json.dumps(body),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200, response.content
    return response.json()  # type: ignore[no-any-return]


def make_delivery(message_id: str | None = "msg_1") -> Delivery:
    return Delivery.objects.create(
        message_id=message_id, status="sent", to_email="someone@example.com", from_email="a@b.c"
    )


def test_concurrent_opens_are_all_counted() -> None:
    delivery = make_delivery()
    per_thread = 20

    def work(index: int) -> None:
        client = Client()
        for n in range(per_thread):
            number = index * per_thread + n
            post(client, open_event(number), f"evt_{number}")

    run_threads(work)
    delivery.refresh_from_db()
    total = THREADS * per_thread
    assert delivery.opens == total
    assert delivery.first_opened_at == T0
    assert delivery.last_opened_at == T0 + timedelta(milliseconds=total - 1)


def test_concurrent_duplicates_are_counted_once() -> None:
    delivery = make_delivery()
    results = run_threads(lambda index: post(Client(), open_event(0), "evt_same"))
    assert sum(result["new"] for result in results) == 1
    delivery.refresh_from_db()
    assert delivery.opens == 1
    assert DeliveryEvent.objects.count() == 1


def test_overlapping_lists_from_several_threads_count_each_event_once() -> None:
    delivery = make_delivery()
    events = [open_event(n) for n in range(30)]

    def work(index: int) -> int:
        rotated = events[index:] + events[:index]
        return int(post(Client(), rotated)["new"])

    assert sum(run_threads(work)) == 30
    delivery.refresh_from_db()
    assert delivery.opens == 30


@pytest.mark.parametrize("single_statement", [True, False], ids=["single-statement", "orm"])
def test_no_orphan_is_lost_while_the_row_learns_its_message_id(
    monkeypatch: pytest.MonkeyPatch, single_statement: bool
) -> None:
    delivery = make_delivery(None)
    per_thread = 10
    monkeypatch.setattr(recording, "SINGLE_STATEMENT", single_statement)
    # Widen the window between "no row has this message id" and the orphan being seen.
    if single_statement:
        insert = pg_ingest.insert

        def slow_insert(*args: Any) -> Any:
            inserted = insert(*args)
            if inserted is not None and inserted.delivery_id is None:
                time.sleep(0.005)
            return inserted

        monkeypatch.setattr(pg_ingest, "insert", slow_insert)
    else:
        match = recording._match

        def slow_match(parsed: Any) -> Any:
            found = match(parsed)
            if found is None:
                time.sleep(0.005)
            return found

        monkeypatch.setattr(recording, "_match", slow_match)

    def work(index: int) -> None:
        if index == 0:
            time.sleep(0.05)
            Delivery.objects.filter(pk=delivery.pk).update(message_id="msg_1")
            apply_orphan_events(["msg_1"])
            return
        client = Client()
        for n in range(per_thread):
            number = index * per_thread + n
            post(client, open_event(number), f"evt_{number}")

    run_threads(work)
    delivery.refresh_from_db()
    assert not DeliveryEvent.objects.filter(delivery__isnull=True).exists()
    assert delivery.opens == (THREADS - 1) * per_thread
