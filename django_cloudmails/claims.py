"""Claims: which sender may send a row now.

A row goes out only in a request its sender claimed, and every claim is a
compare-and-set of ``attempt_started_at`` (the time the claim was made or last renewed):

- :func:`claim`, a worker's first claim: empty -> now, on rows still ``queued``;
- :func:`renew`, a retry of the run that made claim T (a Celery retry): T -> now;
- :meth:`Claim.hold`, the holder, right before each further request of a run: the time
  it last stamped -> now;
- :func:`take_over`, recovery: a claim older than the cutoff -> now, the rows becoming
  ``unknown`` with ``recoveries`` counted (:data:`lifecycle.RECOVERING`).

Each is one transaction that locks its rows in primary-key order first (``SELECT ... FOR
UPDATE``; on SQLite the database's write lock, taken by an UPDATE that comes first, as a
transaction that reads first may fail to upgrade), so two claimers queue instead of
deadlocking and the later one finds the rows taken. A claim takes whole requests: the
rows sharing an Idempotency-Key go out together, in the order the key was computed from.

The lease rule, one for every sender: a claim lasts while its holder renews it. Recovery
takes over a claim only once it is older than the cutoff (``RECOVER_AFTER``, or
``older_than``), and a claim recovery made only once it is also older than
:data:`LEASE`, whatever ``older_than`` says. A holder renews its claim before every
further request of a run, so a long run (a rate-limited task, a large recovery) is not
taken over while it still sends, and never sends a request someone took over meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from . import dispatch, lifecycle, updates
from .limits import statement_chunks
from .models import Delivery, delivery_database

#: Seconds a claim recovery made stays exclusive whatever ``older_than`` says: a resend,
#: its retries included, fits in it.
LEASE = 120.0
#: The statuses of a row someone may hold a claim on: not sent yet, or outcome unknown.
CLAIMABLE = (lifecycle.QUEUED, lifecycle.UNKNOWN)


class Claim:
    """Rows a sender holds since ``at``, grouped as the requests they go out in."""

    def __init__(
        self, at: datetime, requests: list[list[Delivery]], held: set[Any] | None = None
    ) -> None:
        self.at = at
        self.requests = requests
        #: Primary keys of the rows this sender still holds.
        self.held = {row.pk for row in self.rows} if held is None else held
        self._fresh = True

    @property
    def rows(self) -> Iterator[Delivery]:
        return (row for rows in self.requests for row in rows)

    def hold(self, request: Sequence[Delivery]) -> bool:
        """Whether ``request`` is still ours, right before it goes out.

        The first request of a claim goes out on the claim just made; each later one
        renews its rows' claim first (compare-and-set on the time we stamped), so a
        request someone took over meanwhile is not sent, and ours stays young.
        """
        rows = [row for row in request if row.pk in self.held]
        if self._fresh:
            self._fresh = False
            return bool(rows)
        now = timezone.now()
        kept = _stamp(rows, _claim_values(now), now=now, whole=True)
        if not kept:
            self.release(row.pk for row in rows)
        return bool(kept)

    def release(self, pks: Any) -> None:
        """Stop holding these rows (settled otherwise, or lost to another sender)."""
        self.held.difference_update(pks)

    def hand_back(self, rows: Sequence[Delivery]) -> tuple[datetime, list[Delivery]]:
        """The claim time a retry must own to send ``rows`` again, and those of them it
        will own: their time when they share one (no request of this run was renewed),
        else all renewed to one new time."""
        rows = [row for row in rows if row.pk in self.held]
        stamps = {row.attempt_started_at for row in rows}
        if len(stamps) == 1:
            (at,) = stamps
            if at is not None:
                return at, rows
        now = timezone.now()
        return now, _stamp(rows, _claim_values(now), now=now, statuses=(lifecycle.QUEUED,))


def claim(ids: Sequence[str]) -> Claim:
    """Claim the queued, unclaimed rows among ``ids`` and every row of their requests.

    Requests come in the order of ``ids``, each request's rows in the order its key was
    computed from (:func:`dispatch.requests_of`). Whoever locks a request's first row
    holds the whole request, so a request is never split between two workers.
    """
    now = timezone.now()
    unclaimed = Q(status=lifecycle.QUEUED, attempt_started_at__isnull=True)
    rows = _rows_of_requests(ids, unclaimed)
    taken = _stamp(rows, _claim_values(now), now=now, statuses=(lifecycle.QUEUED,))
    return Claim(now, dispatch.requests_of(taken))


def renew(ids: Sequence[str], *, owned_at: datetime) -> Claim:
    """Renew the claim made at ``owned_at`` on the rows among ``ids`` (and the rest of
    their requests): only rows still ``queued`` and stamped with exactly that time, so
    a retry never sends rows recovery took over meanwhile."""
    now = timezone.now()
    owned = Q(status=lifecycle.QUEUED, attempt_started_at=owned_at)
    rows = _rows_of_requests(ids, owned)
    taken = _stamp(rows, _claim_values(now), now=now, statuses=(lifecycle.QUEUED,))
    return Claim(now, dispatch.requests_of(taken))


def take_over(request: Sequence[Delivery], cutoff: datetime, now: datetime) -> list[Any] | None:
    """Recovery's claim on every unsettled row of ``request`` (a whole request, as read);
    their primary keys, or None if any of them is not old enough or someone changed it
    since it was read (a worker, or a concurrent run whose cutoff our claim would pass)."""
    unsettled = [row for row in request if row.message_id is None and row.status in CLAIMABLE]
    if not unsettled or not all(_old(row, cutoff, now) for row in unsettled):
        return None
    values = updates.orm_values(lifecycle.RECOVERING, now=now)
    if not _stamp(unsettled, values, now=now, whole=True):
        return None
    for row in unsettled:
        row.status = lifecycle.advance(row.status, lifecycle.UNKNOWN)
    return [row.pk for row in unsettled]


def claimable(cutoff: datetime, now: datetime) -> Q:
    """Rows recovery may take over: no message id, outcome unknown (``unknown``, or
    ``queued`` with a claim), the claim older than ``cutoff`` and, when recovery made
    it, older than :data:`LEASE`; ``unknown`` rows never claimed at all too."""
    lease = now - timedelta(seconds=LEASE)
    started = Q(attempt_started_at__lt=cutoff) & (Q(recoveries=0) | Q(attempt_started_at__lt=lease))
    never = Q(status=lifecycle.UNKNOWN, attempt_started_at__isnull=True)
    return Q(message_id__isnull=True, status__in=CLAIMABLE) & (started | never)


def _old(row: Delivery, cutoff: datetime, now: datetime) -> bool:
    """The in-memory twin of :func:`claimable`'s age condition."""
    started = row.attempt_started_at
    if started is None:
        return row.status == lifecycle.UNKNOWN
    lease = now - timedelta(seconds=LEASE)
    return started < cutoff and (row.recoveries == 0 or started < lease)


