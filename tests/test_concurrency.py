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
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from django_cloudmails import pg_ingest, recording
from django_cloudmails.models import Delivery, DeliveryEvent
from django_cloudmails.recording import apply_orphan_events
from django_cloudmails.webhooks import parse_event
from tests.threads import run_threads

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

    run_threads(work, THREADS)
    delivery.refresh_from_db()
    total = THREADS * per_thread
    assert delivery.opens == total
    assert delivery.first_opened_at == T0
    assert delivery.last_opened_at == T0 + timedelta(milliseconds=total - 1)


def test_concurrent_duplicates_are_counted_once() -> None:
    delivery = make_delivery()
    results = run_threads(lambda index: post(Client(), open_event(0), "evt_same"), THREADS)
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

    assert sum(run_threads(work, THREADS)) == 30
    delivery.refresh_from_db()
    assert delivery.opens == 30


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def waits_for_lock(pid: int | None, locktype: str | None = None) -> bool:
    """Whether the backend ``pid`` is blocked on a lock (of ``locktype``) right now."""
    if pid is None:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted "
            "AND (%s::text IS NULL OR locktype = %s))",
            [pid, locktype, locktype],
        )
        return bool(cursor.fetchone()[0])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds. The order of the threads depends only on such
    conditions (and events), never on how long anything takes."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


TIMEOUT = 20.0

#: Where the linker (the outbox storing the message id, then ``apply_orphan_events``)
#: runs while an event for that message id is being recorded without a match, and how
#: many orphans its own ``apply_orphan_events`` call links there.
RACES = {
    # ORM: between the first "no row" and the advisory lock; the re-match finds the row.
    "orm-linker-before-the-lock": 0,
    # ORM: after the re-match under the lock, before the commit; the linker blocks on the
    # lock until the orphan is committed, then links it.
    "orm-linker-under-the-lock": 1,
    # One statement: while the INSERT (after its "no row") waits; the linker sees no
    # orphan, so the request's re-link step links it.
    "single-statement-linker-during-the-insert": 0,
    # As above, but the linker stores the id and looks for orphans in one transaction,
    # committed only once the re-link is done or waits for the linker's advisory lock.
    "single-statement-linker-in-one-transaction": 0,
}


@pytest.mark.parametrize("race", RACES)
def test_no_orphan_is_lost_while_the_row_learns_its_message_id(
    monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    """The linker runs exactly inside each window where an orphan could be left behind.

    On the single-statement path a third transaction holds an uncommitted event with the
    same dedupe key, so the INSERT waits after its match found no row; the linker runs
    then, and the INSERT goes on once the blocker rolls back.
    """
    single_statement = race.startswith("single-statement")
    if single_statement and not pg_ingest.available():
        pytest.skip("the single-statement path needs psycopg 3")
    monkeypatch.setattr(recording, "SINGLE_STATEMENT", single_statement)
    delivery = make_delivery(None)
    event = parse_event(open_event(0), "evt_race")
    pids: dict[str, int] = {}
    recorder_threads: list[int] = []
    window_open = threading.Event()
    linker_done = threading.Event()
    recorder_done = threading.Event()
    blocker_ready = threading.Event()
    release_blocker = threading.Event()
    linked: list[int] = []

    def link() -> None:
        Delivery.objects.filter(pk=delivery.pk).update(message_id="msg_1")
        linked.append(apply_orphan_events(["msg_1"]))

    def hold_window() -> None:
        """In the recorder: let the linker run until it is done or waits for our lock."""
        window_open.set()
        wait_until(
            lambda: linker_done.is_set() or waits_for_lock(pids.get("linker"), "advisory"),
            "the linker to finish or wait for the advisory lock",
        )

    def in_recorder() -> bool:
        return threading.get_ident() in recorder_threads

    if race == "orm-linker-before-the-lock":
        lock = recording.lock_message_ids

        def window_then_lock(*args: Any) -> None:
            if in_recorder() and not window_open.is_set():
                hold_window()
            lock(*args)

        monkeypatch.setattr(recording, "lock_message_ids", window_then_lock)
    elif race == "orm-linker-under-the-lock":
        row = recording.event_row

        def row_then_window(*args: Any, **kwargs: Any) -> DeliveryEvent:
            built = row(*args, **kwargs)
            if in_recorder():
                hold_window()
            return built

        monkeypatch.setattr(recording, "event_row", row_then_window)

    def recorder() -> None:
        recorder_threads.append(threading.get_ident())
        pids["recorder"] = backend_pid()
        if single_statement:
            assert blocker_ready.wait(TIMEOUT)
        assert recording.record_event(event) is not None
        recorder_done.set()

    def linker() -> None:
        pids["linker"] = backend_pid()
        if not single_statement:
            assert window_open.wait(TIMEOUT)
            link()
        else:
            wait_until(lambda: waits_for_lock(pids.get("recorder")), "the INSERT to wait")
            if race == "single-statement-linker-during-the-insert":
                link()
                release_blocker.set()
            else:
                with transaction.atomic():
                    link()
                    release_blocker.set()
                    wait_until(
                        lambda: (
                            recorder_done.is_set() or waits_for_lock(pids["recorder"], "advisory")
                        ),
                        "the re-link to finish or wait for the advisory lock",
                    )
        linker_done.set()

    def blocker() -> None:
        if not single_statement:
            return
        with transaction.atomic():
            DeliveryEvent.objects.create(
                dedupe_key=event.dedupe_key, event="opened", message_id="msg_0", occurred_at=T0
            )
            blocker_ready.set()
            assert release_blocker.wait(TIMEOUT)
            transaction.set_rollback(True)

    roles = (recorder, linker, blocker)
    run_threads(lambda index: roles[index](), count=len(roles))
    delivery.refresh_from_db()
    assert list(DeliveryEvent.objects.values_list("delivery_id", flat=True)) == [delivery.pk]
    assert delivery.opens == 1
    assert linked == [RACES[race]]
