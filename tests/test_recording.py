"""Storing events, applying them to Delivery rows, signals and suppression."""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import transaction

from django_cloudmails import lifecycle, pg_ingest, recording, signals
from django_cloudmails.lifecycle import Tracking, effect_of
from django_cloudmails.models import Delivery, DeliveryEvent, Suppression
from django_cloudmails.recording import apply_orphan_events, record_event, record_events
from django_cloudmails.suppression import suppressed
from django_cloudmails.webhooks import ParsedEvent, parse_event
from tests.factories import event_body

pytestmark = pytest.mark.django_db

ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


@pytest.fixture(autouse=True, params=["single-statement", "orm"] if ON_POSTGRESQL else ["orm"])
def recording_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs through both ways of recording where both exist: one SQL
    statement (PostgreSQL only) and the ORM transaction (every database)."""
    monkeypatch.setattr(recording, "SINGLE_STATEMENT", request.param == "single-statement")
    return str(request.param)


T0 = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def make_delivery(message_id: str | None = "msg_1", **extra: Any) -> Delivery:
    values: dict[str, Any] = {
        "message_id": message_id,
        "status": "sent",
        "to_email": "someone@example.com",
        "from_email": "shop@shop.example",
        "subject": "Hello",
    }
    values.update(extra)
    return Delivery.objects.create(**values)


def parsed(
    name: str,
    seconds: float = 0,
    *,
    message_id: str = "msg_1",
    key: str | None = None,
    **extra: Any,
) -> ParsedEvent:
    raw = event_body(
        name,
        message_id=message_id,
        timestamp=stamp(seconds),
        recipient="Someone@Example.com",
        **extra,
    )
    return parse_event(raw, key)


def tracking_of(delivery: Delivery) -> Tracking:
    delivery.refresh_from_db()
    return Tracking(**{f.name: getattr(delivery, f.name) for f in fields(Tracking)})


def expected(*events: ParsedEvent) -> Tracking:
    return lifecycle.replay(
        (
            effect_of(e.event, bounce_reason=e.bounce_reason, bounce_type=e.bounce_type),
            e.occurred_at,
        )
        for e in events
    )


# Storing and dedupe.


def test_each_distinct_event_is_stored_once() -> None:
    delivery = make_delivery()
    result = record_events([parsed("delivered", key="evt_1"), parsed("opened", 1, key="evt_2")])
    assert (result.received, result.new) == (2, 2)
    assert list(delivery.events.order_by("occurred_at").values_list("event", flat=True)) == [
        "delivered",
        "opened",
    ]


def test_same_event_twice_is_stored_and_counted_once() -> None:
    delivery = make_delivery()
    assert record_event(parsed("opened", key="evt_1")) is not None
    assert record_event(parsed("opened", key="evt_1")) is None
    assert DeliveryEvent.objects.count() == 1
    delivery.refresh_from_db()
    assert delivery.opens == 1


def test_duplicates_inside_one_request_count_once() -> None:
    make_delivery()
    result = record_events([parsed("opened"), parsed("opened"), parsed("opened", 2)])
    assert (result.received, result.new) == (3, 2)


def test_event_row_keeps_the_payload_and_facts() -> None:
    delivery = make_delivery()
    event = record_event(parsed("clicked", 3, key="evt_1", rich=True))
    assert event is not None
    event.refresh_from_db()
    assert event.delivery_id == delivery.pk
    assert event.payload["url"] == "https://example.com/"
    assert event.occurred_at == T0 + timedelta(seconds=3)
    assert event.recipient == "Someone@Example.com"


# Lifecycle through the database.


def test_each_event_type_sets_its_timestamp_and_status() -> None:
    cases = {
        "delivered": ("delivered", "delivered_at"),
        "bounced": ("bounced", "bounced_at"),
        "opened": ("delivered", "first_opened_at"),
        "clicked": ("delivered", "first_clicked_at"),
        "unsubscribed": ("delivered", "unsubscribed_at"),
        "complained": ("delivered", "complained_at"),
    }
    for index, (name, (status, field)) in enumerate(cases.items()):
        delivery = make_delivery(f"msg_{index}")
        record_event(parsed(name, 5, message_id=f"msg_{index}"))
        delivery.refresh_from_db()
        assert delivery.status == status, name
        assert getattr(delivery, field) == T0 + timedelta(seconds=5), name


def test_bounce_keeps_its_reason_and_type() -> None:
    delivery = make_delivery()
    record_event(parsed("bounced", bounce_type="soft", bounce_reason="452 mailbox full"))
    delivery.refresh_from_db()
    assert (delivery.bounce_type, delivery.bounce_reason) == ("soft", "452 mailbox full")


def test_late_delivered_does_not_undo_a_bounce() -> None:
    delivery = make_delivery()
    record_events([parsed("bounced", 2), parsed("delivered", 1)])
    delivery.refresh_from_db()
    assert delivery.status == "bounced"
    assert delivery.delivered_at == T0 + timedelta(seconds=1)


def test_failed_row_is_not_moved_back_to_delivered() -> None:
    delivery = make_delivery(status="failed")
    record_event(parsed("delivered"))
    delivery.refresh_from_db()
    assert delivery.status == "failed"


MESSAGE_EVENTS = (
    ("delivered", 1, {}),
    ("opened", 2, {}),
    ("clicked", 3, {}),
    ("opened", 4, {}),
    ("bounced", 5, {"bounce_type": "soft", "bounce_reason": "452 mailbox full"}),
)


def test_every_permutation_of_a_message_events_gives_the_ordered_row() -> None:
    ordered = expected(*(parsed(name, s, **extra) for name, s, extra in MESSAGE_EVENTS))
    rows = []
    for number, permutation in enumerate(itertools.permutations(MESSAGE_EVENTS)):
        message_id = f"msg_perm_{number}"
        rows.append(make_delivery(message_id))
        record_events(
            [parsed(name, s, message_id=message_id, **extra) for name, s, extra in permutation]
        )
    assert len(rows) == 120
    finals = {tracking_of(row) for row in rows}
    assert finals == {ordered}


def test_duplicated_and_shuffled_stream_gives_the_ordered_row() -> None:
    events = [parsed(name, s, **extra) for name, s, extra in MESSAGE_EVENTS]
    delivery = make_delivery()
    record_events([*reversed(events), *events[::2]])
    assert tracking_of(delivery) == expected(*events)


# Orphans and matching.


def test_event_for_an_unknown_message_is_kept_as_an_orphan() -> None:
    event = record_event(parsed("delivered", message_id="msg_later"))
    assert event is not None
    assert DeliveryEvent.objects.get(pk=event.pk).delivery_id is None


def test_orphans_are_linked_and_applied_when_the_row_learns_its_message_id() -> None:
    record_events([parsed("delivered", 1, message_id="msg_later"), parsed("opened", 2)])
    record_event(parsed("opened", 3, message_id="msg_later"))
    delivery = make_delivery(None)
    Delivery.objects.filter(pk=delivery.pk).update(message_id="msg_later")
    assert apply_orphan_events(["msg_later"]) == 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.opens) == ("delivered", 1)
    assert delivery.events.count() == 2


def test_linking_orphans_twice_applies_them_once() -> None:
    record_event(parsed("opened", message_id="msg_later"))
    delivery = make_delivery("msg_later")
    assert apply_orphan_events(["msg_later"]) == 1
    assert apply_orphan_events(["msg_later"]) == 0
    delivery.refresh_from_db()
    assert delivery.opens == 1


def test_apply_orphan_events_ignores_ids_without_rows() -> None:
    record_event(parsed("opened", message_id="msg_nobody"))
    assert apply_orphan_events(["msg_nobody", ""]) == 0


def test_event_is_matched_by_the_delivery_id_in_custom_args() -> None:
    delivery = make_delivery(None, status="queued")
    event = record_event(
        parsed("delivered", custom_args={"cloudmails_delivery_id": str(delivery.pk)})
    )
    assert event is not None
    delivery.refresh_from_db()
    assert event.delivery_id == delivery.pk
    assert delivery.status == "delivered"


def test_match_by_delivery_id_stores_the_missing_message_id() -> None:
    delivery = make_delivery(None, status="queued")
    record_event(parsed("delivered", custom_args={"cloudmails_delivery_id": str(delivery.pk)}))
    delivery.refresh_from_db()
    assert delivery.message_id == "msg_1"


def test_message_id_match_wins_over_a_conflicting_delivery_id() -> None:
    right = make_delivery("msg_1")
    other = make_delivery("msg_2")
    record_event(parsed("opened", custom_args={"cloudmails_delivery_id": str(other.pk)}))
    right.refresh_from_db()
    other.refresh_from_db()
    assert (right.opens, other.opens) == (1, 0)


def test_orphan_with_a_delivery_id_is_linked_by_it() -> None:
    record_event(parsed("opened", message_id="msg_x"))
    ref = make_delivery(None)
    DeliveryEvent.objects.update(delivery_ref=ref.pk)
    Delivery.objects.filter(pk=ref.pk).update(message_id="msg_y")
    assert apply_orphan_events(["msg_y"]) == 1


def test_orphan_whose_row_learns_its_id_meanwhile_is_linked_by_its_request(
    recording_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox stores the message id (and finds no orphan) while the event is being
    recorded without a match: the request itself must then link the event."""
    delivery = make_delivery(None)

    def outbox_stores_the_id() -> None:
        Delivery.objects.filter(pk=delivery.pk).update(message_id="msg_1")
        assert apply_orphan_events(["msg_1"]) == 0

    if recording_path == "single-statement":
        insert = pg_ingest.insert

        def insert_then_outbox(*args: Any, **kwargs: Any) -> Any:
            inserted = insert(*args, **kwargs)
            # The outbox ran while this statement did: its orphan search saw nothing yet.
            Delivery.objects.filter(pk=delivery.pk).update(message_id="msg_1")
            return inserted

        monkeypatch.setattr(pg_ingest, "insert", insert_then_outbox)
    else:
        match = recording._match
        calls: list[int] = []

        def match_then_outbox(event: ParsedEvent, using: str) -> Any:
            calls.append(1)
            if len(calls) == 1:
                outbox_stores_the_id()
                return None
            return match(event, using)

        monkeypatch.setattr(recording, "_match", match_then_outbox)
    record_event(parsed("opened"))
    delivery.refresh_from_db()
    assert delivery.opens == 1
    assert delivery.events.count() == 1


