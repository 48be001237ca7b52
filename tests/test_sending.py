"""Sending from a worker: claims, requests as the caller made them, reports, lost tasks."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.utils import timezone

from django_cloudmails import backends, sending, tasks
from django_cloudmails.backends import CeleryEmailBackend
from django_cloudmails.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def written(monkeypatch: Any, cloudmails_settings: dict[str, Any]) -> list[list[str]]:
    """The id lists CeleryEmailBackend would enqueue, kept here instead."""
    kept: list[list[str]] = []
    monkeypatch.setattr(backends, "_enqueue", kept.extend)
    return kept


def write(count: int, *, subject: str = "Hi") -> list[Delivery]:
    """``count`` one-recipient emails written through CeleryEmailBackend; their rows."""
    emails = [EmailMessage(subject, "Body", None, [f"u{i}@example.com"]) for i in range(count)]
    CeleryEmailBackend().send_messages(emails)
    return [row for email in emails for row in email.cloudmails_deliveries]  # type: ignore[attr-defined]


def ids(rows: list[Delivery]) -> list[str]:
    return [str(row.pk) for row in rows]


def send_requests(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "POST" and "/send" in r.path]


# Claims (in this process, no worker).


def test_a_claim_stamps_the_rows_and_a_second_claim_gets_none(written: Any) -> None:
    rows = write(3)

    first = sending.claim(ids(rows))
    second = sending.claim(ids(rows))

    assert sorted(row.pk for row in first.rows) == sorted(row.pk for row in rows)
    assert list(second.rows) == []
    stamps = set(Delivery.objects.values_list("attempt_started_at", flat=True))
    assert stamps == {first.at}


def test_a_claim_takes_every_row_of_the_requests_of_the_ids_given(written: Any) -> None:
    rows = write(4)

    claimed = sending.claim([str(rows[2].pk)])

    (request,) = claimed.requests
    assert request[0].pk == rows[2].pk
    assert {row.pk for row in request} == {row.pk for row in rows}


def test_a_claim_keeps_the_order_of_the_ids_given(written: Any, settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": 2}
    rows = write(4)

    claimed = sending.claim(list(reversed(ids(rows))))

    assert [[row.to_email for row in request] for request in claimed.requests] == [
        ["u3@example.com", "u2@example.com"],
        ["u1@example.com", "u0@example.com"],
    ]


def test_a_claim_skips_rows_not_queued_or_claimed_already(written: Any) -> None:
    rows = write(1, subject="Sent") + write(1, subject="Claimed") + write(1)
    Delivery.objects.filter(subject="Sent").update(status="sent")
    Delivery.objects.filter(subject="Claimed").update(attempt_started_at=timezone.now())

    claimed = sending.claim(ids(rows))

    assert [row.subject for row in claimed.rows] == ["Hi"]


def test_rows_without_an_idempotency_key_are_never_claimed(written: Any) -> None:
    row = Delivery.objects.create(status="queued", to_email="a@example.com", payload={})

    assert list(sending.claim([str(row.pk)]).rows) == []


def test_concurrent_claims_share_out_whole_requests_once_each(written: Any, settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": 3}
    rows = write(30)
    given = ids(rows)
    barrier = threading.Barrier(6)
    claims: list[sending.Claim] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            claims.append(sending.claim(given))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    taken = Counter(row.pk for claim in claims for row in claim.rows)
    assert set(taken) == {row.pk for row in rows}
    assert set(taken.values()) == {1}
    keys = Counter(row.idempotency_key for row in rows)
    for claim in claims:
        for request in claim.requests:
            assert len(request) == keys[request[0].idempotency_key]


# Sending (the engine-free function, in this process).


def test_send_deliveries_sends_claimed_rows_and_reports_in_one_log_line(
    written: Any, sandbox: Any, caplog: Any
) -> None:
    rows = write(3)

    with caplog.at_level(logging.INFO, logger="django_cloudmails.sending"):
        report = sending.send_deliveries(ids(rows))

    assert (report.given, report.claimed, report.sent, report.requests) == (3, 3, 3, 1)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    (line,) = [r.getMessage() for r in caplog.records if r.name == "django_cloudmails.sending"]
    assert line.startswith("cloudmails: sent 3, failed 0, unknown 0 of 3 rows in 1 request, ")


def test_a_refusal_fails_its_rows_and_no_answer_leaves_them_unknown(
    written: Any, sandbox: Any, settings: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": 2, "RETRY_ATTEMPTS": 1}
    rows = write(4)
    sandbox.faults.fail_next(1, status=400)
    sandbox.faults.drop_next(1)

    report = sending.send_deliveries(ids(rows))

    assert (report.sent, report.failed, report.unknown) == (0, 2, 2)
    assert report.summary().startswith("sent 0, failed 2, unknown 2 of 4 rows in 2 requests")


def test_a_configuration_error_raises_before_anything_is_claimed(
    written: Any, settings: Any, monkeypatch: Any
) -> None:
    rows = write(2)
    monkeypatch.delenv("CLOUDMAILS_API_KEY", raising=False)
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "API_KEY": ""}

    with pytest.raises(backends.CloudMailsConfigurationError):
        sending.send_deliveries(ids(rows))
    assert set(Delivery.objects.values_list("attempt_started_at", flat=True)) == {None}


def test_the_report_says_how_many_ids_were_not_claimed(written: Any, sandbox: Any) -> None:
    rows = write(2)
    sending.send_deliveries(ids(rows))

    again = sending.send_deliveries(ids(rows))

    assert (again.given, again.claimed, again.requests) == (2, 0, 0)
    assert "2 of the ids given were not queued or claimed elsewhere" in again.summary()


def test_unclaimed_rows_older_than_recover_after_are_handed_back_in_tasks(
    written: Any, settings: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": 2, "RECOVER_AFTER": 60}
    old = write(3, subject="Old")
    write(1, subject="New")
    Delivery.objects.filter(subject="Old").update(created_at=timezone.now() - timedelta(hours=1))

    handed = sending.unclaimed_requests()

    assert sorted(len(task) for task in handed) == [1, 2]
    assert sorted(i for task in handed for i in task) == sorted(ids(old))


# With real worker processes.


@pytest.mark.celery
def test_two_workers_given_the_same_ids_at_once_send_each_row_once(
    written: list[list[str]], sandbox: Any, settings: Any, celery_workers: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": 5}
    rows = write(40)
    twins = [task for task in written for _ in range(2)]
    tasks.enqueue_sends(twins)

    celery_workers.start(2)
    reports = celery_workers.finished(len(twins))

    assert sum(report["claimed"] for report in reports) == len(rows)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    keys = Counter(r.headers["idempotency-key"] for r in send_requests(sandbox))
    assert set(keys.values()) == {1}  # no request twice, not even one the API would dedupe
    carried = Counter(m.payload["custom_args"]["cloudmails_delivery_id"] for m in sandbox.messages)
    assert carried == Counter(ids(rows))


@pytest.mark.celery
def test_the_worker_logs_one_line_per_task(
    written: list[list[str]], sandbox: Any, settings: Any, celery_workers: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": 3}
    write(5)
    tasks.enqueue_sends(written)
    celery_workers.start()

    celery_workers.finished(2)
    celery_workers.stop()

    lines = [line for line in celery_workers.output().splitlines() if "cloudmails: sent" in line]
    assert len(lines) == 2
    said = sorted(re.sub(r", [0-9.]+ s$", "", line.split("cloudmails: ")[1]) for line in lines)
    assert said == [
        "sent 2, failed 0, unknown 0 of 2 rows in 1 request",
        "sent 3, failed 0, unknown 0 of 3 rows in 1 request",
    ]


@pytest.mark.celery
def test_rows_whose_task_was_lost_are_sent_once_handed_back(
    written: list[list[str]], sandbox: Any, celery_workers: Any
) -> None:
    rows = write(3)  # enqueued nowhere: the broker lost the task
    celery_workers.start()

    tasks.enqueue_sends(sending.unclaimed_requests(older_than=0))
    celery_workers.finished()

    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert len(sandbox.messages) == len(rows)


def test_a_retry_renews_only_the_claim_it_owns(written: Any) -> None:
    rows = write(3)
    first = sending.claim(ids(rows))

    stranger = sending.claim(ids(rows), owned_at=first.at - timedelta(microseconds=1))
    renewed = sending.claim(ids(rows), owned_at=first.at)
    stale = sending.claim(ids(rows), owned_at=first.at)

    assert list(stranger.rows) == []
    assert sorted(row.pk for row in renewed.rows) == sorted(row.pk for row in rows)
    assert renewed.at > first.at
    assert list(stale.rows) == []


def test_a_claim_taken_over_by_recovery_is_not_renewed(written: Any) -> None:
    rows = write(2)
    first = sending.claim(ids(rows))
    Delivery.objects.update(attempt_started_at=timezone.now())  # recovery claimed them

    assert list(sending.claim(ids(rows), owned_at=first.at).rows) == []


def test_a_run_reports_the_time_of_its_claim_for_a_retry(written: Any, sandbox: Any) -> None:
    rows = write(1)

    report = sending.send_deliveries(ids(rows))

    stamp = Delivery.objects.get().attempt_started_at
    assert stamp is not None
    assert report.claimed_at == stamp.isoformat()


@pytest.mark.celery
def test_a_task_given_its_claim_time_sends_the_rows_it_owns(
    written: list[list[str]], sandbox: Any, celery_workers: Any
) -> None:
    rows = write(2)
    owned = sending.claim(ids(rows))  # as a first run would, before a retry
    celery_workers.start()

    tasks.send_deliveries.delay(ids(rows), claimed_at=owned.at.isoformat())
    (report,) = celery_workers.finished()

    assert (report["claimed"], report["sent"]) == (2, 2)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.celery
def test_a_worker_killed_with_sigkill_is_replaced_by_a_new_one(
    written: list[list[str]], sandbox: Any, celery_workers: Any
) -> None:
    (first,) = celery_workers.start()
    first.kill()
    rows = write(2)

    celery_workers.start()
    tasks.enqueue_sends(written)
    celery_workers.finished()

    assert first.process.returncode == -9
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert len(rows) == len(sandbox.messages)