def _claim_values(now: datetime) -> dict[str, Any]:
    return {"attempt_started_at": now, "updated_at": now}


def _rows_of_requests(ids: Sequence[str], condition: Q) -> list[Delivery]:
    """The rows matching ``condition`` of the requests of ``ids``, requests in the order
    of ``ids``. Rows without an Idempotency-Key were written by something else than a
    backend: never ours to send."""
    rows = Delivery.objects.using(delivery_database())
    keys: dict[str, None] = {}
    for chunk in statement_chunks(list(ids)):
        found = {
            str(pk): key
            for pk, key in rows.filter(pk__in=chunk).values_list("pk", "idempotency_key")
        }
        for pk in chunk:
            key = found.get(str(uuid.UUID(str(pk))))
            if key:
                keys.setdefault(key, None)
    by_key: dict[str, list[Delivery]] = {key: [] for key in keys}
    for chunk in statement_chunks(list(keys)):
        for row in rows.filter(condition, idempotency_key__in=chunk):
            by_key[row.idempotency_key].append(row)
    return [row for requests in by_key.values() for row in requests]


def _stamp(
    rows: Sequence[Delivery],
    values: dict[str, Any],
    *,
    now: datetime,
    statuses: tuple[str, ...] = CLAIMABLE,
    whole: bool = False,
) -> list[Delivery]:
    """Apply ``values`` (a claim stamped ``now``) to those of ``rows`` nobody changed
    since we read or stamped them: the same ``attempt_started_at``, a status among
    ``statuses``, no message id. ``whole``: all of them or none. Returns those stamped.

    The rows are locked in primary-key order, in statements of a bounded size, in one
    transaction; the stamp is written once all are locked.
    """
    if not rows:
        return []
    using = delivery_database()
    taken: list[Any] = []
    with transaction.atomic(using=using):
        for chunk in statement_chunks(sorted(rows, key=_pk)):
            by_stamp: dict[datetime | None, list[Any]] = {}
            for row in chunk:
                by_stamp.setdefault(row.attempt_started_at, []).append(row.pk)
            unchanged = Q()
            for stamp, pks in by_stamp.items():
                same = (
                    Q(attempt_started_at__isnull=True)
                    if stamp is None
                    else Q(attempt_started_at=stamp)
                )
                unchanged |= Q(pk__in=pks) & same
            candidates = Delivery.objects.using(using).filter(
                unchanged, status__in=statuses, message_id__isnull=True
            )
            taken.extend(_lock(candidates, using))
        if whole and len(taken) != len(rows):
            transaction.set_rollback(True, using=using)
            return []
        for chunk_pks in statement_chunks(taken):
            Delivery.objects.using(using).filter(pk__in=chunk_pks).update(**values)
    stamped = set(taken)
    kept = [row for row in rows if row.pk in stamped]
    for row in kept:
        row.attempt_started_at = now
    return kept


def _lock(candidates: QuerySet[Delivery], using: str) -> list[Any]:
    """The primary keys of ``candidates``, locked until the transaction ends."""
    if connections[using].features.has_select_for_update:
        return list(candidates.select_for_update().order_by("pk").values_list("pk", flat=True))
    # SQLite locks the whole database for a write, and a transaction that reads first
    # and writes later may fail to upgrade: write first (nothing changes), then read.
    candidates.update(attempt_started_at=F("attempt_started_at"))
    return list(candidates.values_list("pk", flat=True))


def _pk(row: Delivery) -> Any:
    return row.pk
