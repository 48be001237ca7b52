"""Simulator addresses and the timeline of statuses and events each one produces.

Like the SES mailbox simulator: the local part of an address at
:data:`~django_cloudmails.limits.SIMULATOR_DOMAIN` (``+label`` allowed) decides what
happens to a message after it is sent; any other address is simply delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django_cloudmails.limits import SIMULATOR_DOMAIN

HARD_BOUNCE_REASON = "550 5.1.1 user unknown"
SOFT_BOUNCE_REASON = "452 4.2.2 mailbox full"
CLICK_URL = "https://example.com/"

#: Every event type a webhook can carry (the ping aside).
EVENT_TYPES = ("delivered", "bounced", "opened", "clicked", "unsubscribed", "complained")


@dataclass(frozen=True)
class Step:
    """One point of a message's timeline: a new status and/or a webhook event."""

    status: str | None = None
    event: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_DELIVERED = Step("delivered", "delivered")

FATES: dict[str, tuple[Step, ...]] = {
    "delivered": (_DELIVERED,),
    "bounce": (
        Step(
            "bounced",
            "bounced",
            {"bounce_type": "hard", "bounce_reason": HARD_BOUNCE_REASON},
        ),
    ),
    "softbounce": (
        Step("deferred"),
        Step(
            "bounced",
            "bounced",
            {"bounce_type": "soft", "bounce_reason": SOFT_BOUNCE_REASON},
        ),
    ),
    "deferred": (Step("deferred"),),
    "complaint": (_DELIVERED, Step(event="complained")),
    "open": (_DELIVERED, Step(event="opened")),
    "click": (_DELIVERED, Step(event="opened"), Step(event="clicked", extra={"url": CLICK_URL})),
    "unsubscribe": (_DELIVERED, Step(event="unsubscribed")),
    "reject": (Step("failed"),),
}


def fate_of(address: str) -> tuple[Step, ...]:
    """The timeline for a bare recipient address."""
    local, _, domain = address.rpartition("@")
    if domain.lower() != SIMULATOR_DOMAIN:
        return FATES["delivered"]
    name = local.partition("+")[0].lower()
    return FATES.get(name, FATES["delivered"])
