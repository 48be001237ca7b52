"""A delivery's page, part by part: the message as sent, its status (the status group
is :mod:`.delivery_status`), its facts.

Everything comes from the row and its stored API message (the payload): the envelope
(from, to, cc, bcc, reply-to), the bodies, the attachments by name, type and size
(never their base64), and the raw payload pretty-printed with the attachments' content
left out. Every time on the page is shown the same way (:func:`.display.moment`).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Field
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import lifecycle
from ..models import Delivery
from .delivery_status import StatusParts
from .display import moment

#: The query parameter (and the attribute the admin sets on the row it shows) asking
#: the preview to load remote images.
REMOTE_IMAGES = "remote_images"
ENVELOPE = (
    ("from", gettext_lazy("From")),
    ("to", gettext_lazy("To")),
    ("cc", gettext_lazy("Cc")),
    ("bcc", gettext_lazy("Bcc")),
    ("reply_to", gettext_lazy("Reply-To")),
)


def payload_of(delivery: Delivery) -> dict[str, Any]:
    return delivery.payload if isinstance(delivery.payload, dict) else {}


def attachment_size(attachment: dict[str, Any]) -> int | None:
    """Decoded bytes of a base64 ``content``, without decoding it."""
    content = attachment.get("content")
    if not isinstance(content, str):
        return None
    digits = "".join(content.split())
    return max(len(digits) * 3 // 4 - digits[-2:].count("="), 0)


def readable_payload(payload: dict[str, Any]) -> str:
    """The payload as indented JSON, each attachment's content replaced by its size."""
    shown = dict(payload)
    attachments = shown.get("attachments")
    if isinstance(attachments, list):
        shown["attachments"] = [
            {
                **item,
                "content": _("(%(size)s of base64, not shown)")
                % {"size": filesizeformat(attachment_size(item) or 0)},
            }
            if isinstance(item, dict) and "content" in item
            else item
            for item in attachments
        ]
    return json.dumps(shown, indent=2, ensure_ascii=False, sort_keys=True)


class DeliveryPage(StatusParts):
    """The readonly parts of the delivery admin's change page (a mixin)."""

    @admin.display(description=gettext_lazy("envelope"))
    def envelope(self, obj: Delivery) -> SafeString | str:
        payload = payload_of(obj)
        rows = []
        for key, label in ENVELOPE:
            value = payload.get(key)
            if not value:
                continue
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append((label, text))
        if not rows:
            return "-"
        lines = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td></tr>", rows)
        return format_html('<table class="cm-envelope">{}</table>', lines)

    @admin.display(description=gettext_lazy("HTML body"))
    def html_preview(self, obj: Delivery) -> SafeString | str:
        if obj.body_purged_at is not None:
            return _("Purged on %(when)s.") % {"when": moment(obj.body_purged_at)}
        if not payload_of(obj).get("html"):
            return "-"
        remote = getattr(obj, REMOTE_IMAGES, False)
        url = reverse("admin:cloudmails_delivery_preview", args=[obj.pk])
        toggle = (
            format_html(
                '<a href="?">{}</a>',
                _("Block remote images again"),
            )
            if remote
            else format_html(
                '<a href="?remote_images=1">{}</a> <span class="help">{}</span>',
                _("Load remote images"),
                _("(the sender's servers may count it as an open)"),
            )
        )
        return format_html(
            '<iframe class="cm-preview" sandbox="" src="{}{}" title="{}" '
            'referrerpolicy="no-referrer" loading="lazy"></iframe>'
            '<p class="cm-preview-note">{} {}</p>',
            url,
            "?remote_images=1" if remote else "",
            _("The message as the recipient sees it"),
            _("Shown without scripts, forms or remote content."),
            toggle,
        )

    @admin.display(description=gettext_lazy("text body"))
    def text_body(self, obj: Delivery) -> SafeString | str:
        text = payload_of(obj).get("text")
        if not text:
            return "-"
        return format_html('<pre class="cm-text">{}</pre>', text)

    @admin.display(description=gettext_lazy("attachments"))
    def attachment_list(self, obj: Delivery) -> SafeString | str:
        attachments = payload_of(obj).get("attachments")
        if not isinstance(attachments, list) or not attachments:
            return "-"
        rows = []
        for item in attachments:
            if not isinstance(item, dict):
                continue
            size = attachment_size(item)
            inline = (
                _("inline, %(cid)s") % {"cid": item["content_id"]} if item.get("content_id") else ""
            )
            rows.append(
                (
                    item.get("filename") or "-",
                    item.get("content_type") or "-",
                    filesizeformat(size) if size is not None else "-",
                    inline,
                )
            )
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
            _("name"),
            _("type"),
            _("size"),
        )
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html('<table class="cm-attachments">{}{}</table>', head, body)

    @admin.display(description=gettext_lazy("batch id"))
    def batch_link(self, obj: Delivery) -> SafeString | str:
        if not obj.batch_id:
            return "-"
        url = reverse("admin:cloudmails_delivery_changelist")
        return format_html('<a href="{}?batch={}">{}</a>', url, obj.batch_id, obj.batch_id)

    @admin.display(description=gettext_lazy("metadata"))
    def metadata_json(self, obj: Delivery) -> SafeString | str:
        if not obj.metadata:
            return "-"
        text = json.dumps(obj.metadata, indent=2, ensure_ascii=False, sort_keys=True)
        return format_html('<pre class="cm-json">{}</pre>', text)

    @admin.display(description=gettext_lazy("raw payload"))
    def raw_payload(self, obj: Delivery) -> SafeString | str:
        payload = payload_of(obj)
        if not payload:
            return "-"
        return format_html(
            '<details class="cm-raw"><summary>{}</summary><pre class="cm-json">{}</pre></details>',
            _("Show the API message as stored"),
            readable_payload(payload),
        )


