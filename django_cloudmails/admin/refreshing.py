"""The admin's "Refresh status from the API": :func:`~.polling.refresh` on the rows chosen,
told row by row in the history and in a line or two on the page.

CloudMails is asked now (``GET /emails/{id}``) about each row with a message id,
whatever its polling schedule; the answer goes through the lifecycle as every poll's
does (a status only moves forward, a bounce is recorded as an event). The result reads
"2 now delivered, 1 still sent", then what could not be asked and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext, ngettext_lazy

from .. import lifecycle
from ..exceptions import CloudMailsConfigurationError, CloudMailsError, CloudMailsNotFound
from ..models import Delivery
from .outcomes import Outcome, about, fresh, seconds, state, tally

if TYPE_CHECKING:
    from ..polling import PollReport

RATE_LIMITED = ngettext_lazy(
    "%(count)d could not be asked: CloudMails is rate limiting, try again in %(wait)s.",
    "%(count)d could not be asked: CloudMails is rate limiting, try again in %(wait)s.",
    "count",
)
NO_MESSAGE_ID = ngettext_lazy(
    "%(count)d has no message id yet, so CloudMails has nothing to say about it (%(addresses)s).",
    "%(count)d have no message id yet, so CloudMails has nothing to say about them "
    "(%(addresses)s).",
    "count",
)
NOT_FOUND = ngettext_lazy(
    "%(count)d is unknown to CloudMails (%(addresses)s).",
    "%(count)d are unknown to CloudMails (%(addresses)s).",
    "count",
)
NO_ANSWER = ngettext_lazy(
    "%(count)d got no answer (%(error)s); status polling asks again later.",
    "%(count)d got no answer (%(error)s); status polling asks again later.",
    "count",
)
#: On the confirmation page.
LEFT_WITHOUT_ID = ngettext_lazy(
    "%(count)d has no message id yet and is left alone (%(addresses)s).",
    "%(count)d have no message id yet and are left alone (%(addresses)s).",
    "count",
)


def offered(row: Delivery) -> bool:
    """Whether a delivery's page offers the action: only the API's messages have a status
    there."""
    return bool(row.message_id)


def refresh_rows(rows: list[Delivery]) -> Outcome:
    # Imported here: the admin loads in every process that sets Django up (workers
    # too), and polling brings the webhook reader with it, which sending never needs.
    from ..polling import refresh

    before = {row.pk: row.status for row in rows}
    try:
        report = refresh(rows)
    except (CloudMailsConfigurationError, CloudMailsError) as error:
        return Outcome(summary="", errors=[_("Nothing was asked: %(error)s") % {"error": error}])
    now = fresh(rows)
    outcome = Outcome(summary="")
    phrases: list[tuple[tuple[int, int], str]] = []
    unasked: list[Delivery] = []
    no_id: list[Delivery] = []
    not_found: list[Delivery] = []
    unanswered: list[tuple[Delivery, CloudMailsError]] = []
    for row in rows:
        current = now.get(row.pk)
        if current is None or not current.message_id:
            no_id.append(row)
        elif row.pk not in report.answers:
            unasked.append(row)
        elif (failure := report.answers[row.pk]) is not None:
            if isinstance(failure, CloudMailsNotFound):
                not_found.append(current)
                outcome.changed.append((current, _("Asked CloudMails: it does not know it.")))
            else:
                unanswered.append((current, failure))
                outcome.changed.append(
                    (current, _("Asked CloudMails: no answer (%(error)s).") % {"error": failure})
                )
        else:
            old, new = before[row.pk], current.status
            rank = lifecycle.RANK.get(new, 0)
            if new != old:
                phrases.append(((0, rank), _("now %(status)s") % {"status": state(new)}))
                message = _("Refreshed from CloudMails: %(old)s, now %(new)s.")
            else:
                phrases.append(((1, rank), _("still %(status)s") % {"status": state(new)}))
                message = _("Refreshed from CloudMails: still %(new)s.")
            outcome.changed.append((current, message % {"old": state(old), "new": state(new)}))
    answered = len(rows) - len(unasked) - len(no_id) - len(not_found) - len(unanswered)
    if answered:
        outcome.summary = ngettext(
            "Asked CloudMails about %(count)d delivery: %(result)s.",
            "Asked CloudMails about %(count)d deliveries: %(result)s.",
            answered,
        ) % {"count": answered, "result": tally(phrases)}
    outcome.notes.extend(_notes(report, unasked, no_id, not_found, unanswered))
    return outcome


def _notes(
    report: PollReport,
    unasked: list[Delivery],
    no_id: list[Delivery],
    not_found: list[Delivery],
    unanswered: list[tuple[Delivery, CloudMailsError]],
) -> list[str]:
    wait = seconds(report.retry_after)
    error = unanswered[0][1] if unanswered else None
    groups: list[tuple[Any, list[Delivery], dict[str, Any]]] = [
        (RATE_LIMITED, unasked, {"wait": wait}),
        (NO_MESSAGE_ID, no_id, {}),
        (NOT_FOUND, not_found, {}),
        (NO_ANSWER, [row for row, _error in unanswered], {"error": error}),
    ]
    return [about(message, rows, **values) for message, rows, values in groups if rows]


def refresh_notes(rows: list[Delivery]) -> list[str]:
    """For the confirmation page."""
    notes = [
        _(
            "CloudMails is asked now about each of these messages; its answer only ever "
            "moves a status forward."
        )
    ]
    no_id = [row for row in rows if not row.message_id]
    if no_id:
        notes.append(about(LEFT_WITHOUT_ID, no_id))
    return notes
