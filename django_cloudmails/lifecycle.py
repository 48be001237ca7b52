"""The delivery lifecycle: which status and facts an event may change, as pure functions.

Webhooks arrive late, twice and out of order. Every effect here is commutative (a status
only moves up a fixed precedence, timestamps keep the earliest or latest, counters add),
so any order of the same distinct events yields the same row as the ordered stream. The
database code applies these effects with conditional UPDATEs; :func:`apply` is the same
rule in Python, the specification the tests check both against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

QUEUED = "queued"
#: A request that may have reached the API got no usable answer: the message may or may
#: not have been accepted. Evidence (an event), a poll or recovery settles it.
UNKNOWN = "unknown"
SENT = "sent"
DEFERRED = "deferred"
DELIVERED = "delivered"
FAILED = "failed"
BOUNCED = "bounced"

#: Lowest first. A row never moves to a status earlier in this tuple.
PRECEDENCE: tuple[str, ...] = (QUEUED, UNKNOWN, SENT, DEFERRED, DELIVERED, FAILED, BOUNCED)
RANK = {status: rank for rank, status in enumerate(PRECEDENCE)}

EVENT_DELIVERED = "delivered"
EVENT_BOUNCED = "bounced"
EVENT_OPENED = "opened"
EVENT_CLICKED = "clicked"
EVENT_UNSUBSCRIBED = "unsubscribed"
EVENT_COMPLAINED = "complained"
#: Not in the API reference's list of webhook events, but statuses it reports; an ESP
#: that sends them moves the row as ``GET /emails/{id}`` would.
EVENT_DEFERRED = "deferred"
EVENT_FAILED = "failed"
#: The event types the lifecycle knows; any other type is stored and changes nothing.
EVENT_TYPES: tuple[str, ...] = (
    EVENT_DELIVERED,
    EVENT_BOUNCED,
    EVENT_OPENED,
    EVENT_CLICKED,
    EVENT_UNSUBSCRIBED,
    EVENT_COMPLAINED,
    EVENT_DEFERRED,
    EVENT_FAILED,
)


def advance(current: str, proposed: str) -> str:
    """The status after ``proposed`` is reported for a row in ``current``."""
    return proposed if RANK[proposed] > RANK[current] else current


def statuses_below(status: str) -> tuple[str, ...]:
    """The statuses a row may be in for ``status`` to replace it."""
    return PRECEDENCE[: RANK[status]]


@dataclass(frozen=True)
class Effect:
    """What one distinct event does to its Delivery.

    ``earliest`` fields take the event time if they are empty or later; ``latest`` fields
    if empty or earlier; ``with_earliest`` fields are written together with the first
    ``earliest`` field, so a bounce reason always belongs to the first bounce.
    """

    status: str
    earliest: tuple[str, ...] = ()
    latest: tuple[str, ...] = ()
    counter: str | None = None
    with_earliest: dict[str, str] = field(default_factory=dict)


#: What one event of each known type does, declared once.
EFFECTS: dict[str, Effect] = {
    EVENT_DELIVERED: Effect(DELIVERED, earliest=("delivered_at",)),
    EVENT_BOUNCED: Effect(BOUNCED, earliest=("bounced_at",)),
    EVENT_OPENED: Effect(
        DELIVERED, earliest=("first_opened_at",), latest=("last_opened_at",), counter="opens"
    ),
    EVENT_CLICKED: Effect(
        DELIVERED, earliest=("first_clicked_at",), latest=("last_clicked_at",), counter="clicks"
    ),
    EVENT_COMPLAINED: Effect(DELIVERED, earliest=("complained_at",)),
    EVENT_UNSUBSCRIBED: Effect(DELIVERED, earliest=("unsubscribed_at",)),
    EVENT_DEFERRED: Effect(DEFERRED),
    EVENT_FAILED: Effect(FAILED, earliest=("failed_at",)),
}
#: The status each event proves: engagement implies the message was delivered.
EVENT_STATUS = {event: effect.status for event, effect in EFFECTS.items()}


def effect_of(event: str, *, bounce_reason: str = "", bounce_type: str = "") -> Effect:
    """The effect of one event of type ``event`` (one of :data:`EVENT_TYPES`)."""
    effect = EFFECTS[event]
    if event == EVENT_BOUNCED:
        return replace(
            effect, with_earliest={"bounce_reason": bounce_reason, "bounce_type": bounce_type}
        )
    return effect


@dataclass(frozen=True)
class Tracking:
    """The lifecycle fields of a Delivery, as plain values."""

    status: str = SENT
    failed_at: datetime | None = None
    delivered_at: datetime | None = None
    bounced_at: datetime | None = None
    bounce_reason: str = ""
    bounce_type: str = ""
    complained_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    first_opened_at: datetime | None = None
    last_opened_at: datetime | None = None
    first_clicked_at: datetime | None = None
    last_clicked_at: datetime | None = None
    opens: int = 0
    clicks: int = 0


def apply(state: Tracking, effect: Effect, at: datetime) -> Tracking:
    """``state`` after one distinct event with ``effect`` that happened ``at``."""
    changes: dict[str, object] = {"status": advance(state.status, effect.status)}
    for name in effect.earliest:
        current = getattr(state, name)
        if current is None or at < current:
            changes[name] = at
            changes.update(effect.with_earliest)
    for name in effect.latest:
        current = getattr(state, name)
        if current is None or at > current:
            changes[name] = at
    if effect.counter:
        changes[effect.counter] = getattr(state, effect.counter) + 1
    return replace(state, **changes)  # type: ignore[arg-type]


def replay(events: Iterable[tuple[Effect, datetime]], start: Tracking | None = None) -> Tracking:
    """Apply a stream of distinct events in the order given."""
    state = start or Tracking()
    for effect, at in events:
        state = apply(state, effect, at)
    return state
