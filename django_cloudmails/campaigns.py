"""Campaigns: one message, personalised for each of many recipients, sent by workers.

    from django_cloudmails.tasks import send_campaign

    report = send_campaign(
        Customer.objects.filter(opted_in=True).values("email", "first_name"),
        subject="{{first_name}}, our spring sale",
        html="<p>Hello {{first_name}}, everything is 20% off at {{shop}}.</p>",
        text="Hello {{first_name}}, everything is 20% off at {{shop}}.",
        merge_global_data={"shop": "Acme"},
    )

Recipients are read a chunk at a time (a queryset through ``.iterator()``) and never held
all at once. Each chunk is personalised, checked, written (one ``queued`` Delivery row per
recipient) and handed to the workers as one ``send_deliveries`` task, exactly as
:class:`~django_cloudmails.backends.CeleryEmailBackend` does it: memory stays flat
whatever the number of recipients, and a chunk of ``BATCH_SIZE`` recipients is one API
request. Placeholders are filled as :mod:`~django_cloudmails.merge` fills them: values
HTML-escaped in ``html``, as they are in ``subject`` and ``text``, and a placeholder
with no value is an error, raised before anything of its chunk is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db.models import QuerySet

from .backends import DEFAULT_ALIAS, CeleryEmailBackend
from .conf import alias_options, mailer_settings
from .exceptions import CloudMailsInvalidMessage

#: A recipient: an address, an ``(address, merge data)`` pair, or a mapping holding the
#: address under ``address_key`` (what ``QuerySet.values()`` yields) whose every item is
#: merge data.
Recipient = str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]


@dataclass
class CampaignReport:
    """What :func:`send_campaign` wrote and enqueued."""

    recipients: int = 0
    #: Rows written ``queued``, to be sent by the workers.
    queued: int = 0
    #: Rows written ``failed`` because their recipient is on the suppression list.
    suppressed: int = 0
    #: Chunks written, one ``send_deliveries`` task each (more when ``chunk_size`` is
    #: above ``BATCH_SIZE``).
    chunks: int = 0


def send_campaign(
    recipients: Iterable[Recipient],
    *,
    subject: str,
    html: str | None = None,
    text: str = "",
    from_email: str | None = None,
    reply_to: str | None = None,
    merge_global_data: Mapping[str, Any] | None = None,
    custom_args: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    address_key: str = "email",
    chunk_size: int | None = None,
    alias: str | None = None,
) -> CampaignReport:
    """Write and enqueue one personalised message per recipient, a chunk at a time.

    ``subject``, ``html`` and ``text`` may hold ``{{name}}`` placeholders, filled from
    the recipient's merge data over ``merge_global_data``. ``chunk_size`` defaults to
    ``BATCH_SIZE``. ``alias`` chooses the mailer whose settings the workers send with.

    Raises :class:`~django_cloudmails.exceptions.CloudMailsInvalidMessage` for a
    recipient that cannot be sent to (a bad address, a missing value) before anything
    of its chunk is written; the chunks before it are written and enqueued already, and
    the report of what they hold is on the exception as ``campaign_report``. Call it
    outside a transaction: inside one, nothing is enqueued until it commits.
    """
    if html is None and not text:
        raise CloudMailsInvalidMessage("A campaign needs an html or a text body.", field="html")
    alias = alias or DEFAULT_ALIAS
    backend = CeleryEmailBackend(alias=alias, **alias_options(alias))
    size = chunk_size or mailer_settings(alias).batch_size
    if size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {size}.")
    template = _Template(subject, html, text, from_email, reply_to, merge_global_data)
    report = CampaignReport()
    for chunk in _chunks(_read(recipients, size), size):
        messages = template.messages(
            (_recipient(item, address_key) for item in chunk),
            custom_args=dict(custom_args or {}),
            tags=list(tags),
        )
        try:
            backend.send_messages(messages)
        except CloudMailsInvalidMessage as error:
            error.campaign_report = report  # type: ignore[attr-defined]
            raise
        for message in messages:
            for row in message.cloudmails_deliveries:  # type: ignore[attr-defined]
                report.recipients += 1
                if row.status == "queued":
                    report.queued += 1
                else:
                    report.suppressed += 1
        report.chunks += 1
    return report


@dataclass
class _Template:
    subject: str
    html: str | None
    text: str
    from_email: str | None
    reply_to: str | None
    merge_global_data: Mapping[str, Any] | None

    def messages(
        self,
        recipients: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        custom_args: dict[str, Any],
        tags: list[str],
    ) -> list[EmailMessage]:
        """Emails for one chunk: one ``to`` per recipient, their values in ``merge_data``
        (keyed by address; an address met twice starts another email, so each
        occurrence keeps its own values)."""
        messages: list[EmailMessage] = []
        data: dict[str, Mapping[str, Any]] = {}
        for address, values in recipients:
            if address in data:
                messages.append(self._message(data, custom_args, tags))
                data = {}
            data[address] = values
        if data:
            messages.append(self._message(data, custom_args, tags))
        return messages

    def _message(
        self, data: dict[str, Mapping[str, Any]], custom_args: dict[str, Any], tags: list[str]
    ) -> EmailMessage:
        message = EmailMultiAlternatives(
            self.subject,
            self.text,
            self.from_email,
            list(data),
            reply_to=[self.reply_to] if self.reply_to else None,
        )
        if self.html is not None:
            message.attach_alternative(self.html, "text/html")
        message.merge_global_data = dict(self.merge_global_data or {})  # type: ignore[attr-defined]
        message.merge_data = data  # type: ignore[attr-defined]
        message.custom_args = custom_args  # type: ignore[attr-defined]
        message.tags = tags  # type: ignore[attr-defined]
        return message


def _read(recipients: Iterable[Recipient], size: int) -> Iterable[Recipient]:
    """A queryset read in chunks, without filling its result cache."""
    if isinstance(recipients, QuerySet):
        return recipients.iterator(chunk_size=size)
    return recipients


def _chunks(items: Iterable[Recipient], size: int) -> Iterator[list[Recipient]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _recipient(item: Recipient, address_key: str) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping):
        if address_key not in item:
            raise CloudMailsInvalidMessage(
                f"A campaign recipient has no {address_key!r} key: {sorted(item)!r}; "
                "pass address_key= to name the key holding the address.",
                field="to",
            )
        return str(item[address_key]), item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Mapping):
        return str(item[0]), item[1]
    raise CloudMailsInvalidMessage(
        f"A campaign recipient must be an address, an (address, merge data) pair or a "
        f"mapping with an {address_key!r} key (QuerySet.values()), not "
        f"{type(item).__name__}.",
        field="to",
    )
