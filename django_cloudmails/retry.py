"""When and how long to wait before repeating a failed API request.

On 429 the API's ``Retry-After`` is honoured; otherwise, and for 5xx and transport
errors, the wait grows exponentially with full jitter so that many clients failing
together do not retry in step. Other errors are never retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .exceptions import CloudMailsError, CloudMailsRateLimited

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a request, and how long to wait in between."""

    #: Total tries, the first one included; 1 disables retrying.
    attempts: int = 3
    #: First wait in seconds; doubled for each further retry.
    backoff: float = 0.5
    #: Longest wait in seconds, ``Retry-After`` included.
    max_backoff: float = 30.0
    #: Spread waits randomly over [0, backoff * 2**n] ("full jitter").
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1.")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("RetryPolicy waits must not be negative.")

    def delay(self, retry: int, error: CloudMailsError) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if isinstance(error, CloudMailsRateLimited) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_backoff)
        ceiling = min(self.backoff * 2 ** (retry - 1), self.max_backoff)
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def call(self, request: Callable[[], T]) -> tuple[T, int]:
        """Run ``request`` until it succeeds or retrying cannot help.

        Returns the result and the number of attempts made. The last error is re-raised
        with its ``attempts`` set, and ``outcome_unknown`` when any attempt was
        ambiguous (a later definite refusal does not undo that the API may have acted).
        """
        attempt = 1
        unknown = False
        while True:
            try:
                return request(), attempt
            except CloudMailsError as error:
                error.attempts = attempt
                unknown = unknown or error.ambiguous
                error.outcome_unknown = unknown
                if not error.retryable or attempt >= self.attempts:
                    raise
                self.sleep(self.delay(attempt, error))
                attempt += 1


#: One try only: for callers that schedule their own retries (Celery tasks).
NO_RETRY = RetryPolicy(attempts=1)
