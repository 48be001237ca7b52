"""The suppression list: add by hand, import a CSV file, export as CSV, delete to lift.

Each suppression links to the event that caused it and that event's delivery. Exports
follow the list's filters and search. Imports take any CSV whose first column (or the
column headed ``address``) holds addresses; each is normalized (bare, lower case), and
invalid lines and addresses already on the list are counted, not fatal.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..addresses import parse_address
from ..exceptions import CloudMailsInvalidAddress
from ..models import Suppression
from ..suppression import normalize_address
from .display import admin_link, moment

#: Largest file an import reads (a million addresses fit).
MAX_IMPORT_BYTES = 50 * 1024 * 1024
#: Invalid lines an import names in its message (it counts them all).
SHOWN_INVALID = 5
CREATE_CHUNK = 1000
EXPORT_COLUMNS = ("address", "reason", "created_at", "source_event", "delivery")
#: A spreadsheet runs a cell starting with these as a formula; exports quote them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class SuppressionForm(forms.ModelForm):  # type: ignore[type-arg]
    """Normalizes the address before the uniqueness check, so case never duplicates."""

    class Meta:
        model = Suppression
        fields = ("address", "reason")

    def clean_address(self) -> str:
        return normalize_address(self.cleaned_data["address"])


class ImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy(
            "Addresses in the first column, or in a column headed “address”; a “reason” "
            "column is read when its values are reasons of the list."
        ),
    )
    reason = forms.ChoiceField(
        label=gettext_lazy("Reason"),
        choices=Suppression.Reason.choices,
        initial=Suppression.Reason.MANUAL,
        help_text=gettext_lazy("For the rows that give none."),
    )


@dataclass
class ImportResult:
    added: int = 0
    already: int = 0
    duplicates: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


def parse_rows(lines: Iterable[list[str]], default_reason: str) -> Iterator[tuple[int, str, str]]:
    """``(line number, cell, reason)`` for each data row: the address column is the one
    headed ``address`` when the first row is a header, else the first."""
    reasons = set(Suppression.Reason.values)
    column, reason_column = 0, None
    for number, row in enumerate(lines, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1:
            header = [cell.lower() for cell in cells]
            if "address" in header:
                column = header.index("address")
                reason_column = header.index("reason") if "reason" in header else None
                continue
        cell = cells[column] if column < len(cells) else ""
        given = (
            cells[reason_column] if reason_column is not None and reason_column < len(cells) else ""
        )
        yield number, cell, given if given in reasons else default_reason


def unquote(cell: str) -> str:
    """A cell as written by the export (which quotes formula-like cells with ')."""
    if cell.startswith("'") and cell[1:2] in FORMULA_STARTS:
        return cell[1:]
    return cell


def import_addresses(lines: Iterable[list[str]], default_reason: str) -> ImportResult:
    """Add every valid, new address of ``lines`` to the list."""
    result = ImportResult()
    wanted: dict[str, str] = {}
    for number, cell, reason in parse_rows(lines, default_reason):
        try:
            parsed = parse_address(unquote(cell), field="address")
        except CloudMailsInvalidAddress:
            result.invalid.append((number, cell))
            continue
        address = normalize_address(parsed.addr_spec)
        if address in wanted:
            result.duplicates += 1
        else:
            wanted[address] = reason
    addresses = list(wanted)
    for start in range(0, len(addresses), CREATE_CHUNK):
        chunk = addresses[start : start + CREATE_CHUNK]
        known = set(Suppression.objects.filter(address__in=chunk).values_list("address", flat=True))
        result.already += len(known)
        new = [Suppression(address=a, reason=wanted[a]) for a in chunk if a not in known]
        # A concurrent insert of the same address is skipped, not an error.
        Suppression.objects.bulk_create(new, ignore_conflicts=True)
        result.added += len(new)
    return result


def spreadsheet_safe(value: str) -> str:
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


class _Echo:
    """A file-like object whose write returns the line: csv writes into a stream."""

    def write(self, value: str) -> str:
        return value


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Deleting a suppression lifts it; adding one by hand blocks an address."""

    form = SuppressionForm
    list_display = ("address", "reason", "added", "source_event_link", "delivery_link")
    list_filter = ("reason",)
    search_fields = ("address",)
    ordering = ("-created_at",)
    fields = ("address", "reason", "source_event_link", "delivery_link", "created_at")
    readonly_fields = ("source_event_link", "delivery_link", "created_at")
    show_full_result_count = False
    list_select_related = ("source_event",)

    class Media:
        css = {"all": ("cloudmails/admin.css",)}

    @admin.display(description=gettext_lazy("added"), ordering="created_at")
    def added(self, obj: Suppression) -> SafeString | str:
        return moment(obj.created_at, short=True)

    @admin.display(description=gettext_lazy("source event"))
    def source_event_link(self, obj: Suppression) -> SafeString | str:
        return admin_link("deliveryevent_change", obj.source_event_id, obj.source_event)

    @admin.display(description=gettext_lazy("delivery"))
    def delivery_link(self, obj: Suppression) -> SafeString | str:
        event = obj.source_event
        delivery_id = event.delivery_id if event is not None else None
        return admin_link("delivery_change", delivery_id, _("the delivery"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return ("address", "reason", *self.readonly_fields)
        return self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields if obj is not None else ("address", "reason")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"reason": Suppression.Reason.MANUAL, **super().get_changeform_initial_data(request)}

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("export/", wrap(self.export_view), name="cloudmails_suppression_export"),
            path("import/", wrap(self.import_view), name="cloudmails_suppression_import"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """The list as filtered and searched, as CSV, streamed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).select_related("source_event")
        writer = csv.writer(_Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(EXPORT_COLUMNS)
            for row in rows.iterator(chunk_size=2000):
                event = row.source_event
                yield writer.writerow(
                    [
                        spreadsheet_safe(row.address),
                        row.reason,
                        row.created_at.isoformat(),
                        event.pk if event else "",
                        event.delivery_id if event and event.delivery_id else "",
                    ]
                )

        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="suppressions-{stamp}.csv"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > MAX_IMPORT_BYTES:
                form.add_error("file", _("The file is over 50 MB: split it."))
            else:
                text = io.TextIOWrapper(upload.file, encoding="utf-8-sig", errors="replace")
                result = import_addresses(csv.reader(text), form.cleaned_data["reason"])
                self._report_import(request, result)
                return HttpResponseRedirect(reverse("admin:cloudmails_suppression_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import suppressions"),
            "form": form,
            "opts": self.model._meta,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/cloudmails/suppression/import.html", context)

    def _report_import(self, request: HttpRequest, result: ImportResult) -> None:
        self.message_user(
            request,
            _(
                "Imported %(added)d addresses; %(already)d were on the list already, "
                "%(duplicates)d repeated in the file."
            )
            % {"added": result.added, "already": result.already, "duplicates": result.duplicates},
            messages.SUCCESS,
        )
        if result.invalid:
            shown = ", ".join(
                _("line %(line)d (%(cell)s)") % {"line": n, "cell": cell or _("empty")}
                for n, cell in result.invalid[:SHOWN_INVALID]
            )
            self.message_user(
                request,
                _("%(count)d lines had no valid address and were skipped: %(shown)s.")
                % {"count": len(result.invalid), "shown": shown},
                messages.WARNING,
            )