# Signals.


@pytest.fixture
def received(signals_sent: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    return signals_sent


@pytest.mark.parametrize("name", sorted(recording.EVENT_SIGNALS))
def test_each_event_sends_email_event_and_its_own_signal(
    name: str, received: list, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = make_delivery()
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed(name))
    assert [call[0] for call in received] == ["email_event", f"email_{name}"]
    assert all(call[1] == delivery and call[2].event == name for call in received)


@pytest.mark.parametrize("name", [lifecycle.EVENT_DEFERRED, lifecycle.EVENT_FAILED])
def test_an_event_without_a_signal_of_its_own_sends_email_event_only(
    name: str, received: list, django_capture_on_commit_callbacks: Any
) -> None:
    make_delivery()
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed(name))
    assert [call[0] for call in received] == ["email_event"]


@pytest.mark.django_db(transaction=True)
def test_signals_wait_for_the_commit(received: list) -> None:
    make_delivery()
    with transaction.atomic():
        record_event(parsed("opened"))
        assert received == []
    assert len(received) == 2


@pytest.mark.django_db(transaction=True)
def test_signals_are_not_sent_when_the_transaction_rolls_back(received: list) -> None:
    make_delivery()

    def record_then_fail() -> None:
        with transaction.atomic():
            record_event(parsed("opened"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        record_then_fail()
    assert received == []


def test_duplicate_sends_no_signal(received: list, django_capture_on_commit_callbacks: Any) -> None:
    make_delivery()
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed("opened", key="evt_1"))
        record_event(parsed("opened", key="evt_1"))
    assert len(received) == 2


def test_signal_delivery_shows_the_updated_row(
    received: list, django_capture_on_commit_callbacks: Any
) -> None:
    make_delivery()
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed("opened"))
    assert received[0][1].opens == 1


