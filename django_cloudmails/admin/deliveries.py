"""The delivery list and a delivery's page.

The list fits a 1280 px window: recipient, subject, status (a badge that reads as
text), sent and delivered times, opens/clicks and a short bounce reason. It is ordered
by ``created_at`` through its index and never counted (:mod:`.paging`); every filter is
answered through an index (:mod:`.filters`). Columns do not sort: only the creation
order has an index, and sorting a million rows by another column takes seconds.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import truncatechars
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import Delivery
from . import actions, dashboard, delivery_page
from .display import badge, moment
from .filters import AliasFilter, BatchFilter, CreatedFilter, TagFilter
from .paging import NoCountChangeList, paginator_for
from .preview import preview_response

#: Columns the list never loads (a payload can hold megabytes of attachments).
LIST_DEFERRED = ("payload", "metadata", "last_error")
BOUNCE_REASON_LENGTH = 40


class ReadOnlyAdminMixin:
    """Rows written by the system: viewable (and deletable), never added or edited."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryChangeList(NoCountChangeList):
    deferred = LIST_DEFERRED


@admin.register(Delivery)
class DeliveryAdmin(
    delivery_page.DeliveryPage,
    ReadOnlyAdminMixin,
    admin.ModelAdmin,  # type: ignore[type-arg]
):
    list_display = (
        "recipient",
        "subject_column",
        "status_column",
        "sent_column",
        "delivered_column",
        "engagement",
        "bounce_column",
    )
    list_display_links = ("recipient",)
    list_filter = ("status", CreatedFilter, AliasFilter, TagFilter, BatchFilter)
    search_fields = ("to_email", "subject")
    ordering = ("-created_at",)
    sortable_by = ()
    list_per_page = 100
    list_max_show_all = 0
    show_full_result_count = False
    # Django shows each only to those with its permission (has_<permission>_permission).
    actions = [actions.bulk_action(action) for action in actions.ROW_ACTIONS]
    fieldsets = delivery_page.fieldsets()  # type: ignore[assignment]
    readonly_fields = delivery_page.readonly_fields()

    class Media:
        css = {"all": ("cloudmails/admin.css",)}

    # The list.

    @admin.display(description=_("recipient"))
    def recipient(self, obj: Delivery) -> str:
        return obj.to_email

    @admin.display(description=_("subject"))
    def subject_column(self, obj: Delivery) -> SafeString:
        return format_html('<span class="cm-clip" title="{}">{}</span>', obj.subject, obj.subject)

    @admin.display(description=_("status"))
    def status_column(self, obj: Delivery) -> SafeString:
        if obj.resent_from_id is None:
            return badge(obj.status)
        return format_html('{} <span class="cm-resend">{}</span>', badge(obj.status), _("resend"))

    @admin.display(description=_("sent"))
    def sent_column(self, obj: Delivery) -> SafeString | str:
        return moment(obj.sent_at, short=True)

    @admin.display(description=_("delivered"))
    def delivered_column(self, obj: Delivery) -> SafeString | str:
        return moment(obj.delivered_at, short=True)

    @admin.display(description=_("opens / clicks"))
    def engagement(self, obj: Delivery) -> str:
        return f"{obj.opens} / {obj.clicks}"

    @admin.display(description=_("bounce"))
    def bounce_column(self, obj: Delivery) -> SafeString | str:
        if not obj.bounce_reason:
            return ""
        return format_html(
            '<span title="{}">{}</span>',
            obj.bounce_reason,
            truncatechars(obj.bounce_reason, BOUNCE_REASON_LENGTH),
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[DeliveryChangeList]:
        return DeliveryChangeList

    def get_paginator(
        self, request: HttpRequest, queryset: Any, per_page: int, *args: Any, **kwargs: Any
    ) -> Any:
        return paginator_for(request, queryset, per_page)

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

    # A delivery's page.

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return delivery_page.fieldsets_for(obj) if obj is not None else self.fieldsets

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            setattr(obj, delivery_page.REMOTE_IMAGES, request.GET.get("remote_images") == "1")
        return obj

    def render_change_form(  # noqa: PLR0917 - Django's signature
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None:
            context["row_actions"] = [
                (action, reverse(f"admin:cloudmails_delivery_{action.name}", args=[obj.pk]))
                for action in actions.permitted_actions(request)
                if action.offered(obj)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        # The preview iframe may show our preview URL and nothing else, even after a
        # link inside it is followed.
        response.setdefault("Content-Security-Policy", "frame-src 'self'")
        return response

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        urls = [
            path(
                "dashboard/",
                wrap(dashboard.DashboardView.as_view(model_admin=self)),
                name="cloudmails_dashboard",
            ),
            path(
                "<path:object_id>/preview/",
                wrap(self.preview_view),
                name="cloudmails_delivery_preview",
            ),
        ]
        urls += [
            path(
                f"<path:object_id>/{action.name}/",
                wrap(self.row_action_view),
                {"name": action.name},
                name=f"cloudmails_delivery_{action.name}",
            )
            for action in actions.ROW_ACTIONS
        ]
        return urls + super().get_urls()

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        delivery = get_object_or_404(Delivery, pk=self._pk(object_id))
        if not self.has_view_permission(request, delivery):
            return HttpResponse(status=403)
        return preview_response(request, delivery)

    def row_action_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """One row's action: its confirmation page, then (POST) the work."""
        action = next(a for a in actions.ROW_ACTIONS if a.name == name)
        delivery = get_object_or_404(Delivery, pk=self._pk(object_id))
        if not (action.permitted(request) and self.has_view_permission(request, delivery)):
            return HttpResponse(status=403)
        if request.method != "POST":
            return actions.confirmation(self, request, action, [delivery])
        outcome = actions.perform(self, request, action, [delivery])
        target = outcome.redirect_to or delivery
        return HttpResponseRedirect(reverse("admin:cloudmails_delivery_change", args=[target.pk]))

    def _pk(self, object_id: str) -> Any:
        pk = delivery_pk(object_id)
        if pk is None:  # a malformed id: as in Django's own views, a 404
            raise Http404(object_id)
        return pk


def _permission(action: actions.RowAction) -> Any:
    def has_permission(self: DeliveryAdmin, request: HttpRequest) -> bool:
        return action.permitted(request)

    return has_permission


for _action in actions.ROW_ACTIONS:
    setattr(DeliveryAdmin, f"has_{_action.permission}_permission", _permission(_action))


def delivery_pk(value: str) -> Any:
    """The Delivery primary key ``value`` stands for; None when it is malformed."""
    try:
        return Delivery._meta.pk.to_python(value)
    except ValidationError:
        return None
