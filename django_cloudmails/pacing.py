"""The pace of background sending, shared by every worker on every machine.

``RATE_LIMIT`` (messages per second) holds for all workers together, and a 429 from the
API slows all of them down, not only the one that got it. Both live in one database row
(:class:`~django_cloudmails.models.SendingPace`): the earliest time the next request may
go out. The database, not Redis, because every worker shares it whatever the broker
(kombu's filesystem transport, Redis, RabbitMQ), and because it costs one UPDATE per API
request, never per message. Its clock is the database's, so machines whose clocks
disagree still share one pace.

A request of ``n`` messages may go out once ``not_before`` has passed; going out moves
``not_before`` to now + ``n / RATE_LIMIT`` in the same conditional UPDATE, so two workers
can never book the same moment (a generic cell rate algorithm without burst). A 429 with
``Retry-After: s`` moves it to at least now + ``s``. In any one-second window the API then
sees at most ``RATE_LIMIT`` messages plus one request's worth, so with a limit set a
request carries at most ``RATE_LIMIT / 50`` messages (:func:`request_size`): 2% over the
limit at worst, whatever ``BATCH_SIZE`` is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from django.db import router
from django.db.models import F
from django.db.models.functions import Greatest, Now

from .conf import CloudMailsSettings
from .exceptions import CloudMailsRateLimited
from .models import SendingPace
from .retry import RetryPolicy

T = TypeVar("T")

#: With RATE_LIMIT set, a request carries at most RATE_LIMIT / SPREAD messages, so the
#: limit is spread over about this many requests a second.
SPREAD = 50
#: The longest a waiting worker sleeps before looking at the pace again.
MAX_NAP = 1.0
#: The pace of every sender; one name, as RATE_LIMIT is one setting.
DEFAULT_NAME = "send"
_LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


def request_size(conf: CloudMailsSettings) -> int:
    """Messages per API request: ``BATCH_SIZE``, at most ``RATE_LIMIT / SPREAD``."""
    size = conf.batch_size
    rate = conf.rate_limit
    if rate:
        size = min(size, max(1, int(rate // SPREAD)))
    return size


class Pace:
    """The shared pace of sending at ``rate`` messages per second (None: no limit, but a
    429 still holds everyone)."""

    def __init__(
        self,
        rate: float | None,
        *,
        name: str = DEFAULT_NAME,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.name = name
        self.sleep = sleep
        self._ready = False

    def acquire(self, messages: int) -> None:
        """Wait until a request of ``messages`` may go out, and book its time."""
        rows = self._rows()
        if not self.rate:
            while (wait := self._wait()) > 0:
                self.sleep(min(wait, MAX_NAP))
            return
        cost = timedelta(seconds=messages / self.rate)
        while not rows.filter(not_before__lte=Now()).update(not_before=Now() + cost):
            self.sleep(min(max(self._wait(), 0.001), MAX_NAP))

    def hold(self, seconds: float) -> None:
        """No request goes out for ``seconds`` from now, from any worker."""
        if seconds > 0:
            self._rows().update(
                not_before=Greatest(F("not_before"), Now() + timedelta(seconds=seconds))
            )

    def _wait(self) -> float:
        """Seconds until ``not_before``, by the database's clock (<= 0: now)."""
        found = self._rows().annotate(now=Now()).values_list("not_before", "now").first()
        if found is None:
            return 0.0
        not_before, now = found
        return float((not_before - now).total_seconds())

    def _rows(self) -> Any:
        using = router.db_for_write(SendingPace)
        rows = SendingPace.objects.using(using).filter(name=self.name)
        if not self._ready:
            SendingPace.objects.using(using).get_or_create(
                name=self.name, defaults={"not_before": _LONG_AGO}
            )
            self._ready = True
        return rows


@dataclass(frozen=True)
class PacedRetry(RetryPolicy):
    """A retry policy whose every attempt (the first and each retry) waits for the
    shared pace, and whose 429s hold every worker for the ``Retry-After``.

    ``messages`` is what one attempt costs: the size of the request it retries.
    """

    pace: Pace | None = None
    messages: int = 1

    def call(self, request: Callable[[], T]) -> tuple[T, int]:
        pace, messages = self.pace, self.messages
        if pace is None:
            return super().call(request)

        def paced() -> T:
            pace.acquire(messages)
            try:
                return request()
            except CloudMailsRateLimited as error:
                pace.hold(self.delay(1, error))
                raise

        return super().call(paced)
