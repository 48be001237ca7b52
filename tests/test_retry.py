"""RetryPolicy: which errors are retried, and how long it waits."""

from __future__ import annotations

import pytest

from django_cloudmails.exceptions import (
    CloudMailsInvalidRequest,
    CloudMailsRateLimited,
    CloudMailsServerError,
    CloudMailsTransportError,
)
from django_cloudmails.retry import RetryPolicy


def failing(*errors: Exception) -> object:
    queue = list(errors)

    def request() -> str:
        if queue:
            raise queue.pop(0)
        return "ok"

    return request


def test_success_on_first_try_makes_one_attempt() -> None:
    assert RetryPolicy().call(lambda: "ok") == ("ok", 1)


def test_backoff_doubles_without_jitter() -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=4, backoff=1.0, jitter=False, sleep=waits.append)
    request = failing(*(CloudMailsServerError("boom") for _ in range(3)))

    assert policy.call(request) == ("ok", 4)
    assert waits == [1.0, 2.0, 4.0]


def test_jitter_stays_within_the_ceiling() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=10.0)
    delays = [policy.delay(3, CloudMailsTransportError("x")) for _ in range(200)]

    assert all(0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0, jitter=False)

    assert policy.delay(10, CloudMailsServerError("x")) == 5.0


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_backoff=5.0)

    assert policy.delay(1, CloudMailsRateLimited("slow", retry_after=2)) == 2.0
    assert policy.delay(1, CloudMailsRateLimited("slow", retry_after=60)) == 5.0


def test_rate_limit_without_retry_after_backs_off() -> None:
    policy = RetryPolicy(backoff=1.0, jitter=False)

    assert policy.delay(2, CloudMailsRateLimited("slow")) == 2.0


def test_non_retryable_error_is_raised_at_once() -> None:
    waits: list[float] = []
    policy = RetryPolicy(sleep=waits.append)
    with pytest.raises(CloudMailsInvalidRequest) as raised:
        policy.call(failing(CloudMailsInvalidRequest("bad")))

    assert raised.value.attempts == 1
    assert waits == []


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
