"""Django EmailMessage -> CloudMails API messages.

The API takes one recipient per message, so an email with three ``to`` addresses becomes
three API messages; ``cc`` and ``bcc`` ride on the first only, so nobody gets two copies.
Everything the API cannot carry is refused here, before any row is written or any request
made, with :class:`~django_cloudmails.exceptions.CloudMailsUnsupportedFeature` (unless
``IGNORE_UNSUPPORTED_FEATURES`` says to drop it) or
:class:`~django_cloudmails.exceptions.CloudMailsInvalidMessage` naming the field.

Message attributes understood besides Django's own (documented in the README):
``custom_args`` (or anymail's ``metadata``): dict of scalars sent as ``custom_args``;
anymail's ``merge_metadata``: per-recipient additions to it; ``merge_data`` and
``merge_global_data``: placeholder values (see :mod:`django_cloudmails.merge`);
``tags``: list of strings kept on the Delivery row (the API has no tags).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils.encoding import force_str
from django.utils.functional import Promise

from . import merge
from .addresses import bare_address, split_address
from .attachments import encode_attachments
from .exceptions import CloudMailsInvalidMessage, CloudMailsUnsupportedFeature
from .identity import DELIVERY_ID_ARG
from .limits import MAX_MESSAGE_BYTES

#: Headers that map onto API fields; any other extra header is unsupported.
MAPPED_HEADERS = frozenset({"from", "reply-to"})

#: Message attributes from django-anymail that have no CloudMails equivalent.
UNSUPPORTED_ATTRIBUTES = (
    "send_at",
    "template_id",
    "esp_extra",
    "envelope_sender",
    "track_clicks",
    "track_opens",
    "merge_headers",
)

_JSON_OVERHEAD = 256  # the "to" and custom_args added per recipient, generously


@dataclass
class ApiMessage:
    """One API message built from an EmailMessage, before it gets its Delivery id."""

    payload: dict[str, Any]
    #: The bare address (no display name), as stored on the Delivery row.
    to_email: str
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    #: Approximate JSON size in bytes (exact for the shared part).
    size: int = 0


def build_api_messages(
    message: EmailMessage, *, ignore_unsupported: bool = False
) -> list[ApiMessage]:
    """The API messages for ``message``: one per ``to`` address, in order."""
    to = [_address(value, "to") for value in message.to if value]
    if not to:
        raise CloudMailsInvalidMessage(
            "The email has no 'to' address; CloudMails sends one message per 'to' "
            "recipient (cc and bcc ride along with the first).",
            field="to",
        )
    headers = {str(name).lower(): value for name, value in message.extra_headers.items()}
    _check_unsupported(message, headers, ignore_unsupported)

    base: dict[str, Any] = {
        "from": _address(headers.get("from") or message.from_email, "from"),
        "subject": force_str(message.subject),
    }
    html, text = _bodies(message, ignore_unsupported)
    reply_to = _reply_to(message, headers, ignore_unsupported)
    if reply_to:
        base["reply_to"] = reply_to
    attachments = encode_attachments(
        list(message.attachments),
        encoding=message.encoding or settings.DEFAULT_CHARSET,
        ignore_unsupported=ignore_unsupported,
    )
    if attachments:
        base["attachments"] = attachments
    metadata = _metadata(message)
    tags = [force_str(tag) for tag in (getattr(message, "tags", None) or [])]
    cc = [_address(value, "cc") for value in message.cc if value]
    bcc = [_address(value, "bcc") for value in message.bcc if value]
    merging = merge.has_merge_data(message)
    merge_metadata = getattr(message, "merge_metadata", None)

    shared_size = _size(base, html, text, cc, bcc)
    result = []
    for position, address in enumerate(to):
        bare = bare_address(address)
        payload = {"to": address, **base}
        if merging:
            values = merge.recipient_values(message, address, bare)
            payload["subject"] = merge.render(payload["subject"], values, html=False, to=bare)
            own_text = merge.render(text, values, html=False, to=bare)
            own_html = (
                merge.render(html, values, html=True, to=bare)
                if html is not None
                else _pre(own_text)
            )
        else:
            own_text, own_html = text, html if html is not None else _pre(text)
        payload["html"] = own_html
        if own_text:
            payload["text"] = own_text
        if position == 0:
            if cc:
                payload["cc"] = cc
            if bcc:
                payload["bcc"] = bcc
        own_metadata = metadata
        if merge.is_set(merge_metadata) and isinstance(merge_metadata, Mapping):
            extra = merge_metadata.get(address, merge_metadata.get(bare))
            if extra:
                own_metadata = {**metadata, **_scalars(extra, "merge_metadata")}
        result.append(
            ApiMessage(
                payload=payload,
                to_email=bare,
                metadata=own_metadata,
                tags=tags,
                size=shared_size + len(address) + _JSON_OVERHEAD,
            )
        )
    return result


def with_delivery_id(api_message: ApiMessage, delivery_id: str) -> dict[str, Any]:
    """The payload to send, its ``custom_args`` carrying the Delivery id."""
    payload = api_message.payload
    payload["custom_args"] = {**api_message.metadata, DELIVERY_ID_ARG: delivery_id}
    return payload


def _bodies(message: EmailMessage, ignore: bool) -> tuple[str | None, str]:
    """``(html, text)``: html None means "render the text as <pre>"."""
    body = force_str(message.body or "")
    subtype = message.content_subtype
    html_parts: list[str] = [body] if subtype == "html" else []
    if subtype not in ("plain", "html") and not ignore:
        raise CloudMailsUnsupportedFeature(
            f'The body has content_subtype "{subtype}"; CloudMails carries text/plain '
            "and text/html bodies only.",
            field="body",
        )
    for content, mimetype in getattr(message, "alternatives", None) or []:
        if mimetype == "text/html":
            html_parts.append(force_str(content))
        elif not ignore:
            raise CloudMailsUnsupportedFeature(
                f"The email has a {mimetype} alternative; CloudMails carries one HTML and "
                "one plain-text body only.",
                field="alternatives",
            )
    if len(html_parts) > 1 and not ignore:
        raise CloudMailsUnsupportedFeature(
            f"The email has {len(html_parts)} HTML bodies; CloudMails carries one.",
            field="alternatives",
        )
    if subtype == "html":
        return html_parts[0] or None, ""
    text = body if subtype == "plain" else ""
    html = html_parts[0] if html_parts else None
    return html or None, text


def _pre(text: str) -> str:
    return f"<pre>{escape(text, quote=False)}</pre>"


def _reply_to(message: EmailMessage, headers: Mapping[str, Any], ignore: bool) -> str | None:
    if headers.get("reply-to"):
        return _address(headers["reply-to"], "reply_to")
    reply_to = [value for value in message.reply_to if value]
    if len(reply_to) > 1 and not ignore:
        raise CloudMailsUnsupportedFeature(
            f"The email has {len(reply_to)} reply_to addresses; CloudMails carries one.",
            field="reply_to",
        )
    return _address(reply_to[0], "reply_to") if reply_to else None


def _check_unsupported(message: EmailMessage, headers: Mapping[str, Any], ignore: bool) -> None:
    if ignore:
        return
    extra = sorted(name for name in headers if name not in MAPPED_HEADERS)
    if extra:
        raise CloudMailsUnsupportedFeature(
            f"CloudMails cannot carry custom headers ({', '.join(extra)}).",
            field="headers",
        )
    for name in UNSUPPORTED_ATTRIBUTES:
        if merge.is_set(getattr(message, name, None)):
            raise CloudMailsUnsupportedFeature(
                f"CloudMails has no equivalent of the message's {name!r}.", field=name
            )


def _metadata(message: EmailMessage) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("metadata", "custom_args"):
        given = getattr(message, name, None)
        if merge.is_set(given):
            values.update(_scalars(given, name))
    if DELIVERY_ID_ARG in values:
        raise CloudMailsInvalidMessage(
            f"custom_args key {DELIVERY_ID_ARG!r} is reserved for django-cloudmails.",
            field="custom_args",
        )
    return values


def _scalars(values: Any, name: str) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise CloudMailsInvalidMessage(f"{name} must be a dict.", field="custom_args")
    result = {}
    for key, given in values.items():
        value = str(given) if isinstance(given, Promise) else given
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise CloudMailsInvalidMessage(
                f"{name}[{key!r}] is a {type(value).__name__}; custom_args values must be "
                "strings, numbers, booleans or None.",
                field="custom_args",
            )
        result[str(key)] = value
    return result


def _address(value: Any, field: str) -> str:
    """``value`` as a string, checked the way the API checks addresses."""
    text = force_str(value).strip()
    if split_address(text) is None:
        raise CloudMailsInvalidMessage(
            f"{field}: {text!r} is not a valid email address.", field=field
        )
    return text


def _size(base: Mapping[str, Any], html: str | None, text: str, *lists: list[str]) -> int:
    """The JSON size of the shared part; exact when it could come near the limit."""
    rough = len(base["subject"]) + len(html or "") * 2 + len(text) * 2 + 512
    rough += sum(len(item["content"]) + 128 for item in base.get("attachments", ()))
    rough += sum(len(value) + 4 for values in lists for value in values)
    if rough * 6 < MAX_MESSAGE_BYTES:
        return rough  # even if every character were \\u-escaped
    payload = dict(base, html=html or _pre(text), text=text, cc=lists[0], bcc=lists[1])
    size = len(json.dumps(payload, separators=(",", ":")))
    if size + _JSON_OVERHEAD > MAX_MESSAGE_BYTES:
        largest = max(base.get("attachments", ()), key=lambda a: len(a["content"]), default=None)
        detail = f'; the largest attachment is "{largest["filename"]}"' if largest else ""
        raise CloudMailsInvalidMessage(
            f"The message is {size} bytes as JSON; the API accepts at most "
            f"{MAX_MESSAGE_BYTES}{detail}.",
            field="attachments" if largest else "html",
        )
    return size
