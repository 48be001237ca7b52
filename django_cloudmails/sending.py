"""Sending written rows from a background worker: claim them, send them, report.

Engine-free: :mod:`django_cloudmails.tasks` wraps these functions for Celery, and any
other runner (Django's Tasks framework, a management command) can call them the same way.

A worker is given row ids. It first *claims* them: a compare-and-set of
``attempt_started_at`` from NULL to now on rows still ``queued``, so of two workers given
the same ids at once only one gets each row, and a row someone claimed is never sent by
anyone else (recovery takes over rows whose claim grew old). A claim always takes whole
requests: every row sharing an Idempotency-Key, since those rows are one API request and
must go out together, in the same order, every time. Then each request goes out through
:mod:`~django_cloudmails.dispatch` (``/send`` for a request keyed for one message,
``/send/batch`` otherwise), paced by :mod:`~django_cloudmails.pacing`, and its outcome
is stored exactly as the plain backend stores it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from . import dispatch, lifecycle
from .backends import check_configuration, new_client
from .conf import app_settings, mailer_settings
from .models import Delivery
from .pacing import Pace, PacedRetry

logger = logging.getLogger("django_cloudmails.sending")

#: Rows per ``pk IN (...)``: under the 999 parameters of old SQLite builds.
ID_CHUNK = 500
#: Rows :func:`unclaimed_requests` hands back per run, by default.
REQUEUE_LIMIT = 10_000
#: How the keys of batch requests start (see ``outbox.assign_idempotency_keys``).
BATCH_KEY_PREFIX = "cloudmails-batch-"


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
    #: The claim's time (ISO 8601): a retry passes it back to own the same rows.
    claimed_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        skipped = self.given - self.claimed
        note = f" ({skipped} of the ids given were not queued or claimed elsewhere)"
        requests = f"{self.requests} request{'' if self.requests == 1 else 's'}"
        return (
            f"sent {self.sent}, failed {self.failed}, unknown {self.unknown} of "
            f"{self.claimed} rows in {requests}, {self.seconds:.3f} s"
            f"{note if skipped > 0 else ''}"
        )


@dataclass
class Claim:
    """Rows a worker claimed at ``at``, grouped as they go out (one list per request)."""

    at: datetime
    requests: list[list[Delivery]] = field(default_factory=list)

    @property
    def rows(self) -> Iterator[Delivery]:
        return (row for rows in self.requests for row in rows)


def send_deliveries(ids: Sequence[str], *, claimed_at: datetime | None = None) -> SendReport:
    """Claim the queued, unclaimed rows among ``ids`` (with the rest of their requests),
    send them and store each outcome; log one line and return the counts.

    ``claimed_at`` is for a retry of a run that claimed the rows at that time: see
    :func:`claim`. A configuration error of a row's alias raises before anything is
    claimed, so the rows stay for a later run (``recover_deliveries`` re-enqueues them).
    """
    started = time.perf_counter()
    report = SendReport(given=len(ids))
    for alias in _aliases(ids):
        check_configuration(mailer_settings(alias))
    claimed = claim(ids, owned_at=claimed_at)
    report.claimed_at = claimed.at.isoformat()
    by_alias: dict[str, list[list[Delivery]]] = defaultdict(list)
    for rows in claimed.requests:
        by_alias[rows[0].alias].append(rows)
    for alias, requests in by_alias.items():
        report.requests += _send_requests(alias, requests)
    for row in claimed.rows:
        report.claimed += 1
        if row.message_id:
            report.sent += 1
        elif row.status == lifecycle.FAILED:
            report.failed += 1
        else:
            report.unknown += 1
    report.seconds = time.perf_counter() - started
    logger.info("cloudmails: %s", report.summary())
    return report


def claim(ids: Sequence[str], *, owned_at: datetime | None = None) -> Claim:
    """Claim the queued, unclaimed rows among ``ids`` and every row of their requests.

    The candidates are locked in primary-key order (``SELECT ... FOR UPDATE``; on SQLite
    by taking the database's write lock first), then stamped in the same transaction:
    a competing claim waits, then finds them taken. Whoever locks a request's first row
    holds the whole request, so a request is never split between two workers.

    ``owned_at`` renews a claim instead (a retry of the task that made it): only rows
    still stamped with exactly that time, ``queued`` or ``unknown``, are taken, so a
    retry never sends rows that recovery took over meanwhile.
    """
    using = router.db_for_write(Delivery)
    now = timezone.now()
    rows = Delivery.objects.using(using)
    keys: set[str] = set()
    for chunk in _chunks(list(ids)):
        keys.update(rows.filter(pk__in=chunk).values_list("idempotency_key", flat=True))
    keys.discard("")  # written by something else than a backend: never ours to send
    pks: list[Any] = []
    with transaction.atomic(using=using):
        for chunk in _chunks(sorted(keys)):
            if owned_at is None:
                candidates = rows.filter(
                    idempotency_key__in=chunk,
                    status=lifecycle.QUEUED,
                    attempt_started_at__isnull=True,
                )
            else:
                candidates = rows.filter(
                    idempotency_key__in=chunk,
                    status__in=(lifecycle.QUEUED, lifecycle.UNKNOWN),
                    attempt_started_at=owned_at,
                )
            pks.extend(_lock(candidates, using))
        for chunk in _chunks(pks):
            rows.filter(pk__in=chunk).update(attempt_started_at=now, updated_at=now)
    taken: list[Delivery] = []
    for chunk in _chunks(pks):
        taken.extend(rows.filter(pk__in=chunk))
    return Claim(at=now, requests=_in_request_order(taken, ids))


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
        Delivery.objects.using(router.db_for_write(Delivery))
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


def is_batch_key(key: str) -> bool:
    """Whether rows with this Idempotency-Key go out through ``/send/batch``."""
    return key.startswith(BATCH_KEY_PREFIX)


def _send_requests(alias: str, requests: list[list[Delivery]]) -> int:
    """Send claimed requests of one alias, one at a time; return how many went out.

    Retries happen inside the client (its RetryPolicy, every attempt paced).
    """
    conf = mailer_settings(alias)
    policy = conf.retry_policy
    paced = PacedRetry(
        attempts=policy.attempts,
        backoff=policy.backoff,
        max_backoff=policy.max_backoff,
        jitter=policy.jitter,
        pace=Pace(conf.rate_limit),
    )
    with new_client(conf, retry=paced) as client:
        # Committed long before: every event finds its row by the id in custom_args.
        dispatcher = dispatch.Dispatcher(client, link_orphans=False)
        for rows in requests:
            client.retry = replace(paced, messages=len(rows))
            if is_batch_key(rows[0].idempotency_key):
                dispatcher.send_batches([rows])
            else:
                dispatcher.send_one(rows[0])
    for error in dispatcher.errors:
        logger.warning("cloudmails: %s", error)
    return len(requests)


def _aliases(ids: Sequence[str]) -> set[str]:
    aliases: set[str] = set()
    rows = Delivery.objects.using(router.db_for_write(Delivery))
    for chunk in _chunks(list(ids)):
        aliases.update(rows.filter(pk__in=chunk).values_list("alias", flat=True).distinct())
    return aliases


def _lock(candidates: QuerySet[Delivery], using: str) -> list[Any]:
    """The primary keys of ``candidates``, locked until the transaction ends."""
    if connections[using].features.has_select_for_update:
        return list(candidates.select_for_update().order_by("pk").values_list("pk", flat=True))
    # SQLite locks the whole database for a write, and a transaction that reads first
    # and writes later may fail to upgrade: write first (nothing changes), then read.
    candidates.update(attempt_started_at=F("attempt_started_at"))
    return list(candidates.values_list("pk", flat=True))


def _in_request_order(rows: list[Delivery], ids: Sequence[str]) -> list[list[Delivery]]:
    """Rows grouped by Idempotency-Key, each group and each row in the order of ``ids``
    (the order they were written in); rows not among ``ids`` follow, by primary key."""
    position = {str(uuid.UUID(str(pk))): index for index, pk in enumerate(ids)}
    last = len(position)

    def order(row: Delivery) -> tuple[int, str]:
        return position.get(str(row.pk), last), str(row.pk)

    groups: dict[str, list[Delivery]] = defaultdict(list)
    for row in sorted(rows, key=order):
        groups[row.idempotency_key].append(row)
    return list(groups.values())


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), ID_CHUNK):
        yield values[start : start + ID_CHUNK]
