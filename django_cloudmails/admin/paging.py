"""Paging the delivery list without counting it.

Django's changelist counts the filtered rows to number its pages: at a million rows
that COUNT(*) is most of the page's time, and with a filter no index answers it reads
the whole table. These pages fetch one row more than they show instead: that row says
whether there is a next page. The page's rows are fetched once, and "show all" and
"select all N" are off (N is unknown, and an action over a million rows is a mistake).
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.paginator import Page, Paginator
from django.http import HttpRequest


class NoCountPaginator(Paginator):  # type: ignore[type-arg]
    """A paginator that knows only its own page and whether another follows."""

    def __init__(self, object_list: Any, per_page: int, *, page_number: int, **kw: Any) -> None:
        super().__init__(object_list, per_page, **kw)
        self.page_number = page_number
        self._rows: list[Any] | None = None

    def rows(self) -> list[Any]:
        """This page's rows and, when there is a next page, its first row."""
        if self._rows is None:
            start = (self.page_number - 1) * self.per_page
            self._rows = list(self.object_list[start : start + self.per_page + 1])
        return self._rows

    @property
    def count(self) -> int:
        """Rows up to this page's end, plus one when there is more."""
        return (self.page_number - 1) * self.per_page + len(self.rows())

    @property
    def has_next(self) -> bool:
        return len(self.rows()) > self.per_page

    def page(self, number: Any) -> Page:  # type: ignore[type-arg]
        number = self.validate_number(number)
        if number != self.page_number:
            return super().page(number)
        return Page(self.rows()[: self.per_page], number, self)


def paginator_for(request: HttpRequest, queryset: Any, per_page: int) -> NoCountPaginator:
    try:
        number = max(int(request.GET.get(PAGE_VAR, 1)), 1)
    except ValueError:
        number = 1
    return NoCountPaginator(queryset, per_page, page_number=number)


class NoCountChangeList(ChangeList):
    """A changelist over :class:`NoCountPaginator` that never loads ``deferred``
    columns (payloads can hold megabytes of attachments)."""

    deferred: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return super().get_queryset(request, *args, **kwargs).defer(*self.deferred)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        paginator = self.paginator
        if not isinstance(paginator, NoCountPaginator):
            return
        # Django would query a single page's rows again; they are in hand.
        self.result_list = paginator.rows()[: paginator.per_page]
        self.can_show_all = False
        # Equal counts keep the search box from printing a count it does not know.
        self.full_result_count = self.result_count
        number = paginator.page_number
        self.first_row = (number - 1) * paginator.per_page + 1
        self.last_row = self.first_row + len(self.result_list) - 1
        self.previous_page_url = (
            self.get_query_string({PAGE_VAR: number - 1}) if number > 1 else None
        )
        self.next_page_url = (
            self.get_query_string({PAGE_VAR: number + 1}) if paginator.has_next else None
        )
