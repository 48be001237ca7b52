"""The delivery lifecycle: every change a report may make to a Delivery, declared once.

Webhooks arrive late, twice and out of order; polls and recovery report what the API
knows. Each of them is an :class:`Effect`: a few :class:`Rule` objects, one per field,
taking named inputs (the event's time, the API's answer...). The effects of events
commute (a status only moves up a fixed precedence, timestamps keep the earliest or
latest, counters add), so any order of the same distinct events yields the same row as
the ordered stream.

This module is the only statement of those rules. :func:`apply` folds them in Python
(the specification the tests check the database against); :mod:`~.updates` derives the
ORM UPDATE values and the compiled SQL (the PostgreSQL webhook statement, the bulk
statements of polls and the outbox) from the same declarations. It imports nothing of
ours and nothing of Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

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
#: Statuses the API may still change: polling asks about rows in them.
PENDING: tuple[str, ...] = (UNKNOWN, SENT, DEFERRED)

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

HARD_BOUNCE = "hard_bounce"
SOFT_BOUNCE = "soft_bounce"
COMPLAINED = "complained"
UNSUBSCRIBED = "unsubscribed"
MANUAL = "manual"
#: Why an event may put its recipient on the suppression list (``SUPPRESS_ON``).
SUPPRESSION_REASONS: tuple[str, ...] = (HARD_BOUNCE, SOFT_BOUNCE, COMPLAINED, UNSUBSCRIBED)
BOUNCE_TYPES = ("hard", "soft")


def advance(current: str, proposed: str | None) -> str:
    """The status after ``proposed`` is reported for a row in ``current``.

    This is "only move forward", the one rule every writer follows; None or a status the
    lifecycle does not know changes nothing.
    """
    if proposed is None or RANK.get(proposed, -1) <= RANK[current]:
        return current
    return proposed


def statuses_below(status: str) -> tuple[str, ...]:
    """The statuses a row may be in for ``status`` to replace it."""
    return PRECEDENCE[: RANK[status]]


# The declarations.

ADVANCE = "advance"  # status: the target, only from a status below it
EARLIEST = "earliest"  # the input if the field is empty or later
LATEST = "latest"  # the input if the field is empty or earlier
INCREMENT = "increment"  # the field + 1
ADD = "add"  # the field + the input
GREATEST = "greatest"  # the higher of the field and the input
GIVEN = "given"  # the input when there is one (not None), else unchanged
SET = "set"  # the input


@dataclass(frozen=True)
class Rule:
    """How one field of a Delivery takes a reported value.

    ``source`` names the input (see :class:`Effect`); an ``advance`` rule has either a
    constant ``target`` status or a ``source``. ``companions`` of an ``earliest`` rule are
    written from the inputs of the same name together with it, so that a bounce reason
    always belongs to the first bounce.
    """

    kind: str
    field: str
    source: str | None = None
    target: str | None = None
    companions: tuple[str, ...] = ()


def advance_to(target: str) -> Rule:
    return Rule(ADVANCE, "status", target=target)


def advance_from_input(source: str = "status") -> Rule:
    return Rule(ADVANCE, "status", source=source)


def earliest(name: str, source: str = "at", companions: tuple[str, ...] = ()) -> Rule:
    return Rule(EARLIEST, name, source, companions=companions)


def latest(name: str, source: str = "at") -> Rule:
    return Rule(LATEST, name, source)


def increment(name: str) -> Rule:
    return Rule(INCREMENT, name)


def add(name: str, source: str | None = None) -> Rule:
    return Rule(ADD, name, source or name)


def greatest(name: str, source: str | None = None) -> Rule:
    return Rule(GREATEST, name, source or name)


def given(name: str, source: str | None = None) -> Rule:
    return Rule(GIVEN, name, source or name)


def set_to(name: str, source: str | None = None) -> Rule:
    return Rule(SET, name, source or name)


@dataclass(frozen=True)
class Effect:
    """What one report does to its Delivery: rules, and inputs bound in advance.

    Every effect also sets ``updated_at`` to the input ``now``. Inputs not bound here
    are given when the effect is applied (``at``, the event's time, for every event).
    """

    rules: tuple[Rule, ...]
    inputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str | None:
        """The constant status this effect advances to, if it has one."""
        return next((r.target for r in self.rules if r.kind == ADVANCE and r.target), None)

    def bind(self, **inputs: Any) -> Effect:
        """This effect with ``inputs`` bound."""
        return replace(self, inputs={**self.inputs, **inputs})


#: What one distinct event of each known type does. Engagement implies delivery.
EFFECTS: dict[str, Effect] = {
    EVENT_DELIVERED: Effect((advance_to(DELIVERED), earliest("delivered_at"))),
    EVENT_BOUNCED: Effect(
        (advance_to(BOUNCED), earliest("bounced_at", companions=("bounce_reason", "bounce_type"))),
        {"bounce_reason": "", "bounce_type": "hard"},
    ),
    EVENT_OPENED: Effect(
        (
            advance_to(DELIVERED),
            earliest("first_opened_at"),
            latest("last_opened_at"),
            increment("opens"),
        )
    ),
    EVENT_CLICKED: Effect(
        (
            advance_to(DELIVERED),
            earliest("first_clicked_at"),
            latest("last_clicked_at"),
            increment("clicks"),
        )
    ),
    EVENT_COMPLAINED: Effect((advance_to(DELIVERED), earliest("complained_at"))),
    EVENT_UNSUBSCRIBED: Effect((advance_to(DELIVERED), earliest("unsubscribed_at"))),
    EVENT_DEFERRED: Effect((advance_to(DEFERRED),)),
    EVENT_FAILED: Effect((advance_to(FAILED), earliest("failed_at"))),
}
#: The status each event proves.
EVENT_STATUS = {event: effect.status for event, effect in EFFECTS.items()}

#: What a ``GET /emails/{id}`` answer does (bounces are recorded as events, so that
#: they suppress and signal as a bounce event does): the API's status through the same
#: precedence, its ``delivered_at`` as the truth, its counters where higher than ours
#: (they repair what merging events without an id undercounted), ``failed_at`` (input
#: None unless the API says ``failed``) at the earliest.
POLLED = Effect(
    (
        advance_from_input("status"),
        given("delivered_at"),
        earliest("failed_at", "failed_at"),
        greatest("opens"),
        greatest("clicks"),
    )
)

#: The send side. ``attempts`` counts every request made for the row.
ACCEPTED = Effect(
    (
        advance_to(SENT),
        set_to("message_id"),
        set_to("batch_id"),
        set_to("sent_at", "now"),
        add("attempts"),
    )
)
#: A definite refusal of every attempt; applied only to rows in :data:`REFUSABLE`.
REFUSED = Effect(
    (
        advance_to(FAILED),
        set_to("error_code"),
        set_to("last_error"),
        add("attempts"),
        earliest("failed_at", "now"),
    )
)
REFUSABLE: tuple[str, ...] = (QUEUED,)
#: A request that may have reached the API got no usable answer.
UNANSWERED = Effect(
    (advance_to(UNKNOWN), set_to("error_code"), set_to("last_error"), add("attempts"))
)
#: A retryable refusal handed back to a caller that schedules its own retry: the status
#: stays, the error and the attempts are recorded.
RETRYING = Effect((set_to("error_code"), set_to("last_error"), add("attempts")))
#: Recovery claims a row whose outcome is unknown (a ``queued`` row with an attempt
#: started is as unknown): ``attempt_started_at`` is the claim, ``recoveries`` counts.
RECOVERING = Effect(
    (advance_to(UNKNOWN), set_to("attempt_started_at", "now"), increment("recoveries"))
)
#: An event carrying the row's Delivery id proves the API accepted the message (the
#: event's own effect follows when it is linked).
EVIDENCED = Effect((advance_to(SENT),))


def effect_of(event: str, *, bounce_reason: str = "", bounce_type: str = "") -> Effect:
    """The effect of one event of type ``event`` (one of :data:`EVENT_TYPES`)."""
    effect = EFFECTS[event]
    if event == EVENT_BOUNCED:
        return effect.bind(bounce_reason=bounce_reason, bounce_type=bounce_type or "hard")
    return effect


def bounce_facts(payload: Mapping[str, Any]) -> tuple[str, str]:
    """``(reason, type)`` of a bounce report: ``bounce_reason`` (or ``reason``), and
    ``bounce_type`` case-insensitively; a bounce without a usable type is hard (the
    API's ``bounced`` is a rejection; transient trouble is ``deferred``)."""
    reason = payload.get("bounce_reason") or payload.get("reason") or ""
    kind = str(payload.get("bounce_type") or "").strip().lower()
    return str(reason), kind if kind in BOUNCE_TYPES else "hard"


def suppression_reason(event: str, bounce_type: str = "") -> str | None:
    """Why an event of type ``event`` would suppress its recipient (before
    ``SUPPRESS_ON`` decides), or None."""
    if event == EVENT_BOUNCED:
        return SOFT_BOUNCE if bounce_type == "soft" else HARD_BOUNCE
    return {EVENT_COMPLAINED: COMPLAINED, EVENT_UNSUBSCRIBED: UNSUBSCRIBED}.get(event)


# The Python fold.


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


def apply(state: Tracking, effect: Effect, at: datetime | None = None, **inputs: Any) -> Tracking:
    """``state`` after one report with ``effect``; ``at`` is the event's time."""
    values = {**effect.inputs, "at": at, **inputs}
    changes: dict[str, Any] = {}
    for rule in effect.rules:
        current = getattr(state, rule.field)
        value = values.get(rule.source) if rule.source else None
        if rule.kind == ADVANCE:
            changes[rule.field] = advance(current, rule.target or value)
        elif rule.kind in (EARLIEST, LATEST):
            later = rule.kind == LATEST
            if value is None:
                continue
            if current is None or (value > current if later else value < current):
                changes[rule.field] = value
                changes.update({name: values[name] for name in rule.companions})
        elif rule.kind == INCREMENT:
            changes[rule.field] = current + 1
        elif rule.kind == ADD:
            changes[rule.field] = current + value
        elif rule.kind == GREATEST:
            changes[rule.field] = max(current, value) if value is not None else current
        elif rule.kind == GIVEN:
            changes[rule.field] = current if value is None else value
        elif rule.kind == SET:
            changes[rule.field] = value
        else:
            raise ValueError(f"Unknown rule kind {rule.kind!r}.")
    return replace(state, **changes)


def replay(events: Iterable[tuple[Effect, datetime]], start: Tracking | None = None) -> Tracking:
    """Apply a stream of distinct events in the order given."""
    state = start or Tracking()
    for effect, at in events:
        state = apply(state, effect, at)
    return state