def test_orphan_event_signals_with_no_delivery(
    received: list, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed("delivered", message_id="msg_unknown"))
    assert [call[1] for call in received] == [None, None]


def test_email_bounced_fires_once_per_delivery_however_many_bounces(
    received: list, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = make_delivery()
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed("bounced", 2, key="evt_1"))
        record_event(parsed("bounced", 1, key="evt_2", bounce_type="soft"))
    assert [name for name, _, _ in received] == ["email_event", "email_bounced", "email_event"]
    assert received[1][1] == delivery


def test_a_bounce_of_a_row_already_bounced_sends_no_bounce_signal(
    received: list, django_capture_on_commit_callbacks: Any
) -> None:
    make_delivery(status="bounced")
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed("bounced"))
    assert [name for name, _, _ in received] == ["email_event"]


def test_an_orphan_bounce_signals_the_bounce_once_linked(
    received: list, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed("bounced", message_id="msg_later"))
    assert [(name, delivery) for name, delivery, _ in received] == [("email_event", None)]
    delivery = make_delivery("msg_later")

    with django_capture_on_commit_callbacks(execute=True):
        assert apply_orphan_events(["msg_later"]) == 1

    assert [(name, d) for name, d, _ in received[1:]] == [("email_bounced", delivery)]
    delivery.refresh_from_db()
    assert delivery.status == "bounced"


