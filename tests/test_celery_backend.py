"""CeleryEmailBackend: rows written in the caller's transaction, sent by a real worker."""

from __future__ import annotations

import logging
from typing import Any

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.db import transaction
from kombu.exceptions import OperationalError

from django_cloudmails import suppression, tasks
from django_cloudmails.backends import CeleryEmailBackend
from django_cloudmails.exceptions import (
    CloudMailsConfigurationError,
    CloudMailsInvalidMessage,
    CloudMailsSuppressed,
)
from django_cloudmails.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)

OURS = "django_cloudmails.backends.CeleryEmailBackend"
needs_mailers = pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is Django 6.1+")


@pytest.fixture
def celery_backend(use_mailer: Any, cloudmails_settings: dict[str, Any]) -> dict[str, Any]:
    """Route Django's mail API to CeleryEmailBackend; returns the CLOUDMAILS dict."""
    use_mailer(OURS)
    return cloudmails_settings


def send_requests(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "POST" and "/send" in r.path]


# In the caller: no worker, no HTTP.


def test_rows_are_written_queued_and_unclaimed_without_any_request(
    celery_backend: Any, sandbox: Any
) -> None:
    sent = mail.send_mail("Hi", "Body", None, ["ann@example.com", "bob@example.com"])

    assert sent == 1
    rows = list(Delivery.objects.all())
    assert [(r.status, r.attempt_started_at, r.message_id) for r in rows] == [
        ("queued", None, None)
    ] * 2
    assert all(r.idempotency_key.startswith("cloudmails-batch-") for r in rows)
    assert send_requests(sandbox) == []


