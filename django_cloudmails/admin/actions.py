"""Actions on deliveries, each behind its own permission and a confirmation page, each
logged in the admin history (LogEntry), in bulk on the list and one by one on a
delivery's page: refresh the status from the API (:mod:`.refreshing`), retry rows whose
outcome is unknown (:mod:`.retrying`), resend.

An action is a :class:`RowAction`: its name, the permission it needs
(``cloudmails.<permission>_delivery``, declared in ``Delivery.Meta.permissions``), the
confirmation's words, and a function from the selected rows to an :class:`Outcome`.
:data:`ROW_ACTIONS` lists them; the delivery admin builds its actions, buttons and URLs
from that list, so an action is one more entry there and its permission in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from .. import lifecycle, resending
from ..models import Delivery
from . import refreshing, retrying
from .outcomes import Outcome

#: Rows one action may act on (a page of the list holds 100).
LIMIT = 1000


@dataclass(frozen=True)
class RowAction:
    name: str
    #: ``resend`` -> the ``cloudmails.resend_delivery`` permission.
    permission: str
    label: Any
    question: Any
    run: Callable[[list[Delivery]], Outcome]
    #: Notes for the confirmation page about the rows chosen.
    notes: Callable[[list[Delivery]], list[str]] = lambda rows: []
    #: Whether a delivery's page offers the action (its URL answers for any row).
    offered: Callable[[Delivery], bool] = lambda row: True
    #: The button's words on a delivery's page (default: ``label``).
    button: Any = None

    def permitted(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"cloudmails.{self.permission}_delivery"))


def resend_rows(rows: list[Delivery]) -> Outcome:
    report = resending.resend(rows)
    outcome = Outcome(
        summary=ngettext(
            "Resent %(count)d delivery as a new one.",
            "Resent %(count)d deliveries as new ones.",
            len(report.resent),
        )
        % {"count": len(report.resent)},
        refused=report.refused,
        errors=[str(error) for error in report.errors],
    )
    for original, new in report.resent:
        outcome.changed.append((original, _("Resent as %(id)s.") % {"id": new.pk}))
        outcome.added.append((new, _("Resend of %(id)s.") % {"id": original.pk}))
    return outcome


def resend_notes(rows: list[Delivery]) -> list[str]:
    unknown = [row.to_email for row in rows if row.status == lifecycle.UNKNOWN]
    notes = [
        _(
            "Each resend is a new message with a new Idempotency-Key: the recipient may "
            "receive the email twice."
        )
    ]
    if unknown:
        notes.append(
            _(
                "The outcome of the first sending is unknown for %(addresses)s: the "
                "original may still be delivered. “Retry unknown outcome” settles it "
                "without sending a second copy."
            )
            % {"addresses": ", ".join(unknown)}
        )
    return notes


RESEND = RowAction(
    name="resend",
    permission="resend",
    label=gettext_lazy("Resend"),
    question=gettext_lazy("Send these messages again, each as a new delivery?"),
    run=resend_rows,
    notes=resend_notes,
)

REFRESH = RowAction(
    name="refresh",
    permission="refresh",
    label=gettext_lazy("Refresh status from the API"),
    button=gettext_lazy("Refresh status"),
    question=gettext_lazy("Ask CloudMails now for the status of these messages?"),
    run=refreshing.refresh_rows,
    notes=refreshing.refresh_notes,
    offered=refreshing.offered,
)

RETRY = RowAction(
    name="retry",
    permission="retry",
    label=gettext_lazy("Retry unknown outcome"),
    question=gettext_lazy("Settle these messages whose send outcome is unknown, now?"),
    run=retrying.retry_rows,
    notes=retrying.retry_notes,
    offered=retrying.offered,
)

#: Every action on deliveries, in menu order.
ROW_ACTIONS: tuple[RowAction, ...] = (REFRESH, RETRY, RESEND)


def permitted_actions(request: HttpRequest) -> list[RowAction]:
    return [action for action in ROW_ACTIONS if action.permitted(request)]


def confirmation(
    model_admin: ModelAdmin[Any], request: HttpRequest, action: RowAction, rows: Sequence[Any]
) -> TemplateResponse:
    """The page asking to confirm ``action`` on ``rows`` (bulk: the form posts back to
    the list with ``post=yes``; one row: to the row's action URL)."""
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": action.label,
        "action": action,
        "rows": rows,
        "notes": action.notes(list(rows)),
        "opts": opts,
        "bulk": request.POST.get("action") == action.name,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": model_admin.media,
    }
    return TemplateResponse(request, "admin/cloudmails/delivery/action_confirmation.html", context)


def perform(
    model_admin: ModelAdmin[Any], request: HttpRequest, action: RowAction, rows: list[Delivery]
) -> Outcome:
    """Run ``action``, log each row in the admin history, and say what happened."""
    outcome = action.run(rows)
    for row, message in outcome.changed:
        model_admin.log_change(request, row, message)
    for row, message in outcome.added:
        model_admin.log_addition(request, row, message)
    if outcome.summary and (outcome.changed or outcome.added):
        model_admin.message_user(request, outcome.summary, outcome.level)
    for note in outcome.notes:
        model_admin.message_user(request, note, messages.WARNING)
    for row, why in outcome.refused:
        model_admin.message_user(
            request,
            _("Not done for %(address)s: %(why)s.") % {"address": row.to_email, "why": why},
            messages.WARNING,
        )
    for error in outcome.errors:
        model_admin.message_user(request, error, messages.ERROR)
    return outcome


def bulk_action(action: RowAction) -> Callable[..., HttpResponse | None]:
    """The Django admin action for ``action``: the confirmation page, then the work."""

    def run(
        model_admin: ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        if not action.permitted(request):
            model_admin.message_user(request, _("You may not do this."), messages.ERROR)
            return None
        rows = list(queryset.defer(None)[: LIMIT + 1])  # the list leaves payloads out
        if len(rows) > LIMIT:
            model_admin.message_user(
                request,
                _("Choose at most %(limit)d deliveries at a time.") % {"limit": LIMIT},
                messages.ERROR,
            )
            return None
        if request.POST.get("post") != "yes":
            return confirmation(model_admin, request, action, rows)
        perform(model_admin, request, action, rows)
        return None

    run.__name__ = action.name
    run.allowed_permissions = (action.permission,)  # type: ignore[attr-defined]
    run.short_description = action.label  # type: ignore[attr-defined]
    return run
