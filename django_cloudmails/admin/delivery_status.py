"""The "Status and timeline" group of a delivery's page: the status and, while the
send outcome is unknown, what that means and what settles it; the timeline of the row's
own moments and its newest events; the error, the recovery tries and the resends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import lifecycle
from ..conf import app_settings
from ..models import Delivery, DeliveryEvent
from .display import badge, moment, zone_name

#: Events shown on a delivery's page; the rest are one click away.
RECENT_EVENTS = 20


@dataclass(frozen=True)
class Step:
    """One line of the timeline."""

    at: datetime
    what: str
    detail: str = ""


def milestones(delivery: Delivery) -> list[Step]:
    """The moments the row itself records, as timeline steps."""
    steps = [Step(delivery.created_at, _("written (queued)"))]
    facts: list[tuple[datetime | None, str, str]] = [
        (delivery.attempt_started_at, _("request started"), ""),
        (
            delivery.sent_at,
            _("accepted by the API"),
            delivery.message_id or "",
        ),
        (delivery.failed_at, _("failed"), delivery.last_error),
        (delivery.body_purged_at, _("body purged"), ""),
    ]
    steps.extend(Step(at, what, detail) for at, what, detail in facts if at is not None)
    return steps


def event_step(event: DeliveryEvent) -> Step:
    payload = event.payload if isinstance(event.payload, dict) else {}
    detail = str(payload.get("bounce_reason") or payload.get("url") or "")
    return Step(
        event.occurred_at, _("event: %(event)s") % {"event": event.get_event_display()}, detail
    )


class StatusParts:
    """The readonly parts of the status group (a mixin of the delivery admin)."""

    @admin.display(description=gettext_lazy("status"))
    def status_badge(self, obj: Delivery) -> SafeString:
        return badge(obj.status)

    @admin.display(description=gettext_lazy("what this means"))
    def outcome_note(self, obj: Delivery) -> SafeString | str:
        """While no answer says what became of the message: why, and what settles it."""
        if obj.status == lifecycle.UNKNOWN:
            lines = [
                _(
                    "A request carrying this message may have reached CloudMails, but no "
                    "usable answer came back: CloudMails may or may not have accepted it."
                ),
                *_settling(obj),
            ]
        elif obj.status == lifecycle.QUEUED and obj.attempt_started_at is not None:
            after = obj.attempt_started_at + timedelta(seconds=app_settings.recover_after)
            lines = [
                _(
                    "Its request started and no answer was stored yet: it is being sent, or "
                    "the process sending it stopped."
                ),
                format_html(_("If it is still queued at {}, recovery takes it up."), moment(after)),
            ]
        elif obj.status == lifecycle.QUEUED:
            lines = [_("Written, and waiting for a worker to send it.")]
        else:
            return "-"
        paragraphs = format_html_join("", "<p>{}</p>", ((line,) for line in lines))
        return format_html('<div class="cm-outcome">{}</div>', paragraphs)

    @admin.display(description=gettext_lazy("recovery tries"))
    def recovery_tries(self, obj: Delivery) -> str:
        return _("%(tries)d of %(most)d") % {
            "tries": obj.recoveries,
            "most": app_settings.recover_attempts,
        }

    @admin.display(description=gettext_lazy("timeline"))
    def timeline(self, obj: Delivery) -> SafeString:
        total = obj.events.count()
        events = list(obj.events.order_by("-occurred_at", "-pk")[:RECENT_EVENTS])
        steps = sorted([*milestones(obj), *map(event_step, events)], key=lambda step: step.at)
        lines = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((moment(step.at), step.what, step.detail) for step in steps),
        )
        url = reverse("admin:cloudmails_deliveryevent_changelist")
        note = (
            _("The %(shown)s newest of %(total)s events are shown.")
            % {"shown": len(events), "total": total}
            if total > len(events)
            else ""
        )
        link = (
            format_html(
                ' <a href="{}?delivery__id__exact={}">{}</a>',
                url,
                obj.pk,
                _("All events of this delivery"),
            )
            if total
            else ""
        )
        return format_html(
            '<p class="cm-zone">{}</p><table class="cm-timeline">{}</table><p>{}{}</p>',
            _("Times in %(zone)s") % {"zone": zone_name()},
            lines,
            note,
            link,
        )

    @admin.display(description=gettext_lazy("error"))
    def problem(self, obj: Delivery) -> SafeString | str:
        if not (obj.error_code or obj.last_error):
            return "-"
        return format_html(
            '<p class="cm-error"><strong>{}</strong> {}</p>', obj.error_code, obj.last_error
        )

    @admin.display(description=gettext_lazy("resends"))
    def resend_links(self, obj: Delivery) -> SafeString | str:
        parts = []
        if obj.resent_from_id is not None:
            parts.append(
                format_html(
                    '{} <a href="{}">{}</a>',
                    _("A resend of"),
                    reverse("admin:cloudmails_delivery_change", args=[obj.resent_from_id]),
                    obj.resent_from_id,
                )
            )
        resends = list(obj.resends.only("pk", "status", "created_at").order_by("created_at"))
        if resends:
            links = format_html_join(
                ", ",
                '<a href="{}">{}</a> {}',
                (
                    (
                        reverse("admin:cloudmails_delivery_change", args=[r.pk]),
                        r.pk,
                        badge(r.status),
                    )
                    for r in resends
                ),
            )
            parts.append(format_html("{} {}", _("Resent as"), links))
        if not parts:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}", ((part,) for part in parts))


def _settling(row: Delivery) -> list[str]:
    """What settles an unknown row, and how far recovery got with it."""
    if row.message_id:
        return [_("Its message id is known: status polling asks CloudMails about it.")]
    most = app_settings.recover_attempts
    if row.recoveries >= most:
        tries = _(
            "Recovery tried %(tries)d times and stopped: now only “Retry unknown outcome” "
            "or an event settles it."
        ) % {"tries": row.recoveries}
    else:
        tries = _(
            "Recovery has tried %(tries)d of %(most)d times; it takes a row up once its "
            "last attempt is %(after)d minutes old. “Retry unknown outcome” does it now."
        ) % {"tries": row.recoveries, "most": most, "after": app_settings.recover_after // 60}
    return [
        _(
            "It settles by itself: an event naming it, or recovery, which sends it again "
            "under the same Idempotency-Key so that CloudMails answers from its record "
            "instead of sending it twice."
        ),
        tries,
    ]
