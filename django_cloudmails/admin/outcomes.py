"""What an admin action did, in words a support person reads: the result of a run, the
rows it changed for the admin history, and grouped notes on the rows it left alone.

Actions describe rows by their status's name (``still sent``, ``now delivered``) and
group them by what happened (``2 now delivered, 1 still sent``), so a run over a page of
100 rows says so in a line or two rather than a message per row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import lifecycle
from ..limits import ROWS_PER_STATEMENT
from ..models import Delivery

#: How a status reads after "now" or "still" where its label does not.
STATE_WORDS = {lifecycle.UNKNOWN: gettext_lazy("of unknown outcome")}


@dataclass
class Outcome:
    """What an action did: for the messages shown and the admin history."""

    summary: str
    #: Rows acted on, with the history message of each.
    changed: list[tuple[Delivery, str]] = field(default_factory=list)
    #: Rows the action created, with the history message of each.
    added: list[tuple[Delivery, str]] = field(default_factory=list)
    #: Rows left alone, and why (a message each).
    refused: list[tuple[Delivery, str]] = field(default_factory=list)
    #: Rows left alone or not done, told in groups (a warning each).
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The summary's message level.
    level: int = messages.SUCCESS

    @property
    def redirect_to(self) -> Delivery | None:
        """Where a one-row action leads: the row it created, if one."""
        return self.added[0][0] if len(self.added) == 1 else None


def state(status: str) -> str:
    """A status as it reads in a sentence ("delivered", "of unknown outcome")."""
    if status in STATE_WORDS:
        return str(STATE_WORDS[status])
    if status in Delivery.Status.values:
        return str(Delivery.Status(status).label)
    return status


def tally(phrases: Iterable[tuple[Any, str]]) -> str:
    """``[(order, "now delivered"), ...]`` as "2 now delivered, 1 still sent": equal
    phrases counted together, in ``order``."""
    counts = Counter(phrases)
    ordered = sorted(counts.items(), key=lambda item: item[0][0])
    return ", ".join(f"{count} {phrase}" for (_order, phrase), count in ordered)


def addresses(rows: Sequence[Delivery], shown: int = 3) -> str:
    """The first recipients of ``rows``, and how many more."""
    names = ", ".join(row.to_email for row in rows[:shown])
    if len(rows) <= shown:
        return names
    return _("%(names)s and %(more)d more") % {"names": names, "more": len(rows) - shown}


def about(message: Any, rows: Sequence[Delivery], **values: Any) -> str:
    """``message`` (an ``ngettext_lazy(..., "count")``) about ``rows``: their number as
    ``count`` chooses the plural, ``addresses`` names the first of them."""
    return str(message % {"count": len(rows), "addresses": addresses(rows), **values})


def fresh(rows: Sequence[Delivery]) -> dict[Any, Delivery]:
    """The rows as they are in the database now, by primary key (payloads left out)."""
    pks = [row.pk for row in rows]
    found: dict[Any, Delivery] = {}
    for start in range(0, len(pks), ROWS_PER_STATEMENT):
        chunk = Delivery.objects.filter(pk__in=pks[start : start + ROWS_PER_STATEMENT])
        found.update((row.pk, row) for row in chunk.defer("payload", "metadata"))
    return found


def seconds(value: float | None) -> str:
    """A wait as a person says it: "30 s", "2 min"; "a moment" when not known."""
    if value is None:
        return _("a moment")
    if value < 90:
        return _("%(count)d s") % {"count": max(round(value), 1)}
    return _("%(count)d min") % {"count": round(value / 60)}
