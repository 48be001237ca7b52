"""Honest outcomes: what the rows say after each scripted way a send can go wrong.

Against the sandbox over HTTP; its script answers one step per API request, in order.
An attempt that may have reached the API (a lost response, a dropped connection) makes
the outcome unknown for good; only refusals of every attempt fail the rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.mail import EmailMessage

from django_cloudmails import dispatch, outbox
from django_cloudmails.backends import EmailBackend
from django_cloudmails.client import CloudMailsClient
from django_cloudmails.exceptions import (
    CloudMailsError,
    CloudMailsRateLimited,
    CloudMailsServerError,
    CloudMailsTransportError,
)
from django_cloudmails.models import Delivery
from django_cloudmails.payloads import build_api_messages
from tests.conftest import API_KEY

pytestmark = pytest.mark.django_db(transaction=True)


def send(count: int = 1, **options: Any) -> CloudMailsError | None:
    """Send ``count`` emails in one call (a batch when more than one); the error raised."""
    emails = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(count)]
    try:
        EmailBackend(**{"retry_attempts": 3, **options}).send_messages(emails)
    except CloudMailsError as error:
        return error
    return None


def rows() -> list[Delivery]:
    return list(Delivery.objects.order_by("pk"))


def test_rows_are_written_with_their_attempt_started(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script("drop", "drop", "drop")

    send()

    (row,) = rows()
    assert row.attempt_started_at == row.created_at


def test_lose_then_500_then_500_leaves_the_row_unknown_with_the_error(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script("lose", 500, 500)

    error = send()

    assert isinstance(error, CloudMailsServerError)
    assert error.outcome_unknown
    (row,) = rows()
    assert (row.status, row.error_code, row.attempts) == ("unknown", "500", 3)
    assert "500" in row.last_error
    assert row.failed_at is None
    assert len(sandbox.messages) == 1  # the API did accept it, on the first attempt


def test_lose_then_429_leaves_the_row_unknown(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script("lose", 429)

    error = send(retry_attempts=2)

    assert isinstance(error, CloudMailsRateLimited)
    (row,) = rows()
    assert (row.status, row.error_code) == ("unknown", "429")
    assert len(sandbox.messages) == 1


def test_lose_then_429_then_the_replayed_answer_is_sent_once(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script("lose", 429)

    assert send() is None

    (row,) = rows()
    (message,) = sandbox.messages
    assert (row.status, row.message_id, row.attempts) == ("sent", message.message_id, 3)


def test_drop_three_times_leaves_the_row_unknown_and_nothing_sent(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script("drop", "drop", "drop")

    error = send()

    assert isinstance(error, CloudMailsTransportError)
    (row,) = rows()
    assert (row.status, row.error_code, row.message_id) == ("unknown", "transport", None)
    assert sandbox.messages == []


def test_lose_three_times_leaves_the_row_unknown_and_one_message_accepted(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script("lose", "lose", "lose")

    send()

    (row,) = rows()
    assert (row.status, row.message_id) == ("unknown", None)
    assert len(sandbox.messages) == 1


def test_a_refusal_of_every_attempt_fails_the_row(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script(500, 503, 500)

    error = send()

    assert isinstance(error, CloudMailsServerError)
    assert not error.outcome_unknown
    (row,) = rows()
    assert (row.status, row.error_code) == ("failed", "500")
    assert row.failed_at is not None


def test_a_connection_that_never_opens_fails_the_row(
    cloudmails_settings: dict[str, Any], unused_port: int
) -> None:
    error = send(api_url=f"http://127.0.0.1:{unused_port}/v1")

    assert isinstance(error, CloudMailsTransportError)
    (row,) = rows()
    assert (row.status, row.error_code, row.attempts) == ("failed", "transport", 3)


def test_a_batch_whose_first_answer_was_lost_is_unknown_on_every_row(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    sandbox.faults.script("lose", 500, 500)

    send(3)

    assert {row.status for row in rows()} == {"unknown"}
    assert len(sandbox.messages) == 3


def test_a_batch_goes_out_in_the_order_of_its_row_ids(
    sandbox: Any, cloudmails_settings: dict[str, Any]
) -> None:
    send(5)

    (request,) = [r for r in sandbox.requests if r.path.endswith("/send/batch")]
    sent_ids = [m["custom_args"]["cloudmails_delivery_id"] for m in request.json["messages"]]
    assert sent_ids == [str(row.pk) for row in rows()]


# The Dispatcher, driven as a Celery task drives it: one try, retries of its own.


def written(count: int, *, batch: bool) -> list[list[Delivery]]:
    message = EmailMessage("Hi", "Body", None, [f"w{i}@example.com" for i in range(count)])
    new = [outbox.new_delivery(m, alias="default") for m in build_api_messages(message)]
    requests = [new] if batch else [[row] for row in new]
    outbox.assign_idempotency_keys(requests, batch=batch)
    outbox.insert(new, attempt_started=True)
    return requests


@pytest.fixture
def one_try(sandbox: Any) -> Any:
    with CloudMailsClient(API_KEY, api_url=sandbox.url) as client:
        yield client


@pytest.mark.parametrize("status", [429, 500])
def test_retry_later_hands_back_a_retryable_refusal_and_leaves_the_rows(
    sandbox: Any, one_try: Any, status: int
) -> None:
    sandbox.faults.script(status)
    requests = written(2, batch=True)
    dispatcher = dispatch.Dispatcher(one_try, retry_later=True)

    dispatcher.send(requests)

    (handed,) = dispatcher.retried
    assert [row.pk for row in handed.rows] == [row.pk for row in requests[0]]
    assert handed.retry_after == (1.0 if status == 429 else None)
    assert dispatcher.errors == []
    assert {(row.status, row.error_code) for row in rows()} == {("queued", str(status))}
    assert all(row.attempt_started_at is not None for row in rows())


def test_retry_later_stops_the_rest_of_the_call_and_hands_it_back(
    sandbox: Any, one_try: Any
) -> None:
    sandbox.faults.script(429)
    requests = written(3, batch=False)
    dispatcher = dispatch.Dispatcher(one_try, retry_later=True)

    dispatcher.send(requests)

    assert [[row.pk for row in handed.rows] for handed in dispatcher.retried] == [
        [requests[0][0].pk],
        [requests[1][0].pk, requests[2][0].pk],
    ]
    assert len(sandbox.requests) == 1
    assert {row.status for row in rows()} == {"queued"}


def test_retry_later_still_makes_an_ambiguous_outcome_unknown(sandbox: Any, one_try: Any) -> None:
    sandbox.faults.script("lose")
    requests = written(1, batch=False)
    dispatcher = dispatch.Dispatcher(one_try, retry_later=True)

    dispatcher.send(requests)

    assert dispatcher.retried == []
    assert [row.status for row in rows()] == ["unknown"]


def test_retry_later_fails_a_definite_refusal_that_cannot_be_retried(
    sandbox: Any, one_try: Any
) -> None:
    sandbox.faults.script(400)
    requests = written(1, batch=False)
    dispatcher = dispatch.Dispatcher(one_try, retry_later=True)

    dispatcher.send(requests)

    assert dispatcher.retried == []
    assert [row.status for row in rows()] == ["failed"]


def test_a_401_stops_the_single_sends_after_it_and_fails_them_unsent(sandbox: Any) -> None:
    requests = written(3, batch=False)
    with CloudMailsClient("wrong-key", api_url=sandbox.url) as client:
        dispatch.Dispatcher(client).send(requests)

    assert len(sandbox.requests) == 1
    stored = rows()
    assert {(row.status, row.error_code) for row in stored} == {("failed", "401")}
    assert sorted(row.attempts for row in stored) == [0, 0, 1]


def test_resending_keeps_a_refused_row_unknown(sandbox: Any, one_try: Any) -> None:
    requests = written(1, batch=False)
    outbox.mark_unknown(requests[0], code="transport", error="reset", attempts=1)
    sandbox.faults.script(500)
    dispatcher = dispatch.Dispatcher(one_try, resending=True)

    dispatcher.send(requests)

    (row,) = rows()
    assert (row.status, row.error_code) == ("unknown", "500")


def test_requests_of_groups_rows_by_key_in_the_order_they_went_out() -> None:
    first, second = written(2, batch=True)[0], written(1, batch=False)[0]
    stored = list(Delivery.objects.order_by("-created_at", "to_email"))

    groups = dispatch.requests_of(stored)

    assert sorted([row.pk for row in group] for group in groups) == sorted(
        [[row.pk for row in first], [row.pk for row in second]]
    )
