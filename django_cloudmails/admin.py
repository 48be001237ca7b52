"""Admin pages: deliveries and events are written by the system and shown read-only;
the suppression list is the one thing staff edit (add by hand, delete to lift)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .models import Delivery, DeliveryEvent, Suppression
from .suppression import normalize_address


class ReadOnlyAdminMixin:
    """Rows written by the system: viewable (and deletable), never added or edited."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


#: Events shown on a delivery's page; the rest are one click away.
RECENT_EVENTS = 20


class AliasFilter(admin.SimpleListFilter):
    """The mailer aliases from settings: Django's default filter for a plain field would
    scan the whole table for its distinct values on every page."""

    title = _("mailer alias")
    parameter_name = "alias"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        aliases = getattr(settings, "MAILERS", None) or {"default": None}
        return [(alias, alias) for alias in aliases]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(alias=value) if value else queryset


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("subject", "to_email", "status", "created_at", "opens", "clicks")
    list_filter = ("status", AliasFilter)
    search_fields = ("to_email", "subject")
    ordering = ("-created_at",)
    # No date_hierarchy and no full count: both scan the whole table on every page.
    show_full_result_count = False
    readonly_fields = ("recent_events",)

    @admin.display(description=_("events"))
    def recent_events(self, obj: Delivery) -> str:
        """The newest events and a link to all of them: a message opened thousands of
        times would make an inline of every event too heavy a page."""
        events = list(obj.events.order_by("-occurred_at", "-pk")[:RECENT_EVENTS])
        if not events:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e.get_event_display(), e.occurred_at, e.recipient) for e in events),
        )
        url = reverse("admin:cloudmails_deliveryevent_changelist")
        return format_html(
            '<table>{}</table><p><a href="{}?delivery__id__exact={}">{}</a></p>',
            rows,
            url,
            obj.pk,
            _("All events of this delivery"),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """A message id or an address is found through its index; other terms scan."""
        term = search_term.strip()
        for field in ("message_id", "to_email"):
            exact = queryset.filter(**{field: term})
            if term and exact.exists():
                return exact, False
        return super().get_search_results(request, queryset, search_term)


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("event", "message_id", "recipient", "occurred_at", "delivery_link")
    list_filter = ("event",)
    search_fields = ("=message_id", "=dedupe_key", "recipient")
    # Newest received first, through the primary key: occurred_at has no index.
    ordering = ("-pk",)
    show_full_result_count = False
    list_select_related = ("delivery",)

    @admin.display(description=_("delivery"))
    def delivery_link(self, obj: DeliveryEvent) -> str:
        if obj.delivery_id is None:
            return "-"
        url = reverse("admin:cloudmails_delivery_change", args=[obj.delivery_id])
        return format_html('<a href="{}">{}</a>', url, obj.delivery)


class SuppressionForm(forms.ModelForm):  # type: ignore[type-arg]
    """Normalizes the address before the uniqueness check, so case never duplicates."""

    class Meta:
        model = Suppression
        fields = ("address", "reason")

    def clean_address(self) -> str:
        return normalize_address(self.cleaned_data["address"])


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Deleting a suppression lifts it; adding one by hand blocks an address."""

    form = SuppressionForm
    list_display = ("address", "reason", "created_at", "source_event")
    list_filter = ("reason",)
    search_fields = ("address",)
    ordering = ("-created_at",)
    fields = ("address", "reason", "source_event", "created_at")
    readonly_fields = ("source_event", "created_at")
    show_full_result_count = False
    list_select_related = ("source_event",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return ("address", "reason", *self.readonly_fields)
        return self.readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"reason": Suppression.Reason.MANUAL, **super().get_changeform_initial_data(request)}
