"""Recovery: settle rows whose send outcome is unknown.

A row is a candidate when its outcome is ``unknown`` (an attempt may have reached the
API, no usable answer came), or when it is ``queued`` with an attempt started (a killed
process left it so), it has no message id, and its attempt started more than
``RECOVER_AFTER`` seconds ago (longer than the API's 5 minutes of batch completion, so
the events of an accepted request have had time to arrive). Oldest first, at most
``limit`` rows a run, fewer than ``RECOVER_ATTEMPTS`` tries each.

For each request (the rows sharing an Idempotency-Key, in the order they went out):

1. claim (:func:`claims.take_over`): a compare-and-set on ``attempt_started_at``
   (``< cutoff`` -> now), in a transaction that locks the rows in id order first. A
   request is resent only if every unsettled row of it was claimed here, so two runs at
   once never both send it; a claim recovery made is exclusive for ``claims.LEASE``;
2. evidence: an event carrying a row's Delivery id proves the API accepted it: the row
   takes the event's message id, moves to ``sent``, and its events are applied;
3. resend the rest under the stored key, the request whole and in its original order,
   through :func:`.sending.send_claimed` (one request at a time, each held right before
   it goes out, every attempt paced like any sender's) and the
   :class:`~.dispatch.Dispatcher` in ``resending`` mode: where the API honours
   Idempotency-Key (as the sandbox does) a request it accepted is answered from its
   record, never sent twice; one it never got is sent now. A refusal now never fails
   the rows: they stay ``unknown``, the error and the try counted on them.

Without Idempotency-Key support at the API, a resent request that had in fact been
accepted (and produced no event before recovery ran) is sent twice: see the README.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from . import claims, dispatch, identity, lifecycle, orphans, updates
from .conf import app_settings, mailer_settings
from .limits import statement_chunks
from .models import Delivery, DeliveryEvent, delivery_database
from .sending import send_claimed

#: Rows one :func:`recover` run takes at most, unless told otherwise.
DEFAULT_LIMIT = 10_000

# What a run did with one row (``RecoveryReport.outcomes``).
#: Settled by an event carrying its Delivery id.
EVIDENCED = "evidenced"
#: Resent, and the API accepted it (or had accepted it before): now ``sent``.
ACCEPTED = "accepted"
#: Resent, and still no usable answer (or refused now): still ``unknown``.
STILL_UNKNOWN = "unknown"
#: Resent and refused: its status is the refusal's (a row that was ``queued``).
REFUSED = "refused"
#: Left alone: another run claimed part of its request first.
CONTENDED = "contended"
#: Left alone: its request cannot be rebuilt (rows of it were deleted).
UNREBUILDABLE = "unrebuildable"


@dataclass
class RecoveryReport:
    """What one run did, in rows."""

    #: Rows claimed by this run.
    claimed: int = 0
    #: Rows settled by an event carrying their Delivery id (nothing resent).
    evidenced: int = 0
    #: Rows resent under their request's key (unsettled rows only).
    resent: int = 0
    #: Rows the API accepted (or had accepted) when resent: now ``sent``.
    accepted: int = 0
    #: Claimed rows still ``unknown`` after this run.
    unknown: int = 0
    #: Rows left alone because another run claimed part of their request.
    contended: int = 0
    #: Rows of requests that cannot be rebuilt (rows of them were deleted): not resent.
    unrebuildable: int = 0
    #: What happened to each row the run took up, by primary key (:data:`EVIDENCED`,
    #: :data:`ACCEPTED`...); rows that were not candidates are not in it.
    outcomes: dict[Any, str] = field(default_factory=dict)


def recover(*, older_than: float | None = None, limit: int | None = None) -> RecoveryReport:
    """Settle the rows whose outcome has been unknown for more than ``older_than``
    seconds (default ``RECOVER_AFTER``); at most ``limit`` rows (default 10,000)."""
    now = timezone.now()
    age = app_settings.recover_after if older_than is None else older_than
    cutoff = now - timedelta(seconds=age)
    candidates = (
        Delivery.objects.using(delivery_database())
        .filter(claims.claimable(cutoff, now), recoveries__lt=app_settings.recover_attempts)
        .order_by("attempt_started_at")
    )
    rows = list(candidates[: DEFAULT_LIMIT if limit is None else limit])
    return _recover(rows, cutoff, now)


def retry(deliveries: Iterable[Delivery | Any]) -> RecoveryReport:
    """Settle these rows now, whatever their age and earlier tries (Delivery objects or
    primary keys); rows whose outcome is not unknown are left alone."""
    now = timezone.now()
    pks = [item.pk if isinstance(item, Delivery) else item for item in deliveries]
    claimable = Delivery.objects.using(delivery_database()).filter(claims.claimable(now, now))
    rows: list[Delivery] = []
    for chunk in statement_chunks(pks):
        rows.extend(claimable.filter(pk__in=chunk))
    return _recover(rows, now, now)


def _recover(rows: Sequence[Delivery], cutoff: datetime, now: datetime) -> RecoveryReport:
    report = RecoveryReport()
    outcomes = report.outcomes
    owned: list[list[Delivery]] = []
    held: set[Any] = set()
    for request in dispatch.requests_of(rows):
        whole = _whole_request(request)
        if whole is None:
            report.unrebuildable += len(request)
            outcomes.update(dict.fromkeys((row.pk for row in request), UNREBUILDABLE))
            continue
        claimed = claims.take_over(whole, cutoff, now)
        if claimed is None:
            report.contended += len(request)
            outcomes.update(dict.fromkeys((row.pk for row in request), CONTENDED))
            continue
        report.claimed += len(claimed)
        held.update(claimed)
        owned.append(whole)
    claim = claims.Claim(now, owned, held)
    evidenced = _apply_evidence(held, now)
    report.evidenced = len(evidenced)
    outcomes.update(dict.fromkeys(evidenced, EVIDENCED))
    with_id = Delivery.objects.using(delivery_database()).filter(message_id__isnull=False)
    settled = {
        pk
        for chunk in statement_chunks(sorted(held))
        for pk in with_id.filter(pk__in=chunk).values_list("pk", flat=True)
    }
    claim.release(settled)
    to_send = [request for request in owned if any(r.pk not in settled for r in request)]
    for alias, requests in dispatch.by_alias(to_send).items():
        report.resent += sum(1 for request in requests for row in request if row.pk not in settled)
        conf = mailer_settings(alias)
        send_claimed(claim, requests, conf, attempts=conf.retry_policy.attempts, resending=True)
    rows_now_of = Delivery.objects.using(delivery_database()).values_list(
        "pk", "message_id", "status"
    )
    for chunk in statement_chunks(sorted(held - settled)):
        rows_now = rows_now_of.filter(pk__in=chunk)
        for pk, message_id, status in rows_now:
            if message_id is not None:
                report.accepted += 1
                outcomes[pk] = ACCEPTED
            elif status == lifecycle.UNKNOWN:
                report.unknown += 1
                outcomes[pk] = STILL_UNKNOWN
            else:
                outcomes[pk] = REFUSED
    return report


def _whole_request(rows: list[Delivery]) -> list[Delivery] | None:
    """The whole request ``rows`` belong to, in the order it went out; None if it
    cannot be rebuilt (its key does not match its rows)."""
    key = rows[0].idempotency_key
    if not key:
        return rows if len(rows) == 1 else None
    if _matches(key, rows):
        return rows
    # The rest of a batch: the rows of one send share created_at (one INSERT), an
    # indexed column; a request formed otherwise is looked up by its key alone.
    siblings = Delivery.objects.using(delivery_database()).filter(idempotency_key=key)
    for lookup in (siblings.filter(created_at=rows[0].created_at), siblings):
        whole = identity.in_request_order(lookup)
        if _matches(key, whole):
            return whole
    return None


def _matches(key: str, rows: Sequence[Delivery]) -> bool:
    if not rows:
        return False
    ids = [row.id for row in rows]
    return key == identity.request_key(ids, batch=identity.is_batch_key(key))


def _apply_evidence(pks: set[Any], now: datetime) -> set[Any]:
    """Settle rows from events carrying their Delivery id; returns theirs."""
    if not pks:
        return set()
    using = delivery_database()
    found: dict[Any, str] = {}
    for chunk in statement_chunks(sorted(pks)):
        events = DeliveryEvent.objects.using(using).filter(
            Q(delivery_ref__in=chunk, delivery__isnull=True) | Q(delivery__in=chunk)
        )
        for ref, owner, message_id in events.values_list("delivery_ref", "delivery", "message_id"):
            found.setdefault(owner or ref, message_id)
    settled = set()
    for pk, message_id in found.items():
        if pk in pks and orphans.learn_message_id(pk, message_id, using):
            updates.apply(pk, lifecycle.EVIDENCED, using=using, now=now)
            settled.add(pk)
    orphans.apply_orphan_events(list(found.values()), using=using)
    return settled
