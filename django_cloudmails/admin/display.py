"""How the admin pages show a status and a moment, the same way on every page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Delivery

#: A mark beside each status's word (the word is what is read; colour only helps).
STATUS_MARKS = {
    Delivery.Status.QUEUED: "…",
    Delivery.Status.UNKNOWN: "?",
    Delivery.Status.SENT: "→",
    Delivery.Status.DEFERRED: "↻",
    Delivery.Status.DELIVERED: "✓",
    Delivery.Status.FAILED: "✕",
    Delivery.Status.BOUNCED: "↩",
}
FULL = "Y-m-d H:i:s"
SHORT = "j M H:i"


def badge(status: str) -> SafeString:
    """The status as a coloured badge whose text says it."""
    label = Delivery.Status(status).label if status in Delivery.Status.values else status
    return format_html(
        '<span class="cm-badge cm-status-{}"><span aria-hidden="true">{}</span> {}</span>',
        status,
        STATUS_MARKS.get(status, "•"),  # type: ignore[call-overload]
        label,
    )


def moment(value: datetime | None, *, short: bool = False) -> SafeString | str:
    """A datetime in the current time zone, to the second (the full value in a tooltip
    when ``short``); "-" for none."""
    if value is None:
        return "-"
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    full = dateformat.format(local, FULL)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        f"{full} {dateformat.format(local, 'T')}",
        dateformat.format(local, SHORT) if short else full,
    )


def admin_link(view: str, pk: Any, text: Any, *, title: str = "") -> SafeString | str:
    """A link to one of our admin pages (``view``: "delivery_change"...); "-" for no row."""
    if pk is None:
        return "-"
    url = reverse(f"admin:cloudmails_{view}", args=[pk])
    if title:
        return format_html('<a class="cm-clip" href="{}" title="{}">{}</a>', url, title, text)
    return format_html('<a href="{}">{}</a>', url, text)


def zone_name() -> str:
    """The current time zone, as the pages name it beside their times."""
    return str(timezone.get_current_timezone_name())
