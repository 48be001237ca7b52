"""Events that arrived before their Delivery knew its message id, linked once it does.

The events of a batch can overtake its response, and a lost response leaves a row with
no message id at all. Such an event is stored with an empty ``delivery`` (an orphan).
Whoever stores message ids (the outbox, recovery) calls :func:`apply_orphan_events`;
recording looks again under the same per-message-id advisory lock (PostgreSQL), so
whichever runs second sees the other's write and no orphan is left behind; SQLite
serialises writers anyway. Both sending and receiving use this module; it imports
neither.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from . import lifecycle, updates
from .limits import ROWS_PER_STATEMENT
from .models import Delivery, DeliveryEvent
from .notify import send_signals

logger = logging.getLogger(__name__)


def stored_effect(event: DeliveryEvent) -> lifecycle.Effect | None:
    """The lifecycle effect of a stored event (None for a type the lifecycle ignores)."""
    if event.event not in lifecycle.EFFECTS:
        return None
    payload = event.payload if isinstance(event.payload, dict) else {}
    reason, kind = lifecycle.bounce_facts(payload)
    return lifecycle.effect_of(event.event, bounce_reason=reason, bounce_type=kind)


def lock_message_ids(message_ids: Iterable[str], using: str) -> None:
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


def learn_message_id(delivery_id: uuid.UUID, message_id: str, using: str) -> bool:
    """Store ``message_id`` on a row that lacks one (its send answer was lost); a
    conflict with another row leaves it unset. Returns whether it was stored."""
    try:
        with transaction.atomic(using=using):
            rows = Delivery.objects.using(using).filter(pk=delivery_id, message_id__isnull=True)
            return bool(rows.update(message_id=message_id))
    except IntegrityError:
        logger.warning(
            "Event message id %s already belongs to another delivery; not stored on %s.",
            message_id,
            delivery_id,
        )
        return False


def link(event: DeliveryEvent, owner: uuid.UUID, using: str) -> bool:
    """Link an orphan and apply it; only the caller that links it applies it.

    A bounce that bounces its Delivery now sends ``email_bounced`` after commit (the
    orphan's other signals went out when it was stored).
    """
    orphan = DeliveryEvent.objects.using(using).filter(pk=event.pk, delivery__isnull=True)
    if not orphan.update(delivery_id=owner):
        return False
    event.delivery_id = owner
    effect = stored_effect(event)
    if effect is not None:
        bounce = event.event == lifecycle.EVENT_BOUNCED
        first = updates.apply(
            owner, effect, using=using, detect=bounce, at=event.occurred_at, now=timezone.now()
        )
        if first:
            transaction.on_commit(
                lambda: send_signals(event, using, first_bounce=True, specific_only=True),
                using=using,
            )
    return True


def relink(event: DeliveryEvent, using: str) -> None:
    """Link an orphan just committed if its row learned the message id meanwhile.

    Under the same advisory lock as :func:`apply_orphan_events`: whichever of the two
    runs second sees the other's committed write, so the orphan is never left behind.
    """
    with transaction.atomic(using=using):
        lock_message_ids([event.message_id], using)
        owner = (
            Delivery.objects.using(using)
            .filter(message_id=event.message_id)
            .values_list("pk", flat=True)
            .first()
        )
        if owner is not None:
            link(event, owner, using)


def apply_orphan_events(message_ids: Collection[str], *, using: str | None = None) -> int:
    """Link and apply stored events that arrived before their Delivery knew its
    message id. Called after message ids are stored. Returns how many.

    ``using`` is the database alias; None asks the router where DeliveryEvent is written.
    """
    if using is None:
        using = router.db_for_write(DeliveryEvent)
    wanted = sorted({message_id for message_id in message_ids if message_id})
    linked = 0
    for start in range(0, len(wanted), ROWS_PER_STATEMENT):
        linked += _apply_orphans(wanted[start : start + ROWS_PER_STATEMENT], using)
    return linked


def _apply_orphans(message_ids: list[str], using: str) -> int:
    with transaction.atomic(using=using):
        lock_message_ids(message_ids, using)
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
            linked += link(event, owner, using)
        return linked
