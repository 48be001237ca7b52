"""Sending written rows from a background worker: claim them, send them, report.

Engine-free: :mod:`django_cloudmails.tasks` wraps these functions for Celery, and any
other runner (Django's Tasks framework, a management command) can call them the same way.

A worker is given row ids. It claims them (:func:`claims.claim`: whole requests, only
rows nobody claimed), then sends each request through :mod:`~django_cloudmails.dispatch`
(``/send`` for a request keyed for one message, ``/send/batch`` otherwise), one at a
time: each request is held (:meth:`claims.Claim.hold`) right before it goes out and
every attempt waits for the shared pace (:mod:`~django_cloudmails.pacing`). Outcomes are
stored exactly as the plain backend stores them.

Retries belong to the caller (a Celery retry of the task): the client tries once, and a
definite retryable refusal (429, 5xx, a connection that never opened) leaves its rows
``queued`` and claimed, and stops the run; those rows and the requests not tried yet are
handed back in :attr:`SendReport.retry_ids`, with the claim time a retry must own
(``claimed_at``) and how long to wait (``retry_in``: the API's ``Retry-After``, else
exponential backoff with full jitter from ``RETRY_BACKOFF`` up to ``RETRY_MAX_BACKOFF``).
The run that makes a request's ``RETRY_ATTEMPTS``-th attempt hands nothing back: a
refusal then fails the rows. An attempt that may have reached the API leaves its rows
``unknown`` at any attempt, never retried here: recovery settles them.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from . import claims, dispatch, lifecycle
from .conf import CloudMailsSettings, app_settings, mailer_settings
from .limits import statement_chunks
from .models import Delivery, delivery_database
from .pacing import Pace, PacedRetry

logger = logging.getLogger("django_cloudmails.sending")

#: Rows :func:`unclaimed_requests` hands back per run, by default.
REQUEUE_LIMIT = 10_000


@dataclass
class SendReport:
    """What one :func:`send_deliveries` call did; its log line is :meth:`summary`."""

    given: int = 0
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    #: Claimed rows with neither a message id nor a refusal: the API may have them.
    unknown: int = 0
    requests: int = 0
    seconds: float = 0.0
    #: Which attempt of the rows this run was (1: the first).
    attempt: int = 1
    #: The claim's time (ISO 8601): a retry passes it back to own the same rows.
    claimed_at: str = ""
    #: Rows handed back for a retry, and the seconds it should wait.
    retry_ids: list[str] = field(default_factory=list)
    retry_in: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        skipped = self.given - self.claimed
        note = f" ({skipped} of the ids given were not queued or claimed elsewhere)"
        requests = f"{self.requests} request{'' if self.requests == 1 else 's'}"
        retry = f"; {len(self.retry_ids)} to retry in {self.retry_in:.2f} s"
        return (
            f"sent {self.sent}, failed {self.failed}, unknown {self.unknown} of "
            f"{self.claimed} rows in {requests}, {self.seconds:.3f} s"
            f"{note if skipped > 0 else ''}{retry if self.retry_ids else ''}"
        )


def send_deliveries(
    ids: Sequence[str], *, claimed_at: datetime | None = None, attempt: int = 1
) -> SendReport:
    """Claim the queued, unclaimed rows among ``ids`` (with the rest of their requests),
    send them and store each outcome; log one line and return the counts.

    A retry passes ``claimed_at`` (the claim it owns: see :func:`claims.renew`) and its
    ``attempt`` number (2 for the first retry). A configuration error of a row's alias
    raises before anything is claimed, so the rows stay for a later run
    (``recover_deliveries`` re-enqueues them).
    """
    started = time.perf_counter()
    report = SendReport(given=len(ids), attempt=attempt)
    for alias in _aliases(ids):
        mailer_settings(alias).check()
    claim = claims.claim(ids) if claimed_at is None else claims.renew(ids, owned_at=claimed_at)
    report.claimed_at = claim.at.isoformat()
    handed_back: list[Delivery] = []
    for alias, requests in dispatch.by_alias(claim.requests).items():
        conf = mailer_settings(alias)
        policy = conf.retry_policy
        dispatcher, requests_sent = send_claimed(
            claim,
            requests,
            conf,
            attempts=1,
            link_orphans=False,  # committed long before: events find rows by their id
            retry_later=attempt < policy.attempts,
        )
        report.requests += requests_sent
        for later in dispatcher.retried:
            handed_back.extend(later.rows)
            report.retry_in = max(report.retry_in, policy.delay(attempt, later.error))
    if handed_back:
        at, owned = claim.hand_back(handed_back)
        report.claimed_at = at.isoformat()
        report.retry_ids = [str(row.pk) for row in owned]
    retrying = set(report.retry_ids)
    for row in claim.rows:
        report.claimed += 1
        if row.message_id:
            report.sent += 1
        elif row.status == lifecycle.FAILED:
            report.failed += 1
        elif str(row.pk) not in retrying:
            report.unknown += 1
    report.seconds = time.perf_counter() - started
    logger.info("cloudmails: %s", report.summary())
    return report


def send_claimed(
    claim: claims.Claim,
    requests: list[list[Delivery]],
    conf: CloudMailsSettings,
    *,
    attempts: int,
    **options: Any,
) -> tuple[dispatch.Dispatcher, int]:
    """Send ``claim``'s ``requests`` (of one alias, whose settings are ``conf``) one at a
    time, ``attempts`` tries each inside the client, and store their outcomes.

    Each request is held right before it goes out (one taken over meanwhile is skipped);
    every attempt waits for the shared pace and books its messages, and a 429 holds
    every sender for its ``Retry-After``. ``options`` go to the
    :class:`~.dispatch.Dispatcher`. Returns it and how many requests went out.
    """
    policy = conf.retry_policy
    paced = PacedRetry(
        attempts=attempts,
        backoff=policy.backoff,
        max_backoff=policy.max_backoff,
        jitter=policy.jitter,
        pace=Pace(conf.rate_limit),
    )
    with conf.client(paced) as client:
        dispatcher = dispatch.Dispatcher(client, **options)

        def before(request: list[Delivery]) -> bool:
            if not claim.hold(request):
                return False
            client.retry = replace(paced, messages=len(request))
            return True

        sent = dispatcher.send_each(requests, before=before)
    for error in dispatcher.errors:
        logger.warning("cloudmails: %s", error)
    return dispatcher, sent


def unclaimed_requests(
    *, older_than: float | None = None, limit: int = REQUEUE_LIMIT
) -> list[list[str]]:
    """Ids of rows written but never claimed for ``older_than`` seconds (default
    ``RECOVER_AFTER``), in lists of at most ``BATCH_SIZE``: their task was lost.

    A broker can lose a task (kombu's filesystem transport deletes a message when a
    worker fetches it, so a worker killed with SIGKILL takes its prefetched tasks with
    it), and an enqueue can fail after the commit. Handing such rows to a worker again
    is harmless even if their task is only late: the claim lets one send them.
    """
    age = app_settings.recover_after if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=age)
    found = (
        Delivery.objects.using(delivery_database())
        .filter(status=lifecycle.QUEUED, attempt_started_at__isnull=True, created_at__lt=cutoff)
        .exclude(idempotency_key="")
        .order_by("created_at", "idempotency_key")
        .values_list("pk", "idempotency_key")[:limit]
    )
    requests: dict[str, list[str]] = defaultdict(list)
    for pk, key in found:
        requests[key].append(str(pk))
    return task_ids(requests.values(), app_settings.batch_size)


def task_ids(requests: Iterable[Sequence[Any]], size: int) -> list[list[str]]:
    """The ids of each task for rows grouped as requests (rows or ids): whole requests,
    at most ``size`` rows a task (a larger request is a task of its own)."""
    tasks: list[list[str]] = []
    current: list[str] = []
    for rows in requests:
        if current and len(current) + len(rows) > size:
            tasks.append(current)
            current = []
        current.extend(str(getattr(row, "pk", row)) for row in rows)
    if current:
        tasks.append(current)
    return tasks


def _aliases(ids: Sequence[str]) -> set[str]:
    aliases: set[str] = set()
    rows = Delivery.objects.using(delivery_database())
    for chunk in statement_chunks(list(ids)):
        aliases.update(rows.filter(pk__in=chunk).values_list("alias", flat=True).distinct())
    return aliases
