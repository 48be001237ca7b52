"""The delivery dashboard: ``reverse("admin:cloudmails_dashboard")``.

For staff who may view deliveries. A period (the last 24 hours by the hour, the last 7
or 30 days or chosen dates by the day) and an alias; per bucket, the deliveries sent,
delivered, bounced and complained as a chart and a table; the delivery, bounce,
complaint, open and click rates, with a warning above ``BOUNCE_RATE_WARNING`` or
``COMPLAINT_RATE_WARNING``; the top bounce reasons and recipient domains; the
suppression list's size and what was added to it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from .. import rollup
from ..conf import app_settings
from . import charts, stats

PERIODS = {
    "24h": gettext_lazy("Last 24 hours"),
    "7d": gettext_lazy("Last 7 days"),
    "30d": gettext_lazy("Last 30 days"),
    "custom": gettext_lazy("Dates"),
}
DEFAULT_PERIOD = "7d"
MAX_DAYS = 366


def aliases() -> list[str]:
    return list(getattr(settings, "MAILERS", None) or {"default": None})


class PeriodForm(forms.Form):
    """The period and alias, from the query string (a GET form: no JavaScript)."""

    period = forms.ChoiceField(
        label=gettext_lazy("Period"), choices=list(PERIODS.items()), required=False
    )
    start = forms.DateField(
        label=gettext_lazy("From"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    end = forms.DateField(
        label=gettext_lazy("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    #: Any alias rows were sent with; the configured ones (and the one asked for) listed.
    alias = forms.CharField(label=gettext_lazy("Mailer alias"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = aliases()
        asked = self.data.get("alias") if self.is_bound else None
        if asked and asked not in names:
            names.append(asked)
        self.fields["alias"].widget = forms.Select(
            choices=[("", _("All")), *((name, name) for name in names)]
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("period") == "custom":
            start, end = data.get("start"), data.get("end")
            if not start or not end:
                raise forms.ValidationError(_("Choose both dates of the period."))
            if start > end:
                raise forms.ValidationError(_("The first date is after the last one."))
            if (end - start).days >= MAX_DAYS:
                raise forms.ValidationError(_("Choose at most %(days)d days.") % {"days": MAX_DAYS})
        return data

    def chosen(self) -> tuple[rollup.Period, str, str]:
        """The period chosen (the default when the form is not valid), its
        granularity and its label."""
        data = self.cleaned_data if self.is_valid() else {}
        choice = data.get("period") or DEFAULT_PERIOD
        alias = data.get("alias") or None
        zone = timezone.get_current_timezone()
        now = timezone.localtime(timezone.now(), zone)
        if choice == "24h":
            hour = now.replace(minute=0, second=0, microsecond=0)
            return (
                rollup.Period(hour - timedelta(hours=23), now, alias),
                stats.HOURLY,
                str(PERIODS[choice]),
            )
        if choice == "custom":
            start, end = data["start"], data["end"]
            label = f"{start:%Y-%m-%d} \u2013 {end:%Y-%m-%d}"
            return (
                rollup.Period(
                    stats.day_start(start, zone),
                    stats.day_start(end + timedelta(days=1), zone),
                    alias,
                ),
                stats.DAILY,
                label,
            )
        days = 7 if choice == "7d" else 30
        first = stats.day_start(now.date() - timedelta(days=days - 1), zone)
        return rollup.Period(first, now, alias), stats.DAILY, str(PERIODS[choice])


DELIVERY_PANELS = (
    charts.Panel(
        gettext_lazy("Sent and delivered"),
        (
            charts.Series("sent", gettext_lazy("sent")),
            charts.Series("delivered", gettext_lazy("delivered")),
        ),
    ),
    charts.Panel(
        gettext_lazy("Bounced and complained"),
        (
            charts.Series("bounced", gettext_lazy("bounced")),
            charts.Series("complained", gettext_lazy("complained")),
        ),
    ),
)
TABLE_COLUMNS = (
    ("total", gettext_lazy("created")),
    ("sent", gettext_lazy("sent")),
    ("delivered", gettext_lazy("delivered")),
    ("bounced", gettext_lazy("bounced")),
    ("complained", gettext_lazy("complained")),
    ("opened", gettext_lazy("opened")),
    ("clicked", gettext_lazy("clicked")),
)


class DashboardView(View):
    model_admin: Any = None

    def get(self, request: HttpRequest) -> HttpResponse:
        admin = self.model_admin
        if not admin.has_view_permission(request):
            raise PermissionDenied
        form = PeriodForm(request.GET or None)
        period, granularity, label = form.chosen()
        data = stats.gather(period, granularity)
        unit = _("hour") if granularity == stats.HOURLY else _("day")
        chart = charts.column_chart(
            title=_("Deliveries per %(unit)s, %(period)s") % {"unit": unit, "period": label},
            description=_(
                "Sent, delivered, bounced and complained, by the %(unit)s the message was "
                "created; the numbers are in the table below."
            )
            % {"unit": unit},
            labels=[bucket.label for bucket in data.buckets],
            values=[bucket.counts for bucket in data.buckets],
            panels=DELIVERY_PANELS,
            chart_id="cm-deliveries",
        )
        added = [sum(bucket.counts.values()) for bucket in data.suppressions_added]
        suppression_chart = charts.column_chart(
            title=_("Suppressions added per %(unit)s") % {"unit": unit},
            description=_("The numbers are in the table below."),
            labels=[bucket.label for bucket in data.suppressions_added],
            values=[{"added": count} for count in added],
            panels=(
                charts.Panel(
                    _("Added to the suppression list"),
                    (charts.Series("added", _("added")),),
                ),
            ),
            chart_id="cm-suppressions",
        )
        highest_reason = max((n for _r, n in data.top_reasons), default=0)
        highest_domain = max((n for _d, n in data.top_domains), default=0)
        context = {
            **admin.admin_site.each_context(request),
            "title": _("Delivery dashboard"),
            "opts": admin.model._meta,
            "form": form,
            "period_label": label,
            "period": period,
            "zone": timezone.get_current_timezone_name(),
            "stats": data,
            "unit": unit,
            "chart": chart,
            "suppression_chart": suppression_chart,
            "columns": [label for _name, label in TABLE_COLUMNS],
            "rows": [
                (bucket.label, [bucket.counts.get(name, 0) for name, _label in TABLE_COLUMNS])
                for bucket in data.buckets
            ],
            "totals_row": [data.totals.get(name, 0) for name, _label in TABLE_COLUMNS],
            "added_rows": [
                (bucket.label, count)
                for bucket, count in zip(data.suppressions_added, added, strict=True)
            ],
            "suppressions_added": sum(added),
            "top_reasons": [
                (reason, count, charts.share_bar(count, highest_reason, reason))
                for reason, count in data.top_reasons
            ],
            "top_domains": [
                (domain, count, charts.share_bar(count, highest_domain, domain))
                for domain, count in data.top_domains
            ],
            "bounce_threshold": app_settings.bounce_rate_warning,
            "complaint_threshold": app_settings.complaint_rate_warning,
            "media": admin.media,
        }
        return TemplateResponse(request, "admin/cloudmails/dashboard.html", context)
