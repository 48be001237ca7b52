"""The admin's "Retry unknown outcome": :func:`recovery.retry` on the rows chosen whose
send outcome is unknown, told row by row in the history and in a line or two on the page.

A row qualifies when no message id came back for it and either its status is
``unknown`` or it is ``queued`` with an attempt started longer than ``RECOVER_AFTER``
ago (a process died while sending it). Others are left alone with the reason: a
``queued`` row whose attempt is younger is being sent right now, and a retry then would
race its worker. Recovery settles each row by an event naming it, or sends its request
again under the stored Idempotency-Key; the result reads "1 accepted by CloudMails, 1
settled by an event, 1 still unknown", then what was left alone and why.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, ngettext_lazy

from .. import claims, lifecycle, recovery
from ..conf import app_settings
from ..exceptions import CloudMailsConfigurationError, CloudMailsError
from ..models import Delivery
from .outcomes import Outcome, about, fresh, seconds, state, tally

#: Why a row is not retried, by the reasons :func:`unretryable` gives.
KNOWN = "known"
ACCEPTED_ALREADY = "accepted"
WAITING = "waiting"
SENDING = "sending"
HELD = "held"
LEFT_ALONE = {
    KNOWN: gettext_lazy("outcome already known"),
    ACCEPTED_ALREADY: gettext_lazy(
        "already accepted by CloudMails (its message id is known): refresh the status instead"
    ),
    WAITING: gettext_lazy("not sent yet, waiting for a worker"),
    SENDING: gettext_lazy("being sent right now"),
    HELD: gettext_lazy("held by another recovery run; try again in %(wait)s"),
}
LEFT = ngettext_lazy(
    "%(count)d left alone (%(addresses)s): %(why)s.",
    "%(count)d left alone (%(addresses)s): %(why)s.",
    "count",
)
STILL = ngettext_lazy(
    "%(count)d is still of unknown outcome (%(error)s): an event naming it or the next "
    "recovery run settles it.",
    "%(count)d are still of unknown outcome (%(error)s): an event naming them or the next "
    "recovery run settles them.",
    "count",
)
#: On the confirmation page.
NOT_UNKNOWN = ngettext_lazy(
    "%(count)d is not of unknown outcome and is left alone (%(addresses)s).",
    "%(count)d are not of unknown outcome and are left alone (%(addresses)s).",
    "count",
)
#: Results that settle a row.
SETTLED = (recovery.ACCEPTED, recovery.EVIDENCED)
#: The results of a retry, in the order the summary gives them.
RESULTS = {
    recovery.ACCEPTED: gettext_lazy("accepted by CloudMails"),
    recovery.EVIDENCED: gettext_lazy("settled by an event"),
    recovery.REFUSED: gettext_lazy("refused by CloudMails"),
    recovery.STILL_UNKNOWN: gettext_lazy("still unknown"),
}


def unretryable(row: Delivery) -> str | None:
    """Why ``row`` is not retried (:data:`KNOWN`...), or None when it qualifies."""
    if row.message_id:
        return ACCEPTED_ALREADY if row.status == lifecycle.UNKNOWN else KNOWN
    if row.status == lifecycle.UNKNOWN:
        return None
    if row.status != lifecycle.QUEUED:
        return KNOWN
    if row.attempt_started_at is None:
        return WAITING
    stuck = timezone.now() - timedelta(seconds=app_settings.recover_after)
    return None if row.attempt_started_at < stuck else SENDING


def offered(row: Delivery) -> bool:
    """Whether a delivery's page offers the action."""
    return unretryable(row) is None


def retry_rows(rows: list[Delivery]) -> Outcome:
    left: dict[str, list[Delivery]] = {}
    candidates = []
    for row in rows:
        reason = unretryable(row)
        if reason is None:
            candidates.append(row)
        else:
            left.setdefault(reason, []).append(row)
    outcome = Outcome(summary="")
    if candidates:
        try:
            report = recovery.retry(candidates)
        except (CloudMailsConfigurationError, CloudMailsError) as error:
            outcome.errors.append(_("Nothing was retried: %(error)s") % {"error": error})
            return outcome
        _tell(outcome, candidates, report, left)
    for reason, group in left.items():
        why = LEFT_ALONE[reason] % {"wait": seconds(_lease_left(group))}
        outcome.notes.append(about(LEFT, group, why=why))
    return outcome


def _lease_left(rows: list[Delivery]) -> float:
    """Seconds until the last of the recovery claims on ``rows`` runs out."""
    started = [row.attempt_started_at for row in rows if row.attempt_started_at is not None]
    if not started:
        return claims.LEASE
    age = (timezone.now() - max(started)).total_seconds()
    return max(claims.LEASE - age, 1.0)


def _tell(
    outcome: Outcome,
    candidates: list[Delivery],
    report: recovery.RecoveryReport,
    left: dict[str, list[Delivery]],
) -> None:
    """The summary and the history of the rows recovery took up; the others into ``left``."""
    now = fresh(candidates)
    results = []
    order = list(RESULTS)
    for row in candidates:
        result = report.outcomes.get(row.pk)
        current = now.get(row.pk, row)
        if result is None or result not in RESULTS:
            # Claimed by another run first, or settled meanwhile (an event, a worker).
            moved = current.message_id or current.status not in claims.CLAIMABLE
            left.setdefault(KNOWN if moved else HELD, []).append(current)
            continue
        results.append(result)
        outcome.changed.append((current, _history(result, current)))
    phrases = [(order.index(result), str(RESULTS[result])) for result in results]
    if not set(results) & set(SETTLED):
        outcome.level = messages.WARNING  # nothing was settled
    if phrases:
        outcome.summary = ngettext(
            "Retried %(count)d delivery whose outcome was unknown: %(result)s.",
            "Retried %(count)d deliveries whose outcome was unknown: %(result)s.",
            len(phrases),
        ) % {"count": len(phrases), "result": tally(phrases)}
    still = [row for row, _message in outcome.changed if row.status == lifecycle.UNKNOWN]
    if still:
        outcome.notes.append(about(STILL, still, error=still[0].last_error or _("no answer")))


def _history(result: str, row: Delivery) -> str:
    if result == recovery.ACCEPTED:
        return _("Retried: accepted by CloudMails as %(id)s.") % {"id": row.message_id}
    if result == recovery.EVIDENCED:
        return _("Retried: settled by an event naming it (%(id)s).") % {"id": row.message_id}
    if result == recovery.REFUSED:
        return _("Retried: refused by CloudMails, now %(status)s (%(error)s).") % {
            "status": state(row.status),
            "error": row.last_error,
        }
    return _("Retried: still unknown (%(error)s).") % {"error": row.last_error or _("no answer")}


def retry_notes(rows: list[Delivery]) -> list[str]:
    """For the confirmation page."""
    notes = [
        _(
            "Each message is first looked for among the events received; the others are "
            "sent again under their stored Idempotency-Key, so CloudMails answers from its "
            "record for any it accepted already instead of sending it twice."
        )
    ]
    left = [row for row in rows if unretryable(row) is not None]
    if left:
        notes.append(about(NOT_UNKNOWN, left))
    return notes
