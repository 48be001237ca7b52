"""Sending from a worker: requests as the caller made them, retries, reports, lost tasks."""

from __future__ import annotations

import logging
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_cloudmails import claims, sending, tasks
from django_cloudmails.exceptions import CloudMailsConfigurationError
from django_cloudmails.models import Delivery
from django_cloudmails.pacing import Pace
from django_cloudmails.recovery import recover
from tests.writing import accepted_per_delivery, ids, send_requests, write

pytestmark = pytest.mark.django_db(transaction=True)


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

    with pytest.raises(CloudMailsConfigurationError):
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


# Retries handed back to the caller (a Celery retry), in this process.


@pytest.fixture
def retries(written: Any, settings: Any) -> dict[str, Any]:
    """CLOUDMAILS for retries the tests can time: 3 attempts, backoff 0.5 s at first."""
    settings.CLOUDMAILS = {
        **settings.CLOUDMAILS,
        "RETRY_ATTEMPTS": 3,
        "RETRY_BACKOFF": 0.5,
        "RETRY_MAX_BACKOFF": 5.0,
    }
    return settings.CLOUDMAILS  # type: ignore[no-any-return]


def test_a_5xx_hands_the_rows_back_still_queued_and_claimed(retries: Any, sandbox: Any) -> None:
    rows = write(2)
    sandbox.faults.fail_next(1, status=503)

    report = sending.send_deliveries(ids(rows))

    assert sorted(report.retry_ids) == sorted(ids(rows))
    assert 0 <= report.retry_in <= 0.5  # the first backoff, with full jitter
    assert (report.sent, report.failed, report.unknown) == (0, 0, 0)
    stored = list(Delivery.objects.all())
    assert {(r.status, r.error_code, r.attempts) for r in stored} == {("queued", "503", 1)}
    assert {r.attempt_started_at.isoformat() for r in stored} == {report.claimed_at}  # type: ignore[union-attr]
    assert report.summary().endswith(f"; 2 to retry in {report.retry_in:.2f} s")


def test_a_429_is_retried_after_its_retry_after_and_holds_every_sender(
    retries: Any, sandbox: Any
) -> None:
    rows = write(1)
    sandbox.faults.throttle_next(1, retry_after=3)

    report = sending.send_deliveries(ids(rows))

    assert report.retry_ids == ids(rows)
    assert report.retry_in == 3.0
    assert 2.0 < Pace(None)._wait() <= 3.0


def test_a_refusal_hands_back_the_requests_not_tried_yet(
    retries: dict[str, Any], sandbox: Any
) -> None:
    retries["BATCH_SIZE"] = 2
    rows = write(4)
    (task,) = sending.task_ids(claims.claim(ids(rows)).requests, 4)
    Delivery.objects.update(attempt_started_at=None)  # as written
    sandbox.faults.fail_next(1, status=500)

    report = sending.send_deliveries(task)

    assert len(send_requests(sandbox)) == 1
    assert sorted(report.retry_ids) == sorted(ids(rows))
    assert report.requests == 1


def test_a_retry_owning_the_claim_sends_the_rows(retries: Any, sandbox: Any) -> None:
    rows = write(2)
    sandbox.faults.fail_next(1, status=500)
    first = sending.send_deliveries(ids(rows))

    retry = sending.send_deliveries(
        first.retry_ids, claimed_at=datetime.fromisoformat(first.claimed_at), attempt=2
    )

    assert (retry.claimed, retry.sent, retry.retry_ids) == (2, 2, [])
    assert {(r.status, r.attempts) for r in Delivery.objects.all()} == {("sent", 2)}
    assert accepted_per_delivery(sandbox) == Counter(ids(rows))


def test_when_retries_run_out_a_refused_row_fails(retries: Any, sandbox: Any) -> None:
    rows = write(2)
    sandbox.faults.fail_next(1, status=500)

    report = sending.send_deliveries(ids(rows), attempt=3)

    assert (report.failed, report.retry_ids) == (2, [])
    assert {(r.status, r.error_code) for r in Delivery.objects.all()} == {("failed", "500")}


@pytest.mark.parametrize("fault", ["drop", "lose"])
def test_an_attempt_that_may_have_reached_the_api_is_left_to_recovery(
    retries: Any, sandbox: Any, fault: str
) -> None:
    rows = write(2)
    sandbox.faults.script(fault)

    report = sending.send_deliveries(ids(rows))

    assert (report.unknown, report.retry_ids) == (2, [])
    assert set(Delivery.objects.values_list("status", flat=True)) == {"unknown"}


def test_a_retry_sends_nothing_recovery_took_over(retries: Any, sandbox: Any) -> None:
    rows = write(2)
    sandbox.faults.fail_next(1, status=500)
    first = sending.send_deliveries(ids(rows))
    assert recover(older_than=0).accepted == 2
    requests_before = len(send_requests(sandbox))

    retry = sending.send_deliveries(
        first.retry_ids, claimed_at=datetime.fromisoformat(first.claimed_at), attempt=2
    )

    assert (retry.claimed, retry.requests) == (0, 0)
    assert len(send_requests(sandbox)) == requests_before
    assert accepted_per_delivery(sandbox) == Counter(ids(rows))


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
    assert accepted_per_delivery(sandbox) == Counter(ids(rows))


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
    owned = claims.claim(ids(rows))  # as a first run would, before a retry
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


def runs_of_send_deliveries(celery_workers: Any) -> list[dict[str, Any]]:
    return [
        event
        for event in celery_workers.events.history
        if event["event"] == "finished" and event["task"] == "cloudmails.send_deliveries"
    ]


@pytest.mark.celery
def test_a_worker_retries_refused_rows_itself_until_the_api_accepts_them(
    written: list[list[str]], retries: dict[str, Any], sandbox: Any, celery_workers: Any
) -> None:
    retries.update(RETRY_BACKOFF=0.05, RETRY_MAX_BACKOFF=2.0)
    rows = write(2)
    sandbox.faults.script(503, 429, "ok")  # the 429 says Retry-After: 1
    celery_workers.start()

    tasks.enqueue_sends(written)
    celery_workers.settle()

    runs = runs_of_send_deliveries(celery_workers)
    assert [run["state"] for run in runs] == ["RETRY", "RETRY", "SUCCESS"]
    assert len({run["task_id"] for run in runs}) == 1  # the same task, retried
    requests = send_requests(sandbox)
    assert [r.status for r in requests] == [503, 429, 202]
    assert {r.headers["idempotency-key"] for r in requests} == {rows[0].idempotency_key}
    assert requests[2].received_at - requests[1].received_at > 0.95  # after Retry-After
    assert {(r.status, r.attempts) for r in Delivery.objects.all()} == {("sent", 3)}
    assert accepted_per_delivery(sandbox) == Counter(ids(rows))


@pytest.mark.celery
def test_a_worker_fails_the_rows_when_retries_run_out(
    written: list[list[str]], retries: dict[str, Any], sandbox: Any, celery_workers: Any
) -> None:
    retries.update(RETRY_ATTEMPTS=2, RETRY_BACKOFF=0.05)
    write(2)
    sandbox.faults.script(500, 502)
    celery_workers.start()

    tasks.enqueue_sends(written)
    celery_workers.settle()

    assert [run["state"] for run in runs_of_send_deliveries(celery_workers)] == [
        "RETRY",
        "SUCCESS",
    ]
    assert {(r.status, r.error_code, r.attempts) for r in Delivery.objects.all()} == {
        ("failed", "502", 2)
    }
    assert sandbox.messages == []