def test_a_request_of_one_message_is_keyed_for_send_and_larger_ones_for_a_batch(
    celery_backend: dict[str, Any], sandbox: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("django_cloudmails.backends._enqueue", lambda tasks: None)
    celery_backend["BATCH_SIZE"] = 2
    mail.send_mail("Solo", "Body", None, ["solo@example.com"])
    mail.send_mass_mail([("Many", "Body", None, [f"u{i}@example.com"]) for i in range(5)])

    solo = Delivery.objects.get(subject="Solo")
    assert solo.idempotency_key == f"cloudmails-{solo.pk}"
    many = list(Delivery.objects.filter(subject="Many"))
    keys = [row.idempotency_key for row in many]
    assert sorted(keys.count(key) for key in set(keys)) == [1, 2, 2]
    for row in many:
        if keys.count(row.idempotency_key) == 1:
            assert row.idempotency_key == f"cloudmails-{row.pk}"
        else:
            assert row.idempotency_key.startswith("cloudmails-batch-")


def test_a_rate_limit_caps_the_messages_of_one_request(
    celery_backend: dict[str, Any], sandbox: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("django_cloudmails.backends._enqueue", lambda tasks: None)
    celery_backend["RATE_LIMIT"] = 200  # 200 / 50: 4 messages a request
    mail.send_mass_mail([("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(10)])

    keys = list(Delivery.objects.values_list("idempotency_key", flat=True))
    assert sorted(keys.count(key) for key in set(keys)) == [2, 4, 4]


def test_the_ids_are_enqueued_only_when_the_transaction_commits(
    celery_backend: Any, sandbox: Any, monkeypatch: Any
) -> None:
    enqueued: list[list[list[str]]] = []
    monkeypatch.setattr("django_cloudmails.backends._enqueue", enqueued.append)

    with transaction.atomic():
        mail.send_mail("Hi", "Body", None, ["ann@example.com"])
        assert enqueued == []

    assert enqueued == [[[str(Delivery.objects.get().pk)]]]


def test_tasks_carry_whole_requests_and_at_most_batch_size_rows(
    celery_backend: dict[str, Any], sandbox: Any, monkeypatch: Any
) -> None:
    enqueued: list[list[list[str]]] = []
    monkeypatch.setattr("django_cloudmails.backends._enqueue", enqueued.append)
    celery_backend.update(BATCH_SIZE=5, RATE_LIMIT=100)  # requests of 2 rows, tasks of 5
    mail.send_mass_mail([("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(9)])

    (tasks_given,) = enqueued
    assert [len(ids) for ids in tasks_given] == [4, 5]
    keys = dict(Delivery.objects.values_list("pk", "idempotency_key"))
    by_task = [{keys[Delivery._meta.pk.to_python(i)] for i in ids} for ids in tasks_given]
    assert [len(task_keys) for task_keys in by_task] == [2, 3]


def test_a_bad_message_raises_in_the_caller_before_anything_is_stored(
    celery_backend: Any, sandbox: Any
) -> None:
    good = EmailMessage("Good", "Body", None, ["ann@example.com"])
    bad = EmailMessage("Bad", "Body", None, ["not an address"])

    with pytest.raises(CloudMailsInvalidMessage, match="to"):
        CeleryEmailBackend().send_messages([good, bad])
    assert not Delivery.objects.exists()


def test_a_missing_api_key_raises_before_any_row_is_written(
    celery_backend: dict[str, Any], monkeypatch: Any
) -> None:
    monkeypatch.delenv("CLOUDMAILS_API_KEY", raising=False)
    celery_backend["API_KEY"] = ""

    with pytest.raises(CloudMailsConfigurationError, match="API key"):
        mail.send_mail("Hi", "Body", None, ["ann@example.com"])
    assert not Delivery.objects.exists()


def test_suppressed_recipients_get_a_failed_row_and_are_not_counted(
    celery_backend: Any, sandbox: Any
) -> None:
    suppression.suppress("bob@example.com", "hard_bounce")
    emails = [
        EmailMessage("Hi", "Body", None, [to]) for to in ("ann@example.com", "bob@example.com")
    ]

    assert CeleryEmailBackend().send_messages(emails) == 1
    assert dict(Delivery.objects.values_list("to_email", "status")) == {
        "ann@example.com": "queued",
        "bob@example.com": "failed",
    }


def test_suppressed_recipients_raise_when_configured_to(
    celery_backend: dict[str, Any], sandbox: Any
) -> None:
    celery_backend["SUPPRESSED_RECIPIENTS"] = "raise"
    suppression.suppress("bob@example.com", "complained")

    with pytest.raises(CloudMailsSuppressed):
        mail.send_mail("Hi", "Body", None, ["bob@example.com"])
    assert not Delivery.objects.exists()


def test_connection_options_the_worker_would_not_see_are_refused(celery_backend: Any) -> None:
    with pytest.raises(CloudMailsConfigurationError, match='"api_key", "timeout"'):
        CeleryEmailBackend(api_key="another-key", timeout=3)


def test_options_used_in_the_caller_are_accepted(celery_backend: Any, sandbox: Any) -> None:
    backend = CeleryEmailBackend(batch_size=10, ignore_unsupported_features=True)

    assert backend.settings.batch_size == 10


def test_a_broker_that_refuses_is_logged_and_the_rows_stay_for_recovery(
    celery_backend: Any, sandbox: Any, monkeypatch: Any, caplog: Any
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.send_deliveries, "delay", refuse)
    with caplog.at_level(logging.ERROR, logger="django_cloudmails.tasks"):
        sent = mail.send_mail("Hi", "Body", None, ["ann@example.com"])

    assert sent == 1
    assert Delivery.objects.get().status == "queued"
    assert "recover_deliveries" in caplog.text


# With a real worker process.


@pytest.mark.celery
def test_a_worker_sends_the_rows_and_stores_their_message_ids(
    celery_backend: Any, sandbox: Any, celery_workers: Any
) -> None:
    celery_workers.start()

    mail.send_mail("Hi", "Body", None, ["ann@example.com", "bob@example.com"])
    (report,) = celery_workers.finished()

    assert report["sent"] == 2
    rows = {row.to_email: row for row in Delivery.objects.all()}
    accepted = {message.recipient: message for message in sandbox.messages}
    assert set(rows) == set(accepted) == {"ann@example.com", "bob@example.com"}
    for address, row in rows.items():
        assert row.status == "sent"
        assert row.message_id == accepted[address].message_id
        assert row.attempt_started_at is not None
        assert accepted[address].idempotency_key == row.idempotency_key


@pytest.mark.celery
def test_a_lone_message_goes_through_send(
    celery_backend: Any, sandbox: Any, celery_workers: Any
) -> None:
    celery_workers.start()

    mail.send_mail("Hi", "Body", None, ["ann@example.com"])
    celery_workers.finished()

    assert [r.path for r in send_requests(sandbox)] == ["/v1/send"]
    assert Delivery.objects.get().status == "sent"


@pytest.mark.celery
def test_a_rolled_back_transaction_leaves_no_row_and_sends_nothing(
    celery_backend: Any, sandbox: Any, celery_workers: Any
) -> None:
    celery_workers.start()

    def view() -> None:
        with transaction.atomic():
            mail.send_mail("Rolled back", "Body", None, ["ann@example.com"])
            raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        view()
    mail.send_mail("Committed", "Body", None, ["bob@example.com"])
    celery_workers.finished()  # the worker takes tasks in order: none came before

    assert list(Delivery.objects.values_list("subject", flat=True)) == ["Committed"]
    assert [message.payload["subject"] for message in sandbox.messages] == ["Committed"]


@pytest.mark.celery
def test_a_bad_message_raises_in_the_caller_and_never_reaches_the_worker(
    celery_backend: Any, sandbox: Any, celery_workers: Any
) -> None:
    celery_workers.start()

    with pytest.raises(CloudMailsInvalidMessage):
        mail.send_mail("Bad", "Body", None, ["ann@example.com", "@nowhere"])
    mail.send_mail("Good", "Body", None, ["bob@example.com"])
    (report,) = celery_workers.finished()

    assert report["given"] == 1
    assert [message.payload["subject"] for message in sandbox.messages] == ["Good"]


@pytest.mark.celery
def test_many_messages_go_out_as_the_requests_the_caller_made(
    celery_backend: dict[str, Any], sandbox: Any, celery_workers: Any
) -> None:
    celery_backend["BATCH_SIZE"] = 2
    celery_workers.start()

    mail.send_mass_mail([("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(5)])
    celery_workers.finished(3)

    requests = send_requests(sandbox)
    assert sorted((r.path, len(r.json.get("messages", [r.json]))) for r in requests) == [
        ("/v1/send", 1),
        ("/v1/send/batch", 2),
        ("/v1/send/batch", 2),
    ]
    key_of = {r.headers["idempotency-key"]: r for r in requests}
    for row in Delivery.objects.all():
        assert row.status == "sent"
        sent = [m["to"] for m in key_of[row.idempotency_key].json.get("messages", [])]
        assert row.to_email in sent or key_of[row.idempotency_key].json["to"] == row.to_email


@needs_mailers
@pytest.mark.celery
def test_each_mailers_alias_is_sent_by_the_worker_with_its_own_key(
    settings: Any, celery_workers: Any
) -> None:
    from django_cloudmails.sandbox import Sandbox

    with Sandbox(api_key=["key-a", "key-b"], verified_senders=["@shop.example"]) as sandbox:
        settings.CLOUDMAILS = {"API_KEY": "unused", "API_URL": "http://127.0.0.1:9/v1"}
        settings.MAILERS = {
            alias: {"BACKEND": OURS, "OPTIONS": {"api_key": key, "api_url": sandbox.url}}
            for alias, key in (("default", "key-a"), ("bulk", "key-b"))
        }
        celery_workers.start()

        mail.send_mail("A", "Body", None, ["ann@example.com"])
        mail.send_mail("B", "Body", None, ["bob@example.com"], using="bulk")
        celery_workers.finished(2)

        used = {r.json["subject"]: r.headers["authorization"] for r in send_requests(sandbox)}
    assert used == {"A": "Bearer key-a", "B": "Bearer key-b"}
    assert dict(Delivery.objects.values_list("subject", "alias")) == {"A": "default", "B": "bulk"}
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
