"""Storing webhook events and applying them to their Delivery rows.

Each event is recorded atomically on its own. The DeliveryEvent INSERT is the dedupe:
``dedupe_key`` is unique, so of two concurrent copies exactly one is stored and the
other changes nothing. The Delivery moves through one conditional UPDATE built from the
:mod:`~.lifecycle` effect; every SET expression reads the row as it is when the UPDATE
takes its row lock, so concurrent events neither lose counter increments nor overwrite
each other's timestamps, in any order. On PostgreSQL all of this (and the suppression)
is one SQL statement (:mod:`~.pg_ingest`); elsewhere it is an ORM transaction. Both
derive the UPDATE from the lifecycle's declaration (:mod:`~.updates`).

An event that matches no Delivery is stored with an empty ``delivery`` and applied by
:func:`~.orphans.apply_orphan_events` once the row knows its message id (see
:mod:`~.orphans`).

Signals go out after commit (:mod:`~.notify`): ``email_event`` once per new event, and
``email_bounced`` once per Delivery, for the bounce (event or poll) that bounced it.
Polls record the bounces they find through :func:`record_event` too.

Database routers are honoured: each recording call asks ``router.db_for_write`` for
:class:`~.models.DeliveryEvent` once and runs everything (the transaction, the
advisory lock, the PostgreSQL statement, the ORM queries, ``on_commit``) on that alias.
Delivery, DeliveryEvent and Suppression reference one another, so they must be routed to
the same database.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, router, transaction
from django.db.models import Q
from django.utils import timezone

from . import lifecycle, pg_ingest, updates
from .conf import app_settings
from .models import Delivery, DeliveryEvent
from .notify import EVENT_SIGNALS, send_signals
from .orphans import apply_orphan_events, learn_message_id, lock_message_ids, relink
from .suppression import normalize_address, suppress
from .webhooks import MAX_RECIPIENT_LENGTH, ParsedEvent

__all__ = ["EVENT_SIGNALS", "RecordResult", "apply_orphan_events", "record_event", "record_events"]

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


def effect_for(parsed: ParsedEvent) -> lifecycle.Effect | None:
    """The lifecycle effect of a parsed event (None for a type the lifecycle ignores)."""
    if parsed.event not in lifecycle.EFFECTS:
        return None
    return lifecycle.effect_of(
        parsed.event, bounce_reason=parsed.bounce_reason, bounce_type=parsed.bounce_type
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


# Recording.


def suppression_for(parsed: ParsedEvent) -> tuple[str, str] | None:
    """``(normalized address, reason)`` when ``parsed`` suppresses its recipient under
    ``SUPPRESS_ON``, else None."""
    reason = lifecycle.suppression_reason(parsed.event, parsed.bounce_type)
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
        lock_message_ids([parsed.message_id], using)
        target = _match(parsed, using)
    event = event_row(parsed, delivery_id=target[0] if target else None)
    event.save(using=using, force_insert=True)
    first_bounce = False
    effect = effect_for(parsed)
    if target is not None:
        if target[1] is None:
            learn_message_id(target[0], parsed.message_id, using)
        if effect is not None:
            first_bounce = updates.apply(
                target[0],
                effect,
                using=using,
                detect=parsed.event == lifecycle.EVENT_BOUNCED,
                at=parsed.occurred_at,
                now=timezone.now(),
            )
    suppression = suppression_for(parsed)
    if suppression:
        suppress(suppression[0], suppression[1], event, using=using)
    transaction.on_commit(
        lambda: send_signals(event, using, first_bounce=first_bounce), using=using
    )
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
    first_bounce = inserted.first_bounce
    transaction.on_commit(
        lambda: send_signals(event, using, first_bounce=first_bounce), using=using
    )
    if inserted.delivery_id is None:
        relink(event, using)
    elif inserted.delivery_message_id is None:
        learn_message_id(inserted.delivery_id, parsed.message_id, using)
    return event


def record_events(events: Sequence[ParsedEvent]) -> RecordResult:
    """Record every event of one request; a database error propagates (5xx, retried)."""
    using = _db()
    new = sum(record_event(parsed, using=using) is not None for parsed in events)
    return RecordResult(received=len(events), new=new)
