"""Database routers on the webhook side: recording runs on the alias the router names.

The suite's settings define only "default", so these tests add an "other" alias that
points at the same test database (as a TEST MIRROR would) with its own connection, and
route the app's models to it. It is not a second database: that needs an entry in the
test settings, so that the test runner creates it. Recording inside a transaction on "other" that is
then rolled back must leave nothing behind, and the "default" connection must not be
used at all: a write through it would survive the rollback (it is in autocommit), an
``on_commit`` registered on it would run at once, and any query on it raises here.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.utils import load_backend

from django_cloudmails import pg_ingest, recording, signals
from django_cloudmails.models import Delivery, DeliveryEvent, Suppression
from django_cloudmails.recording import apply_orphan_events, record_events
from django_cloudmails.webhooks import ParsedEvent, parse_event
from tests.factories import event_body

pytestmark = pytest.mark.django_db(transaction=True)

ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
T0 = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)


class AppRouter:
    """Routes the app's models to ``alias`` and remembers what it was asked."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.asked: list[tuple[str, type[Any]]] = []

    def _route(self, kind: str, model: type[Any]) -> str | None:
        self.asked.append((kind, model))
        return self.alias if model._meta.app_label == "cloudmails" else None

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return self._route("read", model)

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return self._route("write", model)


@pytest.fixture(params=["single-statement", "orm"] if ON_POSTGRESQL else ["orm"])
def recording_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(recording, "SINGLE_STATEMENT", request.param == "single-statement")
    return str(request.param)


@pytest.fixture
def router(transactional_db: None, settings: Any, recording_path: str) -> Iterator[AppRouter]:
    """An "other" alias on the test database, with the app's models routed to it."""
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    other = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias="other")
    # Set on this thread only, not in connections.settings: Django's test case allows
    # such dynamically created connections, refusing aliases it was not told about.
    connections["other"] = other
    app_router = AppRouter("other")
    settings.DATABASE_ROUTERS = [app_router]
    try:
        yield app_router
    finally:
        other.close()
        if other.connection is not None:  # close() keeps an in-memory SQLite database open
            other.connection.close()
        del connections["other"]


@contextmanager
def default_unused() -> Iterator[None]:
    """Make any use of the "default" connection raise."""
    default = connections["default"]

    def refuse() -> None:
        raise AssertionError('the "default" connection was used')

    default.ensure_connection = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        del default.ensure_connection


@pytest.fixture
def received() -> Iterator[list[str]]:
    calls: list[str] = []

    def receiver(sender: Any, event: DeliveryEvent, **kwargs: Any) -> None:
        calls.append(event.event)

    signals.email_event.connect(receiver, weak=False)
    yield calls
    signals.email_event.disconnect(receiver)


def parsed(name: str, message_id: str = "msg_1") -> ParsedEvent:
    raw = event_body(
        name,
        message_id=message_id,
        timestamp=T0.isoformat().replace("+00:00", "Z"),
        recipient="someone@example.com",
    )
    return parse_event(raw, None)


def make_delivery(message_id: str | None = "msg_1") -> Delivery:
    return Delivery.objects.create(
        message_id=message_id, status="sent", to_email="someone@example.com", from_email="a@b.c"
    )


def test_recording_runs_on_the_routed_database(router: AppRouter, received: list[str]) -> None:
    delivery = make_delivery()
    router.asked.clear()
    with default_unused():
        with transaction.atomic(using="other"):
            assert record_events([parsed("opened"), parsed("complained")]).new == 2
            assert received == []  # on_commit of "other", not run yet
            transaction.set_rollback(True, using="other")
        assert ("write", DeliveryEvent) in router.asked
        assert received == []
        assert not DeliveryEvent.objects.exists()
        assert not Suppression.objects.exists()
        delivery.refresh_from_db()
        assert (delivery.opens, delivery.complained_at) == (0, None)

        assert record_events([parsed("opened"), parsed("complained")]).new == 2
        assert received == ["opened", "complained"]
        delivery.refresh_from_db()
        assert (delivery.opens, delivery.complained_at) == (1, T0)
        assert Suppression.objects.get().address == "someone@example.com"
        assert record_events([parsed("opened")]).new == 0


def test_orphans_are_stored_and_linked_on_the_routed_database(router: AppRouter) -> None:
    delivery = make_delivery(None)
    with default_unused():
        assert record_events([parsed("opened")]).new == 1
        with transaction.atomic(using="other"):
            Delivery.objects.filter(pk=delivery.pk).update(message_id="msg_1")
            assert apply_orphan_events(["msg_1"]) == 1
            transaction.set_rollback(True, using="other")
        assert DeliveryEvent.objects.get().delivery_id is None
        Delivery.objects.filter(pk=delivery.pk).update(message_id="msg_1")
        assert apply_orphan_events(["msg_1"]) == 1
    delivery.refresh_from_db()
    assert delivery.opens == 1


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the single statement is PostgreSQL only")
def test_single_statement_takes_the_alias(router: AppRouter) -> None:
    make_delivery()
    with default_unused():
        assert pg_ingest.available("other") is pg_ingest.available()
        if not pg_ingest.available("other"):
            pytest.skip("needs psycopg 3")
        with transaction.atomic(using="other"):
            inserted = pg_ingest.insert(parsed("opened"), T0, None, using="other")
            assert inserted is not None
            transaction.set_rollback(True, using="other")
        assert not DeliveryEvent.objects.exists()
