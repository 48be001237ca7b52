"""Status polling: ask the API (``GET /emails/{id}``) about rows whose fate it knows better.

Webhooks get lost, and some fates send none (``deferred@``, ``reject@``): the API's own
answer is the truth events only hasten. :func:`poll` asks about rows not yet final
(``sent``, ``deferred``, ``unknown`` with a message id), oldest first, each on its own
backoff schedule (``POLL_SCHEDULE``, the last delay repeating) until ``POLL_MAX_AGE``;
with ``POLL_ENGAGEMENT_FOR`` delivered rows younger than that are asked about too, at
most hourly, because opens and clicks come after delivery. :func:`refresh` asks about
given rows now, whatever their schedule.

Answers go through the lifecycle (:data:`lifecycle.POLLED`): a poll never moves a row
back; ``delivered_at`` is the API's; ``opens``/``clicks`` keep the higher of the row's
and the API's. They are written in bulk, one statement per chunk of rows, together with
each row's next poll. A bounce the API reports is recorded as a ``bounced`` event
(:func:`recording.record_event`, dedupe key ``poll:<message id>:bounced``, type hard,
the API's reason), so it suppresses and signals exactly as a bounce webhook does, and
``email_bounced`` fires once per Delivery whichever of the two came first.

The requests run in ``POLL_CONCURRENCY`` threads, each with its own client and pooled
connection; the database is used from the calling thread only, while the next chunk's
requests are on the wire. A 429 ends the run early: no further request goes out, and
the report carries the API's ``Retry-After``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from . import lifecycle, recording, updates
from .client import CloudMailsClient, EmailStatus
from .conf import CloudMailsSettings, app_settings, mailer_settings
from .exceptions import CloudMailsError, CloudMailsNotFound, CloudMailsRateLimited
from .lifecycle import Effect, increment, set_to
from .limits import ROWS_PER_STATEMENT
from .models import Delivery, delivery_database
from .webhooks import ParsedEvent

#: Delivered rows inside the engagement window are polled at most this often (seconds).
ENGAGEMENT_INTERVAL = 3600.0

#: A poll's answer, and the row's next poll.
POLL_WRITE = Effect((*lifecycle.POLLED.rules, set_to("next_poll_at"), increment("polls")))

_FIELDS = ("pk", "message_id", "status", "alias", "polls", "to_email")


@dataclass(frozen=True)
class _Row:
    pk: Any
    message_id: str
    status: str
    alias: str
    polls: int
    to_email: str


@dataclass
class PollReport:
    """What one run did."""

    #: Rows asked about (answered or not).
    polled: int = 0
    #: Rows whose status the answer moved forward (bounces included).
    advanced: int = 0
    #: Bounces found, recorded as events (not those already known from a webhook).
    bounced: int = 0
    #: Messages the API does not know (404).
    not_found: int = 0
    #: Requests that failed otherwise (timeouts, 5xx); the row is polled again later.
    errors: int = 0
    #: Rows given to :func:`refresh` without a message id (nothing to ask about).
    skipped: int = 0
    #: The API answered 429: the run stopped early.
    rate_limited: bool = False
    #: Seconds the API asked to wait before the next run (with ``rate_limited``).
    retry_after: float | None = None
    #: From :func:`refresh`, each row asked about by primary key: None when the API gave
    #: its status, else the error it answered with. Rows not in it were not asked.
    answers: dict[Any, CloudMailsError | None] = field(default_factory=dict)


def poll(*, limit: int | None = None, ignore_schedule: bool = False) -> PollReport:
    """Poll the rows that are due, oldest first; at most ``limit`` of them.

    ``ignore_schedule`` polls every row that is not final (and, with
    ``POLL_ENGAGEMENT_FOR``, every delivered row inside the window) now.
    """
    now = timezone.now()
    using = delivery_database()
    pending = Q(status__in=lifecycle.PENDING) & Q(
        created_at__gt=now - timedelta(seconds=app_settings.poll_max_age)
    )
    engagement = app_settings.poll_engagement_for
    if engagement > 0:
        pending |= Q(status=lifecycle.DELIVERED) & Q(
            created_at__gt=now - timedelta(seconds=engagement)
        )
    wanted = Q(message_id__isnull=False) & pending
    if not ignore_schedule:
        first = timedelta(seconds=app_settings.poll_schedule[0])
        wanted &= Q(next_poll_at__lte=now) | Q(
            next_poll_at__isnull=True, created_at__lte=now - first
        )
    rows = Delivery.objects.using(using).filter(wanted).order_by("created_at")
    found = rows.values_list(*_FIELDS)
    rows = [_Row(*values) for values in (found if limit is None else found[:limit])]
    return _poll(rows, PollReport(), detailed=False)


def refresh(deliveries: Iterable[Delivery | Any]) -> PollReport:
    """Poll these rows now, whatever their status and schedule (Delivery objects or
    primary keys); rows without a message id are skipped."""
    pks = [item.pk if isinstance(item, Delivery) else item for item in deliveries]
    rows: list[_Row] = []
    for start in range(0, len(pks), ROWS_PER_STATEMENT):
        chunk = Delivery.objects.using(delivery_database()).filter(
            pk__in=pks[start : start + ROWS_PER_STATEMENT], message_id__isnull=False
        )
        rows.extend(_Row(*values) for values in chunk.order_by("created_at").values_list(*_FIELDS))
    report = _poll(rows, PollReport(), detailed=True)
    report.skipped = len(pks) - len(rows)
    return report


def _poll(rows: Sequence[_Row], report: PollReport, *, detailed: bool) -> PollReport:
    """Ask about ``rows``; ``detailed`` fills ``report.answers`` (a few rows, not a run)."""
    by_alias: dict[str, list[_Row]] = {}
    for row in rows:
        by_alias.setdefault(row.alias, []).append(row)
    for alias, own in by_alias.items():
        _Run(mailer_settings(alias), report, detailed).run(own)
        if report.rate_limited:
            break
    return report


Answer = EmailStatus | CloudMailsError | None


class _Run:
    """One alias's rows: requests in threads, answers written on this thread."""

    def __init__(self, conf: CloudMailsSettings, report: PollReport, detailed: bool) -> None:
        self.conf = conf
        self.report = report
        self.detailed = detailed
        self.stopped = threading.Event()
        self.local = threading.local()
        self.clients: list[CloudMailsClient] = []
        self.lock = threading.Lock()

    def run(self, rows: Sequence[_Row]) -> None:
        """Ask about ``rows``; the requests of the next chunk are queued before this
        chunk's answers are awaited, so the threads never wait for the database."""
        self.conf.client().close()  # a missing API key fails here, on this thread
        chunks = [rows[i : i + ROWS_PER_STATEMENT] for i in range(0, len(rows), ROWS_PER_STATEMENT)]
        workers = min(self.conf.poll_concurrency, len(rows)) or 1
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="cloudmails-poll") as pool:
                queued = [self._submit(pool, chunk) for chunk in chunks[:1]]
                for position, chunk in enumerate(chunks):
                    if position + 1 < len(chunks) and not self.stopped.is_set():
                        queued.append(self._submit(pool, chunks[position + 1]))
                    if not queued:
                        break  # stopped by a 429: the rest was never asked about
                    self._store(chunk, [future.result() for future in queued.pop(0)])
        finally:
            for client in self.clients:
                client.close()

    def _submit(self, pool: ThreadPoolExecutor, chunk: Sequence[_Row]) -> list[Future[Answer]]:
        return [pool.submit(self._ask, row.message_id) for row in chunk]

    def _client(self) -> CloudMailsClient:
        client: CloudMailsClient | None = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = self.conf.client()
            with self.lock:
                self.clients.append(client)
        return client

    def _ask(self, message_id: str) -> Answer:
        """One request, in a worker thread; None once a 429 stopped the run."""
        if self.stopped.is_set():
            return None
        try:
            return self._client().get_email(message_id)
        except CloudMailsRateLimited as error:
            self.stopped.set()
            return error
        except CloudMailsError as error:
            return error

    def _store(self, chunk: Sequence[_Row], answers: Sequence[Answer]) -> None:
        """Write one chunk's answers in one statement; record the bounces found."""
        now = timezone.now()
        report = self.report
        writes: list[tuple[Any, dict[str, Any]]] = []
        bounces: list[tuple[_Row, EmailStatus]] = []
        for row, answer in zip(chunk, answers, strict=True):
            if answer is None:
                continue  # not asked: stays due
            if isinstance(answer, CloudMailsRateLimited):
                report.rate_limited = True
                report.retry_after = answer.retry_after
                continue
            report.polled += 1
            if self.detailed:
                report.answers[row.pk] = answer if isinstance(answer, CloudMailsError) else None
            status = None
            if isinstance(answer, EmailStatus):
                status = answer.status if answer.status in lifecycle.RANK else None
                if status == lifecycle.BOUNCED:
                    bounces.append((row, answer))
                    status = None  # recorded as an event below
                elif lifecycle.advance(row.status, status) != row.status:
                    report.advanced += 1
            elif isinstance(answer, CloudMailsNotFound):
                report.not_found += 1
            else:
                report.errors += 1
            writes.append((row.pk, self._inputs(row, answer, status, now)))
        updates.update_rows(POLL_WRITE, writes, using=delivery_database(), now=now)
        for row, answer in bounces:
            if row.status != lifecycle.BOUNCED and _record_bounce(row, answer, now):
                report.bounced += 1
                report.advanced += 1

    def _inputs(
        self, row: _Row, answer: Answer, status: str | None, now: datetime
    ) -> dict[str, Any]:
        after = lifecycle.advance(row.status, status)
        known = answer if isinstance(answer, EmailStatus) else None
        return {
            "status": status,
            "delivered_at": known.delivered_at if known else None,
            "failed_at": now if status == lifecycle.FAILED else None,
            "opens": known.opens if known else None,
            "clicks": known.clicks if known else None,
            "next_poll_at": self._next_poll(row.polls + 1, after, now),
        }

    def _next_poll(self, polls: int, status: str, now: datetime) -> datetime | None:
        """When to ask again after ``polls`` polls of a row now in ``status``."""
        if status not in (*lifecycle.PENDING, lifecycle.DELIVERED):
            return None  # final: never polled again
        schedule = self.conf.poll_schedule
        delay = schedule[min(polls, len(schedule) - 1)]
        if status == lifecycle.DELIVERED:
            delay = max(delay, ENGAGEMENT_INTERVAL)
        return now + timedelta(seconds=delay)


def _record_bounce(row: _Row, answer: EmailStatus, now: datetime) -> bool:
    """Record the bounce a poll found as a ``bounced`` event; False if already known."""
    reason = answer.bounce_reason or ""
    raw = {
        "event": lifecycle.EVENT_BOUNCED,
        "message_id": row.message_id,
        "recipient": row.to_email,
        "bounce_reason": reason,
        "source": "poll",
    }
    event = ParsedEvent(
        event=lifecycle.EVENT_BOUNCED,
        message_id=row.message_id,
        occurred_at=now,
        recipient=row.to_email,
        dedupe_key=f"poll:{row.message_id}:bounced"[:128],
        raw=raw,
        delivery_ref=row.pk,
        bounce_type="hard",
        bounce_reason=reason,
    )
    return recording.record_event(event, using=delivery_database()) is not None
