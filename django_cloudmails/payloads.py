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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

import django
from django.conf import settings
from django.core.mail import EmailMessage
from django.utils.encoding import force_str
from django.utils.functional import Promise

from . import merge
from .addresses import ParsedAddress, parse_address
from .anymail_compat import unsupported_feature
from .attachments import check_single_parts, encode_attachments
from .charsets import check_encodable
from .exceptions import CloudMailsInvalidMessage
from .headers import CloudMailsBadHeader, header_value
from .identity import DELIVERY_ID_ARG
from .limits import MAX_MESSAGE_BYTES

#: Headers that map onto API fields (spelled as Django reads them); any other extra
#: header is unsupported.
MAPPED_HEADERS = frozenset({"From", "Reply-To"})
#: Headers Django sets from its own fields, never from the extra headers loop.
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})
_DJANGO_SPELLINGS = frozenset({"From", "To", "Cc", "Reply-To"})
#: Other spellings of these Django's message() reads neither by lookup nor in its loop.
_IGNORED_BY_DJANGO = _ADDRESS_HEADERS if django.VERSION >= (5, 0) else frozenset({"from"})
_MODERN = django.VERSION >= (6, 0)

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
    """The API messages for ``message``: one per ``to`` address, in order.

    Checked in the order Django's SMTP backend checks the same email (envelope, then
    bodies and attachments, then headers), so an email Django refuses is refused with
    the exception Django raises; then what the API cannot carry.
    """
    encoding = message.encoding or settings.DEFAULT_CHARSET
    parse_address(message.from_email, field="from", encoding=encoding)
    given_to = [force_str(value) for value in message.to if value]
    to = [parse_address(value, field="to", encoding=encoding) for value in given_to]
    cc = [parse_address(value, field="cc", encoding=encoding) for value in message.cc if value]
    bcc = [parse_address(v, field="bcc", encoding=encoding) for v in message.bcc if v]
    _check_texts(message, encoding)
    attachments = encode_attachments(list(message.attachments), encoding=encoding)
    subject, sender, reply_to = _headers(message, encoding)
    if not to:
        raise CloudMailsInvalidMessage(
            "The email has no 'to' address; CloudMails sends one message per 'to' "
            "recipient (cc and bcc ride along with the first).",
            field="to",
        )
    _check_unsupported(message, ignore_unsupported)

    base: dict[str, Any] = {"from": sender.formatted, "subject": subject}
    html, text = _bodies(message, ignore_unsupported)
    reply = _reply_to(reply_to, encoding, ignore_unsupported)
    if reply:
        base["reply_to"] = reply
    if attachments:
        base["attachments"] = attachments
    copies = {
        "cc": [address.formatted for address in cc],
        "bcc": [address.formatted for address in bcc],
    }
    shared = _Shared(
        base, html, text, {k: v for k, v in copies.items() if v}, _metadata(message), _tags(message)
    )
    shared.size = _size(base, html, text, copies["cc"], copies["bcc"])
    return [
        _recipient_message(message, shared, given.strip(), parsed, first=position == 0)
        for position, (given, parsed) in enumerate(zip(given_to, to, strict=True))
    ]


@dataclass
class _Shared:
    """What every API message of one email shares."""

    base: dict[str, Any]
    html: str | None
    text: str
    copies: dict[str, list[str]]
    metadata: dict[str, Any]
    tags: list[str]
    size: int = 0


def _recipient_message(
    message: EmailMessage, shared: _Shared, given: str, parsed: ParsedAddress, *, first: bool
) -> ApiMessage:
    address, bare = parsed.formatted, parsed.addr_spec
    html, text = shared.html, shared.text
    payload = {"to": address, **shared.base}
    if merge.has_merge_data(message):
        values = merge.recipient_values(message, given, bare)
        payload["subject"] = _merged_subject(payload["subject"], values, bare)
        own_text = merge.render(text, values, html=False, to=bare)
        own_html = (
            merge.render(html, values, html=True, to=bare) if html is not None else _pre(own_text)
        )
    else:
        own_text, own_html = text, html if html is not None else _pre(text)
    payload["html"] = own_html
    if own_text:
        payload["text"] = own_text
    if first:
        payload.update(shared.copies)
    metadata = shared.metadata
    merge_metadata = getattr(message, "merge_metadata", None)
    if merge.is_set(merge_metadata) and isinstance(merge_metadata, Mapping):
        extra = merge_metadata.get(given, merge_metadata.get(bare))
        if extra:
            metadata = {**metadata, **_scalars(extra, "merge_metadata")}
    return ApiMessage(
        payload=payload,
        to_email=bare,
        metadata=metadata,
        tags=shared.tags,
        size=shared.size + len(address) + _JSON_OVERHEAD,
    )


def with_delivery_id(api_message: ApiMessage, delivery_id: str) -> dict[str, Any]:
    """The payload to send, its ``custom_args`` carrying the Delivery id."""
    payload = api_message.payload
    payload["custom_args"] = {**api_message.metadata, DELIVERY_ID_ARG: delivery_id}
    return payload


