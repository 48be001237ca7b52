"""The delivery list's filters, each answered through an index at any table size.

Django's default filters for a plain field list the distinct values of the column, a
scan of the whole table on every page; these list what settings or a bounded query
give, or take the value typed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db import connections
from django.db.models import BooleanField, Field, QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import Delivery

#: Rows whose tags are offered as suggestions (the newest ones, through the index).
TAG_SAMPLE = 500
TAG_SUGGESTIONS = 8


class CreatedFilter(admin.SimpleListFilter):
    """Created today, in the last 7 or 30 days: a range on the indexed ``created_at``."""

    title = _("created")
    parameter_name = "created"
    DAYS = {"today": 0, "7d": 7, "30d": 30}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("today", _("Today")), ("7d", _("Past 7 days")), ("30d", _("Past 30 days"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        days = self.DAYS.get(self.value() or "")
        if days is None:
            return queryset
        now = timezone.localtime()
        if days == 0:
            since = now.replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            since = now - timedelta(days=days)
        recent: QuerySet[Any] = queryset.filter(created_at__gte=since)
        return recent


class AliasFilter(admin.SimpleListFilter):
    """The mailer aliases from settings, not the distinct values of the column."""

    title = _("mailer alias")
    parameter_name = "alias"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        aliases = getattr(settings, "MAILERS", None) or {"default": None}
        return [(alias, alias) for alias in aliases]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(alias=value) if value else queryset


class InputFilter(admin.SimpleListFilter):
    """A filter whose value is typed in (a form in the filter panel, no JavaScript),
    with a few suggested values as links."""

    template = "admin/cloudmails/input_filter.html"

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.request = request
        super().__init__(request, *args, **kwargs)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: Any) -> Iterator[Any]:
        keep = [
            (name, value)
            for name, values in self.request.GET.lists()
            for value in values
            if name not in (self.parameter_name, "p", "e")
        ]
        yield {
            "form": True,
            "parameter": self.parameter_name,
            "value": self.value() or "",
            "hidden": keep,
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == str(value),
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


class TagFilter(InputFilter):
    """Rows carrying a tag; the newest rows' tags are suggested."""

    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = Delivery.objects.order_by("-created_at").values_list("tags", flat=True)
        tally: Counter[str] = Counter()
        for tags in recent[:TAG_SAMPLE]:
            tally.update(str(tag) for tag in tags or ())
        return [(tag, tag) for tag, _count in tally.most_common(TAG_SUGGESTIONS)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return with_tag(queryset, value)


def with_tag(queryset: QuerySet[Any], tag: str) -> QuerySet[Any]:
    """The rows of ``queryset`` whose tags include ``tag``.

    On PostgreSQL through JSON containment, which the partial GIN index of tagged rows
    answers (migration 0003); SQLite has no containment lookup on JSON: ``json_each``.
    """
    if connections[queryset.db].vendor == "postgresql":
        tagged: QuerySet[Any] = queryset.filter(tags__contains=[tag]).exclude(tags=[])
        return tagged
    field = Delivery._meta.get_field("tags")
    assert isinstance(field, Field)
    column = f"{Delivery._meta.db_table}.{field.column}"
    has_tag = RawSQL(  # noqa: S611 - a column name from the model; the tag is a parameter
        f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = %s)",  # noqa: S608
        [tag],
        output_field=BooleanField(),
    )
    tagged = queryset.alias(has_tag=has_tag).filter(has_tag=True)
    return tagged


class BatchFilter(InputFilter):
    """The rows of one batch request (a partial index holds the batched rows)."""

    title = _("batch id")
    parameter_name = "batch"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        batch: QuerySet[Any] = queryset.filter(batch_id=value) if value else queryset
        return batch