def _moment_display(name: str, label: Any) -> Any:
    """A readonly display of the datetime field ``name`` through :func:`moment`."""

    @admin.display(description=label)
    def show(self: Any, obj: Delivery) -> SafeString | str:
        return moment(getattr(obj, name))

    show.__name__ = f"{name}_display"
    return show


#: Every datetime field of the page, shown as the timeline shows its times.
MOMENTS = (
    "created_at",
    "sent_at",
    "delivered_at",
    "bounced_at",
    "failed_at",
    "complained_at",
    "unsubscribed_at",
    "first_opened_at",
    "last_opened_at",
    "first_clicked_at",
    "last_clicked_at",
    "attempt_started_at",
    "next_poll_at",
)
for _name in MOMENTS:
    _field = Delivery._meta.get_field(_name)
    assert isinstance(_field, Field)
    setattr(DeliveryPage, f"{_name}_display", _moment_display(_name, _field.verbose_name))


def fieldsets() -> list[tuple[Any, dict[str, Any]]]:
    """The page's four groups."""
    return [
        (
            gettext_lazy("Message"),
            {"fields": ("subject", "envelope", "html_preview", "text_body", "attachment_list")},
        ),
        (
            gettext_lazy("Status and timeline"),
            {
                "fields": (
                    "status_badge",
                    "outcome_note",
                    "timeline",
                    "problem",
                    "attempts",
                    "recovery_tries",
                    "bounce_type",
                    "bounce_reason",
                    "resend_links",
                    *(
                        f"{name}_display"
                        for name in ("sent_at", "delivered_at", "bounced_at", "failed_at")
                    ),
                )
            },
        ),
        (
            gettext_lazy("Engagement"),
            {
                "fields": (
                    "opens",
                    "clicks",
                    *(
                        f"{name}_display"
                        for name in (
                            "first_opened_at",
                            "last_opened_at",
                            "first_clicked_at",
                            "last_clicked_at",
                            "complained_at",
                            "unsubscribed_at",
                        )
                    ),
                )
            },
        ),
        (
            gettext_lazy("Technical"),
            {
                "classes": ("collapse",),
                "fields": (
                    "id",
                    "alias",
                    "message_id",
                    "batch_link",
                    "idempotency_key",
                    "created_at_display",
                    "attempt_started_at_display",
                    "next_poll_at_display",
                    "polls",
                    "tags",
                    "metadata_json",
                    "raw_payload",
                ),
            },
        ),
    ]


#: Parts shown only when the row has something to show in them.
SHOWN_WHEN: dict[str, Any] = {
    "attachment_list": lambda row: payload_of(row).get("attachments"),
    "problem": lambda row: row.error_code or row.last_error,
    "outcome_note": lambda row: row.status in (lifecycle.QUEUED, lifecycle.UNKNOWN),
    "recovery_tries": lambda row: row.recoveries or row.status == lifecycle.UNKNOWN,
    "bounce_type": lambda row: row.bounce_type,
    "bounce_reason": lambda row: row.bounce_reason,
    "bounced_at_display": lambda row: row.bounced_at,
    "failed_at_display": lambda row: row.failed_at,
    "resend_links": lambda row: row.resent_from_id or row.resends.exists(),
}


def fieldsets_for(row: Delivery) -> list[tuple[Any, dict[str, Any]]]:
    """:func:`fieldsets` without the parts this row leaves empty."""
    return [
        (
            title,
            {
                **options,
                "fields": tuple(
                    name
                    for name in options["fields"]
                    if name not in SHOWN_WHEN or SHOWN_WHEN[name](row)
                ),
            },
        )
        for title, options in fieldsets()
    ]


def readonly_fields() -> tuple[str, ...]:
    return tuple(name for _title, options in fieldsets() for name in options["fields"])
