"""The webhook events list: newest first, and, when it is filtered to one delivery (the
link on a delivery's page), a heading saying which, with a link back."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import Delivery, DeliveryEvent
from .deliveries import ReadOnlyAdminMixin, delivery_pk
from .display import admin_link, moment

#: The query parameter of "All events of this delivery".
DELIVERY_PARAM = "delivery__id__exact"


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("event", "occurred", "recipient", "message_id", "delivery_link")
    list_filter = ("event",)
    search_fields = ("=message_id", "=dedupe_key", "recipient")
    # Newest received first, through the primary key: occurred_at has no index.
    ordering = ("-pk",)
    sortable_by = ()
    show_full_result_count = False
    list_select_related = ("delivery",)

    class Media:
        css = {"all": ("cloudmails/admin.css",)}

    @admin.display(description=_("occurred"))
    def occurred(self, obj: DeliveryEvent) -> SafeString | str:
        return moment(obj.occurred_at, short=True)

    @admin.display(description=_("delivery"))
    def delivery_link(self, obj: DeliveryEvent) -> SafeString | str:
        delivery = obj.delivery
        if delivery is None:
            return "-"
        return admin_link(
            "delivery_change",
            delivery.pk,
            delivery.subject or delivery.to_email,
            title=f"{delivery.subject} ({delivery.to_email})",
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The joined delivery's payload could be megabytes: only its names are shown.
        rows: QuerySet[Any] = super().get_queryset(request)
        light: QuerySet[Any] = rows.defer(
            "delivery__payload", "delivery__metadata", "delivery__last_error"
        )
        return light

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        delivery_id = request.GET.get(DELIVERY_PARAM)
        if delivery_id:
            delivery = (
                Delivery.objects.filter(pk=delivery_pk(delivery_id))
                .only("pk", "subject", "to_email", "status")
                .first()
            )
            context["filtered_delivery"] = delivery
            context["filtered_delivery_id"] = delivery_id
        return super().changelist_view(request, context)