def _check_texts(message: EmailMessage, encoding: str) -> None:
    """Bodies Django could not encode in the message's charset are refused, as it does."""
    check_encodable(force_str(message.body or ""), encoding, field="body")
    for content, mimetype in getattr(message, "alternatives", None) or []:
        if str(mimetype).startswith("text/"):
            check_encodable(force_str(content), encoding, field="alternatives")


def _headers(message: EmailMessage, encoding: str) -> tuple[str, ParsedAddress, list[str]]:
    """``(subject, from, reply_to values)``, each header checked as Django sets it."""
    headers = message.extra_headers
    subject = header_value("Subject", message.subject, field="subject", encoding=encoding)
    sender = headers.get("From", message.from_email)
    header_value("From", sender, field="from", encoding=encoding)
    for name, values, where in (("To", message.to, "to"), ("Cc", message.cc, "cc")):
        given = headers.get(name) or ", ".join(str(value) for value in values)
        header_value(name, given, field=where, encoding=encoding)
    if "Reply-To" in headers:
        reply_to = [force_str(headers["Reply-To"])]
    else:
        reply_to = [force_str(value) for value in message.reply_to if value]
    if reply_to:
        header_value("Reply-To", ", ".join(reply_to), field="reply_to", encoding=encoding)
    for name, value in headers.items():
        if str(name).lower() not in _ADDRESS_HEADERS:
            header_value(str(name), value, field="headers", encoding=encoding)
            if _MODERN and str(name).lower() == "bcc" and django.VERSION >= (6, 1):
                raise CloudMailsBadHeader(
                    'Bcc is not a valid email header. Use the "bcc" argument to specify '
                    "blind carbon copy recipients.",
                    field="headers",
                )
    return subject, parse_address(sender, field="from", encoding=encoding), reply_to


def _merged_subject(subject: str, values: Mapping[str, Any], to: str) -> str:
    rendered = merge.render(subject, values, html=False, to=to)
    if rendered != subject and len(rendered.splitlines()) > 1:
        raise CloudMailsBadHeader(
            f"subject: merge values put a line break into the subject for {to}; header "
            "values can't contain line breaks.",
            field="merge_data",
        )
    return rendered


def _bodies(message: EmailMessage, ignore: bool) -> tuple[str | None, str]:
    """``(html, text)``: html None means "render the text as <pre>"."""
    body = force_str(message.body or "")
    subtype = message.content_subtype
    html_parts: list[str] = [body] if subtype == "html" else []
    if subtype not in ("plain", "html") and not ignore:
        raise unsupported_feature(
            f'The body has content_subtype "{subtype}"; CloudMails carries text/plain '
            "and text/html bodies only.",
            field="body",
        )
    for content, mimetype in getattr(message, "alternatives", None) or []:
        if mimetype == "text/html":
            html_parts.append(force_str(content))
        elif not ignore:
            raise unsupported_feature(
                f"The email has a {mimetype} alternative; CloudMails carries one HTML and "
                "one plain-text body only.",
                field="alternatives",
            )
    if len(html_parts) > 1 and not ignore:
        raise unsupported_feature(
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


def _reply_to(values: list[str], encoding: str, ignore: bool) -> str | None:
    if len(values) > 1 and not ignore:
        raise unsupported_feature(
            f"The email has {len(values)} reply_to addresses; CloudMails carries one.",
            field="reply_to",
        )
    if not values:
        return None
    return parse_address(values[0], field="reply_to", encoding=encoding).formatted


def _check_unsupported(message: EmailMessage, ignore: bool) -> None:
    if ignore:
        return
    extra = sorted(_custom_headers(message.extra_headers))
    if extra:
        raise unsupported_feature(
            f"CloudMails cannot carry custom headers ({', '.join(extra)}).",
            field="headers",
        )
    check_single_parts(list(message.attachments))
    for name in UNSUPPORTED_ATTRIBUTES:
        if merge.is_set(getattr(message, name, None)):
            raise unsupported_feature(
                f"CloudMails has no equivalent of the message's {name!r}.", field=name
            )


def _custom_headers(headers: Mapping[str, Any]) -> Iterable[str]:
    """Extra headers the API cannot carry (lower-cased), skipping those Django ignores."""
    for name in map(str, headers):
        if name in MAPPED_HEADERS:
            continue
        if name.lower() in _IGNORED_BY_DJANGO and name not in _DJANGO_SPELLINGS:
            continue
        yield name.lower()


def _tags(message: EmailMessage) -> list[str]:
    tags = getattr(message, "tags", None)
    if not merge.is_set(tags):
        return []
    if isinstance(tags, (str, Promise)) or not isinstance(tags, Iterable):
        raise CloudMailsInvalidMessage("tags must be a list of strings.", field="tags")
    return [force_str(tag) for tag in tags]


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
