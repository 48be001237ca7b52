"""``manage.py cloudmails_outbox``: how many rows are in each state, and how old the
oldest waiting ones are, so an operator sees a stuck queue at a glance.

A growing age of the oldest ``queued`` row means no worker is sending (or a task was
lost: ``recover_deliveries`` hands such rows to a worker again after
``RECOVER_AFTER``); ``unknown`` rows wait for an event, a poll or recovery.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Min
from django.utils import timezone

from django_cloudmails import lifecycle
from django_cloudmails.models import Delivery


@dataclass
class OutboxState:
    """Rows per status, and the age in seconds of the oldest queued and unknown rows."""

    counts: dict[str, int] = field(default_factory=dict)
    #: Queued rows no worker has claimed yet, and rows claimed with no outcome stored.
    waiting: int = 0
    claimed: int = 0
    oldest_queued: float | None = None
    oldest_unknown: float | None = None


def outbox_state() -> OutboxState:
    """Count the rows; each query runs on the ``(status, created_at)`` index."""
    now = timezone.now()
    found = dict(Delivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
    state = OutboxState(counts={status: found.pop(status, 0) for status in lifecycle.PRECEDENCE})
    state.counts.update(found)  # a status this version does not know, if any
    queued = Delivery.objects.filter(status=lifecycle.QUEUED)
    state.waiting = queued.filter(attempt_started_at__isnull=True).count()
    state.claimed = state.counts[lifecycle.QUEUED] - state.waiting
    state.oldest_queued = _age(now, queued.aggregate(at=Min("created_at"))["at"])
    unknown = Delivery.objects.filter(status=lifecycle.UNKNOWN)
    state.oldest_unknown = _age(now, unknown.aggregate(at=Min("created_at"))["at"])
    return state


def format_age(seconds: float | None) -> str:
    """``"3 s"``, ``"4 min 02 s"``, ``"1 h 20 min"``, ``"2 d 3 h"``; ``"-"`` for none."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _age(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else max((now - moment).total_seconds(), 0.0)


class Command(BaseCommand):
    help = "Count the Delivery rows in each state; show the age of the oldest queued and unknown."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        state = outbox_state()
        if options["json"]:
            self.stdout.write(json.dumps(asdict(state), sort_keys=True))
            return
        oldest = {
            lifecycle.QUEUED: state.oldest_queued,
            lifecycle.UNKNOWN: state.oldest_unknown,
        }
        self.stdout.write(f"{'status':<10} {'rows':>10}  oldest")
        for status, count in state.counts.items():
            line = f"{status:<10} {count:>10,}"
            if status in oldest:
                line += f"  {format_age(oldest[status])}"
            if status == lifecycle.QUEUED and count:
                line += f"  ({state.waiting:,} waiting for a worker, {state.claimed:,} claimed)"
            self.stdout.write(line)
        self.stdout.write(f"{'total':<10} {sum(state.counts.values()):>10,}")