def test_raising_receiver_is_logged_and_the_event_kept(
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    make_delivery()
    signals.email_opened.connect(broken, weak=False)
    try:
        with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
            event = record_event(parsed("opened"))
    finally:
        signals.email_opened.disconnect(broken)
    assert event is not None
    assert DeliveryEvent.objects.filter(pk=event.pk).exists()
    assert "receiver bug" in caplog.text


# Suppression.


def test_hard_bounce_suppresses_the_recipient() -> None:
    make_delivery()
    event = record_event(parsed("bounced"))
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason) == ("someone@example.com", "hard_bounce")
    assert suppression.source_event == event


@pytest.mark.parametrize(
    ("name", "reason"), [("complained", "complained"), ("unsubscribed", "unsubscribed")]
)
def test_complaints_and_unsubscribes_suppress_by_default(name: str, reason: str) -> None:
    make_delivery()
    record_event(parsed(name))
    assert suppressed(["someone@example.com"]) == {"someone@example.com": reason}


def test_soft_bounce_does_not_suppress_by_default() -> None:
    make_delivery()
    record_event(parsed("bounced", bounce_type="soft"))
    assert not Suppression.objects.exists()


def test_soft_bounce_suppresses_when_configured(settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "SUPPRESS_ON": ["soft_bounce"]}
    make_delivery()
    record_event(parsed("bounced", bounce_type="soft"))
    assert Suppression.objects.get().reason == "soft_bounce"


def test_reason_left_out_of_suppress_on_does_not_suppress(settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "SUPPRESS_ON": ["hard_bounce"]}
    make_delivery()
    record_events([parsed("complained"), parsed("unsubscribed", 1)])
    assert not Suppression.objects.exists()


def test_engagement_events_never_suppress() -> None:
    make_delivery()
    record_events([parsed("delivered"), parsed("opened", 1), parsed("clicked", 2)])
    assert not Suppression.objects.exists()


def test_second_suppressing_event_keeps_the_first_reason() -> None:
    make_delivery()
    record_events([parsed("complained"), parsed("bounced", 1)])
    assert Suppression.objects.get().reason == "complained"


def test_single_statement_path_needs_psycopg3(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        from django.db.backends.postgresql import psycopg_any

        assert pg_ingest.available() is bool(psycopg_any.is_psycopg3)
        assert pg_ingest.available("default") is bool(psycopg_any.is_psycopg3)
        monkeypatch.setattr(psycopg_any, "is_psycopg3", False)

    assert pg_ingest.available() is False
    assert pg_ingest.available("default") is False


# Event types the lifecycle does not know: stored, linked, and nothing else.


def untouched(delivery: Delivery) -> dict[str, Any]:
    values = Delivery.objects.values().get(pk=delivery.pk)
    values.pop("updated_at")
    return values


def test_unknown_event_type_is_stored_against_its_row_and_changes_nothing() -> None:
    delivery = make_delivery()
    before = untouched(delivery)
    event = record_event(parsed("dropped", 3))
    assert event is not None
    assert DeliveryEvent.objects.get().delivery_id == delivery.pk
    assert untouched(delivery) == before
    assert not Suppression.objects.exists()


def test_unknown_event_type_sends_email_event_only(
    received: list, django_capture_on_commit_callbacks: Any
) -> None:
    make_delivery()
    with django_capture_on_commit_callbacks(execute=True):
        record_event(parsed("dropped"))
    assert [(call[0], call[2].event) for call in received] == [("email_event", "dropped")]


def test_unknown_orphan_event_is_linked_later_and_changes_nothing() -> None:
    record_event(parsed("dropped", message_id="msg_late"))
    delivery = make_delivery(message_id="msg_late")
    before = untouched(delivery)
    assert apply_orphan_events(["msg_late"]) == 1
    assert DeliveryEvent.objects.get().delivery_id == delivery.pk
    assert untouched(delivery) == before
