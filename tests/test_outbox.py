"""The outbox: rows written before the call, results stored after, through the lifecycle."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import transaction

from django_cloudmails import orphans, outbox
from django_cloudmails.models import Delivery
from django_cloudmails.payloads import DELIVERY_ID_ARG, build_api_messages

pytestmark = pytest.mark.django_db


def queued(count: int = 1) -> list[Delivery]:
    rows = []
    for i in range(count):
        message = EmailMessage("Hi", "Body", "f@shop.example", [f"u{i}@example.com"])
        rows.extend(
            outbox.new_delivery(api, alias="default") for api in build_api_messages(message)
        )
    outbox.insert(rows)
    return rows


def test_new_delivery_carries_its_id_in_custom_args() -> None:
    (row,) = queued()

    stored = Delivery.objects.get()
    assert stored.payload["custom_args"][DELIVERY_ID_ARG] == str(row.id)
    assert stored.status == "queued"


def test_a_single_send_is_keyed_by_its_row_id() -> None:
    (row,) = queued()

    outbox.assign_idempotency_keys([[row]], batch=False)

    assert row.idempotency_key == f"cloudmails-{row.id}"


def test_the_rows_of_a_batch_request_share_a_key_of_their_ids() -> None:
    first, second, third = queued(3)

    outbox.assign_idempotency_keys([[first, second], [third]], batch=True)

    assert first.idempotency_key == second.idempotency_key
    assert first.idempotency_key.startswith("cloudmails-batch-")
    assert third.idempotency_key not in (first.idempotency_key, f"cloudmails-{third.id}")
    again = Delivery(id=first.id), Delivery(id=second.id)
    outbox.assign_idempotency_keys([list(again)], batch=True)
    assert again[0].idempotency_key == first.idempotency_key


def test_insert_writes_every_field_like_the_orm() -> None:
    (row,) = queued()

    stored = Delivery.objects.get()
    assert stored.id == row.id
    assert (stored.to_email, stored.from_email, stored.subject) == (
        "u0@example.com",
        "f@shop.example",
        "Hi",
    )
    assert stored.created_at is not None
    assert stored.updated_at is not None
    assert stored.message_id is None
    assert stored.metadata == {}
    assert stored.tags == []


def test_insert_stamps_a_statement_once_and_stores_the_payload_that_is_sent() -> None:
    rows = queued(3)

    stored = {row.id: row for row in Delivery.objects.all()}
    assert len({(row.created_at, row.updated_at) for row in stored.values()}) == 1
    for row in rows:
        assert row.created_at == row.updated_at == stored[row.id].created_at
        assert json.loads(outbox.payload_json(row).text) == stored[row.id].payload == row.payload


def test_new_delivery_is_the_instance_the_orm_would_build() -> None:
    message = EmailMessage("Hi", "Body", "f@shop.example", ["a@example.com"])
    (api,) = build_api_messages(message)

    row = outbox.new_delivery(api, alias="default")

    fields = [f.attname for f in Delivery._meta.concrete_fields]
    orm = Delivery(**{name: getattr(row, name) for name in fields})
    assert {name: getattr(row, name) for name in fields} == {
        name: getattr(orm, name) for name in fields
    }
    assert (row._state.adding, row._state.db) == (True, None)
    assert row.resent_from is None


def test_new_delivery_sends_the_init_signals_to_their_receivers() -> None:
    from django.db.models.signals import post_init

    seen: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance)

    message = EmailMessage("Hi", "Body", "f@shop.example", ["a@example.com"])
    (api,) = build_api_messages(message)
    post_init.connect(receiver, sender=Delivery)
    try:
        row = outbox.new_delivery(api, alias="default")
    finally:
        post_init.disconnect(receiver, sender=Delivery)

    assert seen == [row]
    outbox.insert([row])
    assert json.loads(outbox.payload_json(row).text) == Delivery.objects.get().payload


def test_insert_writes_rows_with_non_default_values_in_full() -> None:
    plain, changed = queued(2)
    Delivery.objects.all().delete()
    for row in (plain, changed):
        row._state.adding = True
    changed.opens, changed.bounce_type, changed.batch_id = 3, "hard", "b-1"
    changed.resent_from_id = plain.id

    outbox.insert([changed, plain])

    stored = Delivery.objects.get(pk=changed.pk)
    assert (stored.opens, stored.bounce_type, stored.batch_id) == (3, "hard", "b-1")
    assert stored.resent_from_id == plain.id
    assert Delivery.objects.get(pk=plain.pk).opens == 0


def test_payload_json_encodes_a_row_not_built_by_new_delivery() -> None:
    row = Delivery(payload={"to": "a@example.com", "subject": "Grüße"})

    assert outbox.payload_json(row).text == '{"to":"a@example.com","subject":"Gr\\u00fc\\u00dfe"}'


def test_insert_reports_whether_the_rows_are_committed() -> None:
    message = EmailMessage("Hi", "Body", "f@shop.example", ["a@example.com"])
    (api,) = build_api_messages(message)

    with transaction.atomic():
        assert outbox.insert([outbox.new_delivery(api, alias="default")]) is False


@pytest.mark.django_db(transaction=True)
def test_insert_outside_a_transaction_is_committed() -> None:
    message = EmailMessage("Hi", "Body", "f@shop.example", ["a@example.com"])
    (api,) = build_api_messages(message)

    assert outbox.insert([outbox.new_delivery(api, alias="default")]) is True


def test_mark_sent_stores_message_ids_for_many_rows_in_one_statement() -> None:
    rows = queued(3)

    outbox.mark_sent([(row, f"msg_{i}") for i, row in enumerate(rows)], attempts=2, batch_id="b1")

    stored = {row.id: row for row in Delivery.objects.all()}
    for i, row in enumerate(rows):
        assert stored[row.id].message_id == f"msg_{i}"
        assert stored[row.id].status == "sent"
        assert stored[row.id].attempts == 2
        assert stored[row.id].batch_id == "b1"
        assert stored[row.id].sent_at is not None


def test_mark_sent_on_sqlite_older_than_3_33_updates_row_by_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite version matters only on SQLite")
    monkeypatch.setattr(connection.Database, "sqlite_version_info", (3, 31, 1))
    rows = queued(3)
    Delivery.objects.filter(pk=rows[0].pk).update(status="delivered")

    outbox.mark_sent([(row, f"msg_{i}") for i, row in enumerate(rows)], attempts=1, batch_id="b")

    stored = {row.id: row for row in Delivery.objects.all()}
    assert [stored[row.id].message_id for row in rows] == ["msg_0", "msg_1", "msg_2"]
    assert [stored[row.id].status for row in rows] == ["delivered", "sent", "sent"]


def test_mark_sent_single_row_leaves_batch_id_empty() -> None:
    (row,) = queued()

    outbox.mark_sent([(row, "msg_1")], attempts=1)

    stored = Delivery.objects.get()
    assert (stored.message_id, stored.status, stored.batch_id) == ("msg_1", "sent", "")


def test_mark_sent_does_not_move_a_row_back_from_a_later_status() -> None:
    (row,) = queued()
    Delivery.objects.filter(pk=row.pk).update(status="delivered")

    outbox.mark_sent([(row, "msg_1")], attempts=1)

    stored = Delivery.objects.get()
    assert (stored.status, stored.message_id) == ("delivered", "msg_1")


def test_mark_sent_updates_the_rows_in_memory() -> None:
    (row,) = queued()

    outbox.mark_sent([(row, "msg_1")], attempts=1)

    assert (row.status, row.message_id, row.attempts) == ("sent", "msg_1", 1)


@pytest.mark.django_db(transaction=True)
def test_mark_sent_links_orphans_at_once_in_autocommit(monkeypatch: Any) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(
        orphans, "apply_orphan_events", lambda ids, using=None: calls.append(list(ids))
    )
    (row,) = queued()

    outbox.mark_sent([(row, "msg_a")], attempts=1)

    assert calls == [["msg_a"]]


@pytest.mark.django_db(transaction=True)
def test_mark_sent_links_orphans_after_the_callers_transaction_commits(monkeypatch: Any) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(
        orphans, "apply_orphan_events", lambda ids, using=None: calls.append(list(ids))
    )

    with transaction.atomic():
        (row,) = queued()
        outbox.mark_sent([(row, "msg_a")], attempts=1)
        assert calls == []

    assert calls == [["msg_a"]]


@pytest.mark.django_db(transaction=True)
def test_mark_sent_can_skip_orphan_linking_for_rows_committed_before_the_call(
    monkeypatch: Any,
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(orphans, "apply_orphan_events", calls.append)
    (row,) = queued()

    outbox.mark_sent([(row, "msg_a")], attempts=1, link_orphans=False)

    assert calls == []


def test_mark_failed_records_the_error_and_attempts() -> None:
    rows = queued(2)

    outbox.mark_failed(rows, code="403", error="not verified", attempts=1)

    for stored in Delivery.objects.all():
        assert (stored.status, stored.error_code, stored.last_error) == (
            "failed",
            "403",
            "not verified",
        )
        assert stored.attempts == 1
        assert stored.failed_at is not None


def test_mark_failed_does_not_override_a_bounce() -> None:
    (row,) = queued()
    Delivery.objects.filter(pk=row.pk).update(status="bounced")

    outbox.mark_failed([row], code="500", error="x", attempts=1)

    assert Delivery.objects.get().status == "bounced"


def test_mark_unknown_makes_the_row_unknown_with_the_error() -> None:
    (row,) = queued()

    outbox.mark_unknown([row], code="transport", error="reset", attempts=3)
    outbox.mark_unknown([row], code="timeout", error="slow", attempts=1)

    stored = Delivery.objects.get()
    assert (stored.status, stored.error_code, stored.last_error, stored.attempts) == (
        "unknown",
        "timeout",
        "slow",
        4,
    )
    assert stored.failed_at is None


def test_mark_failed_never_fails_a_row_whose_outcome_is_unknown() -> None:
    (row,) = queued()
    outbox.mark_unknown([row], code="transport", error="reset", attempts=1)

    outbox.mark_failed([row], code="500", error="later refusal", attempts=1)

    stored = Delivery.objects.get()
    assert (stored.status, stored.last_error) == ("unknown", "reset")


def test_mark_retrying_keeps_the_status_and_records_the_error() -> None:
    (row,) = queued()

    outbox.mark_retrying([row], code="429", error="slow down", attempts=1)

    stored = Delivery.objects.get()
    assert (stored.status, stored.error_code, stored.attempts) == ("queued", "429", 1)


def test_insert_can_stamp_the_attempt_of_queued_rows_only() -> None:
    message = EmailMessage("Hi", "Body", "f@shop.example", ["a@example.com", "b@example.com"])
    first, second = (outbox.new_delivery(m, alias="default") for m in build_api_messages(message))
    outbox.refuse(second, "suppressed", "on the list")

    outbox.insert([first, second], attempt_started=True)

    stored = {row.pk: row for row in Delivery.objects.all()}
    assert stored[first.pk].attempt_started_at == stored[first.pk].created_at
    assert stored[second.pk].attempt_started_at is None


def test_insert_leaves_the_attempt_unset_by_default() -> None:
    queued()

    assert Delivery.objects.get().attempt_started_at is None


def test_invalid_delivery_is_a_failed_row_with_the_error() -> None:
    message = EmailMessage("Hi", "Body", "f@shop.example", ["bad"])

    row = outbox.invalid_delivery(message, ValueError("bad address"), alias="a", code="invalid")

    assert (row.status, row.error_code, row.last_error, row.to_email, row.alias) == (
        "failed",
        "invalid",
        "bad address",
        "bad",
        "a",
    )


def test_rows_are_found_by_uuid_after_a_raw_update() -> None:
    (row,) = queued()
    outbox.mark_sent([(row, "msg_z")], attempts=1)

    assert Delivery.objects.get(pk=uuid.UUID(str(row.id))).message_id == "msg_z"


def test_sending_imports_nothing_of_receiving() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys, django; django.setup(); "
        "import django_cloudmails.backends, django_cloudmails.dispatch; "
        "print(sorted(m for m in sys.modules if m.startswith('django_cloudmails.') and "
        "m.rsplit('.', 1)[1] in ('recording', 'webhooks', 'views', 'pg_ingest')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"
