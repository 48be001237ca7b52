"""Storing webhook events and applying them to their Delivery rows.

Each event is recorded atomically on its own. The DeliveryEvent INSERT is the dedupe:
``dedupe_key`` is unique, so of two concurrent copies exactly one is stored and the
other changes nothing. The Delivery moves through one conditional UPDATE built from the
:mod:`~.lifecycle` effect; every SET expression reads the row as it is when the UPDATE
takes its row lock, so concurrent events neither lose counter increments nor overwrite
each other's timestamps, in any order. On PostgreSQL all of this (and the suppression)
is one SQL statement (:mod:`~.pg_ingest`); elsewhere it is an ORM transaction.

An event that matches no Delivery is stored with an empty ``delivery`` and applied by
:func:`apply_orphan_events` once the row knows its message id. The recording side then
looks again under a per-message-id advisory lock (PostgreSQL) that
:func:`apply_orphan_events` also takes, so whichever runs second sees the other's write
and no orphan is left behind; SQLite serialises writers anyway.

Signals go out after commit, once per new event, through ``send_robust``: a receiver
that raises is logged and changes nothing that was recorded.

Database routers are honoured: each recording call asks ``router.db_for_write`` for
:class:`~.models.DeliveryEvent` once and runs everything (the transaction, the
advisory lock, the PostgreSQL statement, the ORM queries, ``on_commit``) on that alias.
Delivery, DeliveryEvent and Suppression reference one another, so they must be routed to
the same database.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Case, DateTimeField, F, Field, Q, Value, When
from django.dispatch import Signal
from django.utils import timezone

from . import lifecycle, pg_ingest, signals
from .conf import app_settings
from .models import Delivery, DeliveryEvent, advanced_status
from .suppression import normalize_address, suppress
from .webhooks import MAX_RECIPIENT_LENGTH, ParsedEvent

logger = logging.getLogger(__name__)

#: The specific signal sent for each event type (besides ``email_event``).
EVENT_SIGNALS: dict[str, Signal] = {
    lifecycle.EVENT_DELIVERED: signals.email_delivered,
    lifecycle.EVENT_BOUNCED: signals.email_bounced,
    lifecycle.EVENT_OPENED: signals.email_opened,
    lifecycle.EVENT_CLICKED: signals.email_clicked,
    lifecycle.EVENT_UNSUBSCRIBED: signals.email_unsubscribed,
    lifecycle.EVENT_COMPLAINED: signals.email_complained,
}

_CHUNK = 500

#: Record each event in one SQL statement on PostgreSQL (:mod:`~.pg_ingest`); the ORM
#: path does the same in a transaction and serves every other database.
SINGLE_STATEMENT = True


@dataclass(frozen=True)
class RecordResult:
    """How many events a request carried, and how many of them were new."""

    received: int
    new: int


def _db() -> str:
    """The database alias webhook events are written to."""
    return router.db_for_write(DeliveryEvent)


# Applying effects.


def effect_for(event: DeliveryEvent | ParsedEvent) -> lifecycle.Effect:
    """The lifecycle effect of a stored or parsed event."""
    if isinstance(event, ParsedEvent):
        return lifecycle.effect_of(
            event.event, bounce_reason=event.bounce_reason, bounce_type=event.bounce_type
        )
    payload = event.payload if isinstance(event.payload, dict) else {}
    return lifecycle.effect_of(
        event.event,
        bounce_reason=str(payload.get("bounce_reason") or ""),
        bounce_type=str(payload.get("bounce_type") or ""),
    )


def update_values(effect: lifecycle.Effect, at: datetime) -> dict[str, object]:
    """The SET clause that applies ``effect`` at ``at``, as in :func:`lifecycle.apply`.

    All expressions see the old row, so the UPDATE is atomic and commutes with any
    other event's UPDATE.
    """
    moment = Value(at, output_field=DateTimeField())

    def pick(name: str, condition: Q, value: Value) -> Case:
        field = Delivery._meta.get_field(name)
        assert isinstance(field, Field)
        return Case(When(condition, then=value), default=F(name), output_field=field)

    values: dict[str, object] = {
        "status": advanced_status(effect.status),
        "updated_at": timezone.now(),
    }
    first = Q()
    for name in effect.earliest:
        earlier = Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gt": at})
        first |= earlier
        values[name] = pick(name, earlier, moment)
    if first:
        for name, value in effect.with_earliest.items():
            values[name] = pick(name, first, Value(value))
    for name in effect.latest:
        later = Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__lt": at})
        values[name] = pick(name, later, moment)
    if effect.counter:
        values[effect.counter] = F(effect.counter) + 1
    return values


def apply_to_delivery(
    delivery_id: uuid.UUID, effect: lifecycle.Effect, at: datetime, using: str | None = None
) -> int:
    """Apply one distinct event to a Delivery with one UPDATE; returns rows changed.

    ``using`` is the database alias; None asks the router.
    """
    rows = Delivery.objects.using(using).filter(pk=delivery_id)
    return int(rows.update(**update_values(effect, at)))


# Matching and locking.


def _lock_message_ids(message_ids: Iterable[str], using: str) -> None:
    """Take PostgreSQL advisory locks for ``message_ids`` until the transaction ends.

    Serialises "store an orphan" with "link orphans of this message id". Other databases
    serialise writers anyway (SQLite) or get no lock.
    """
    ids = sorted(set(message_ids))
    connection = connections[using]
    if not ids or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(k) FROM "
            "(SELECT DISTINCT hashtextextended(m, 0) AS k FROM unnest(%s::text[]) AS m "
            "ORDER BY k) AS keys",
            [ids],
        )


def _match(parsed: ParsedEvent, using: str) -> tuple[uuid.UUID, str | None] | None:
    """The (id, message_id) of the Delivery ``parsed`` belongs to, message_id first."""
    condition = Q(message_id=parsed.message_id)
    if parsed.delivery_ref is not None:
        condition |= Q(pk=parsed.delivery_ref)
    matching = Delivery.objects.using(using).filter(condition)
    rows = list(matching.values_list("pk", "message_id")[:2])
    for pk, message_id in rows:
        if message_id == parsed.message_id:
            return pk, message_id
    return rows[0] if rows else None


def _learn_message_id(delivery_id: uuid.UUID, message_id: str, using: str) -> None:
    """Store the event's message id on a row matched by its Delivery id that lacks one
    (the send response was lost); a conflict with another row leaves it unset."""
    try:
        with transaction.atomic(using=using):
            Delivery.objects.using(using).filter(pk=delivery_id, message_id__isnull=True).update(
                message_id=message_id
            )
    except IntegrityError:
        logger.warning(
            "Event message id %s already belongs to another delivery; not stored on %s.",
            message_id,
            delivery_id,
        )


# Recording.


def suppression_for(parsed: ParsedEvent) -> tuple[str, str] | None:
    """``(normalized address, reason)`` when ``parsed`` suppresses its recipient under
    ``SUPPRESS_ON``, else None."""
    reason = {
        lifecycle.EVENT_COMPLAINED: "complained",
        lifecycle.EVENT_UNSUBSCRIBED: "unsubscribed",
    }.get(parsed.event)
    if parsed.event == lifecycle.EVENT_BOUNCED:
        reason = "hard_bounce" if parsed.bounce_type == "hard" else "soft_bounce"
    if reason and parsed.recipient and reason in app_settings.suppress_on:
        address = normalize_address(parsed.recipient)
        if address and len(address) <= MAX_RECIPIENT_LENGTH:
            return address, reason
    return None


def event_row(parsed: ParsedEvent, **fields: object) -> DeliveryEvent:
    """The DeliveryEvent of ``parsed`` (unsaved), with ``fields`` on top."""
    return DeliveryEvent(
        dedupe_key=parsed.dedupe_key,
        event=parsed.event,
        message_id=parsed.message_id,
        delivery_ref=parsed.delivery_ref,
        recipient=parsed.recipient,
        occurred_at=parsed.occurred_at,
        payload=parsed.raw,
        **fields,
    )


def _record_one(parsed: ParsedEvent, using: str) -> DeliveryEvent:
    target = _match(parsed, using)
    if target is None:
        _lock_message_ids([parsed.message_id], using)
        target = _match(parsed, using)
    event = event_row(parsed, delivery_id=target[0] if target else None)
    event.save(using=using, force_insert=True)
    if target is not None:
        if target[1] is None:
            _learn_message_id(target[0], parsed.message_id, using)
        if parsed.known:  # an event type the lifecycle does not know changes nothing
            apply_to_delivery(target[0], effect_for(parsed), parsed.occurred_at, using)
    suppression = suppression_for(parsed)
    if suppression:
        suppress(suppression[0], suppression[1], event, using=using)
    transaction.on_commit(lambda: send_signals(event, using), using=using)
    return event


def record_event(parsed: ParsedEvent, *, using: str | None = None) -> DeliveryEvent | None:
    """Store and apply one event atomically; None when it is a duplicate.

    ``using`` is the database alias; None asks the router where DeliveryEvent is written.
    """
    if using is None:
        using = _db()
    if SINGLE_STATEMENT and pg_ingest.available(using):
        return _record_single_statement(parsed, using)
    try:
        with transaction.atomic(using=using):
            return _record_one(parsed, using)
    except IntegrityError:
        if DeliveryEvent.objects.using(using).filter(dedupe_key=parsed.dedupe_key).exists():
            return None
        raise


def _record_single_statement(parsed: ParsedEvent, using: str) -> DeliveryEvent | None:
    now = timezone.now()
    inserted = pg_ingest.insert(parsed, now, suppression_for(parsed), using=using)
    if inserted is None:
        return None
    event = event_row(
        parsed, delivery_id=inserted.delivery_id, id=inserted.event_id, received_at=now
    )
    event._state.adding = False
    event._state.db = using
    if inserted.delivery_id is None:
        _relink_orphan(event, using)
    elif inserted.delivery_message_id is None:
        _learn_message_id(inserted.delivery_id, parsed.message_id, using)
    transaction.on_commit(lambda: send_signals(event, using), using=using)
    return event


def _relink_orphan(event: DeliveryEvent, using: str) -> None:
    """Link an orphan just committed if its row learned the message id meanwhile.

    Under the same advisory lock as :func:`apply_orphan_events`: whichever of the two
    runs second sees the other's committed write, so the orphan is never left behind.
    """
    with transaction.atomic(using=using):
        _lock_message_ids([event.message_id], using)
        owner = (
            Delivery.objects.using(using)
            .filter(message_id=event.message_id)
            .values_list("pk", flat=True)
            .first()
        )
        if owner is not None and _link(event, owner, using):
            event.delivery_id = owner


def _link(event: DeliveryEvent, owner: uuid.UUID, using: str) -> bool:
    """Link an orphan and apply it; only the caller that links it applies it."""
    orphan = DeliveryEvent.objects.using(using).filter(pk=event.pk, delivery__isnull=True)
    if orphan.update(delivery_id=owner):
        if event.event in lifecycle.EVENT_TYPES:
            apply_to_delivery(owner, effect_for(event), event.occurred_at, using)
        return True
    return False


def record_events(events: Sequence[ParsedEvent]) -> RecordResult:
    """Record every event of one request; a database error propagates (5xx, retried)."""
    using = _db()
    new = sum(record_event(parsed, using=using) is not None for parsed in events)
    return RecordResult(received=len(events), new=new)


def apply_orphan_events(message_ids: Collection[str], *, using: str | None = None) -> int:
    """Link and apply stored events that arrived before their Delivery knew its
    message id. Called by the outbox after it stores message ids. Returns how many.

    ``using`` is the database alias; None asks the router where DeliveryEvent is written.
    """
    if using is None:
        using = _db()
    wanted = sorted({message_id for message_id in message_ids if message_id})
    linked = 0
    for start in range(0, len(wanted), _CHUNK):
        linked += _apply_orphans(wanted[start : start + _CHUNK], using)
    return linked


def _apply_orphans(message_ids: list[str], using: str) -> int:
    with transaction.atomic(using=using):
        _lock_message_ids(message_ids, using)
        owners = dict(
            Delivery.objects.using(using)
            .filter(message_id__in=message_ids)
            .values_list("message_id", "pk")
        )
        if not owners:
            return 0
        orphans = (
            DeliveryEvent.objects.using(using)
            .filter(delivery__isnull=True)
            .filter(Q(message_id__in=owners) | Q(delivery_ref__in=owners.values()))
        )
        by_pk = set(owners.values())
        linked = 0
        for event in orphans.order_by("pk"):
            owner = owners.get(event.message_id)
            if owner is None and event.delivery_ref in by_pk:
                owner = event.delivery_ref
            if owner is None:
                continue
            linked += _link(event, owner, using)
        return linked


# Signals.


def send_signals(event: DeliveryEvent, using: str | None = None) -> None:
    """Send ``email_event`` and the event's own signal; log receivers that raise.

    The Delivery is read from ``using``, the database the event was written to (None
    asks the router), so receivers see the row the event just updated.
    """
    specific = EVENT_SIGNALS.get(event.event)
    wanted = [
        signal
        for signal in (signals.email_event, specific)
        if signal is not None and signal.has_listeners()
    ]
    if not wanted:
        return
    try:
        delivery = (
            Delivery.objects.using(using).filter(pk=event.delivery_id).first()
            if event.delivery_id
            else None
        )
        for signal in wanted:
            responses = signal.send_robust(sender=Delivery, delivery=delivery, event=event)
            for receiver, result in responses:
                if isinstance(result, BaseException):
                    logger.error(
                        "A receiver of the %s signal raised for event %s: %r",
                        event.event,
                        event.pk,
                        receiver,
                        exc_info=result,
                    )
    except Exception:
        logger.exception("Sending signals for CloudMails event %s failed.", event.pk)
