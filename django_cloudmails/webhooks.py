"""Authenticating and parsing CloudMails webhook requests, before anything is stored.

Everything a request body can get wrong is found here and raised as one
:class:`WebhookError` carrying the HTTP status and a reason, so the view answers 4xx and
no malformed value ever reaches the database (where it would be a 500).

Authentication: HTTP Basic credentials, compared with every configured ``"user:password"``
pair in constant time (SHA-256 digests, so lengths leak nothing, and no early exit, so
the timing does not tell which pair or which half was wrong). When signing secrets are
configured, the Standard Webhooks signature must also hold and its timestamp be within
the tolerance, so a captured request cannot be replayed later.

Dedupe key (what makes "the same event delivered twice" count once):

* a body holding **one event** with a ``webhook-id`` header: the ``webhook-id``. The
  sender keeps it across retries and duplicates of that event (Standard Webhooks);
* an event **inside a list** body: ``"sha256:"`` + the SHA-256 of the canonical JSON of
  its ``event``, ``message_id``, ``timestamp``, ``recipient`` and ``url``. The list's
  ``webhook-id`` names the request, not the events: the sandbox (like real ESPs that
  batch) gives each list a new id, so the two copies of a duplicated event can travel in
  different lists under different ids, while a retry of one list repeats its body;
* a request **without** ``webhook-id``: the same content digest.

Two genuinely different events with the same type, message, recipient, URL and
microsecond timestamp would count once; an event sent once alone and once inside a list
would count twice. Neither happens with CloudMails, which groups the copies of an event
the same way and stamps events to the microsecond.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import lifecycle, signing
from .identity import DELIVERY_ID_ARG

PING = "ping"
BOUNCE_TYPES = ("hard", "soft")
#: Column sizes of DeliveryEvent; longer values are refused, not truncated.
MAX_KEY_LENGTH = 128
MAX_MESSAGE_ID_LENGTH = 128
MAX_RECIPIENT_LENGTH = 320
#: Most events one request may carry.
MAX_EVENTS = 1000


class WebhookError(Exception):
    """A request refused with ``status`` (401, 403, 400, 413...) because of ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ParsedEvent:
    """One validated event, ready to be recorded."""

    event: str
    message_id: str
    occurred_at: datetime
    recipient: str
    dedupe_key: str
    raw: dict[str, Any] = field(repr=False)
    custom_args: dict[str, Any] = field(default_factory=dict, repr=False)
    delivery_ref: uuid.UUID | None = None
    bounce_type: str = ""
    bounce_reason: str = ""
    url: str = ""


@dataclass(frozen=True)
class ParsedBody:
    """A request body: a ping, or one or more events."""

    ping: bool
    events: tuple[ParsedEvent, ...] = ()


# Authentication.


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def check_basic_auth(header: str | None, secrets: Iterable[str]) -> None:
    """Raise a 401 :class:`WebhookError` unless ``header`` carries one of ``secrets``."""
    offered = b""
    if header:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                offered = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                offered = b""
    offered_digest = _digest(offered)
    matched = False
    for secret in secrets:
        # Every pair is compared, whatever the earlier ones gave.
        matched |= hmac.compare_digest(offered_digest, _digest(secret.encode()))
    if not (offered and matched):
        raise WebhookError(401, "Authentication required.")


def check_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str],
    *,
    tolerance: int,
    now: float | None = None,
) -> None:
    """Raise a 403 :class:`WebhookError` unless the Standard Webhooks signature holds."""
    wanted = {name: headers.get(name, "") for name in _SIGNATURE_HEADERS}
    try:
        signing.verify(secrets, wanted, body, tolerance=tolerance, now=now)
    except (signing.SignatureError, ValueError) as err:
        raise WebhookError(403, f"Invalid webhook signature: {err}") from err


_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


# Parsing.


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _check_strings(value: Any) -> None:
    """Refuse strings the database cannot store (NUL, lone surrogates), at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise WebhookError(400, "Strings must not contain NUL characters.")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise WebhookError(400, "Strings must be valid Unicode.") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_json(body: bytes) -> Any:
    """Decode a request body strictly: UTF-8, standard JSON, finite numbers."""
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise WebhookError(400, "The body is not UTF-8.") from None
    except RecursionError:
        raise WebhookError(400, "The body is nested too deeply.") from None
    except ValueError as err:
        raise WebhookError(400, f"The body is not valid JSON: {err}") from None
    _check_strings(data)
    return data


def parse_timestamp(value: Any, where: str) -> datetime:
    """An ISO 8601 datetime with a UTC offset (``Z`` allowed), as an aware UTC datetime."""
    if not isinstance(value, str) or len(value) > 64:
        raise WebhookError(400, f"{where}'timestamp' must be an ISO 8601 string.")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise WebhookError(400, f"{where}'timestamp' is not an ISO 8601 datetime.") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise WebhookError(400, f"{where}'timestamp' must carry a UTC offset.")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise WebhookError(400, f"{where}'timestamp' is out of range.") from None


def content_key(raw: Mapping[str, Any]) -> str:
    """The dedupe key of an event without its own ``webhook-id`` (see module docs)."""
    fields = [raw.get(name) for name in ("event", "message_id", "timestamp", "recipient", "url")]
    canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _string(raw: Mapping[str, Any], name: str, where: str, max_length: int | None = None) -> str:
    if name not in raw:
        raise WebhookError(400, f"{where}missing '{name}'.")
    value = raw[name]
    if not isinstance(value, str):
        raise WebhookError(400, f"{where}'{name}' must be a string.")
    if max_length is not None and len(value) > max_length:
        raise WebhookError(400, f"{where}'{name}' is longer than {max_length} characters.")
    return value


def _delivery_ref(custom_args: Mapping[str, Any]) -> uuid.UUID | None:
    """Our Delivery id from ``custom_args``; a malformed one is only a missing hint."""
    value = custom_args.get(DELIVERY_ID_ARG)
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def parse_event(raw: Any, dedupe_key: str | None, where: str = "") -> ParsedEvent:
    """Validate one event object; ``dedupe_key`` None means "use the content digest"."""
    if not isinstance(raw, dict):
        raise WebhookError(400, f"{where}an event must be a JSON object.")
    event = _string(raw, "event", where)
    if event not in lifecycle.EVENT_TYPES:
        shown = event if len(event) <= 32 else event[:32] + "..."
        raise WebhookError(400, f"{where}unknown event {shown!r}.")
    message_id = _string(raw, "message_id", where, MAX_MESSAGE_ID_LENGTH)
    if not message_id:
        raise WebhookError(400, f"{where}'message_id' must not be empty.")
    occurred_at = parse_timestamp(raw.get("timestamp"), where)
    recipient = _string(raw, "recipient", where, MAX_RECIPIENT_LENGTH)
    custom_args = raw.get("custom_args", {})
    if custom_args is None:
        custom_args = {}
    if not isinstance(custom_args, dict):
        raise WebhookError(400, f"{where}'custom_args' must be an object.")
    bounce_type = bounce_reason = url = ""
    if event == lifecycle.EVENT_BOUNCED:
        bounce_type = _string(raw, "bounce_type", where)
        if bounce_type not in BOUNCE_TYPES:
            raise WebhookError(400, f"{where}'bounce_type' must be 'hard' or 'soft'.")
        bounce_reason = _string(raw, "bounce_reason", where)
    elif event == lifecycle.EVENT_CLICKED:
        url = _string(raw, "url", where)
    return ParsedEvent(
        event=event,
        message_id=message_id,
        occurred_at=occurred_at,
        recipient=recipient,
        dedupe_key=dedupe_key or content_key(raw),
        raw=raw,
        custom_args=custom_args,
        delivery_ref=_delivery_ref(custom_args),
        bounce_type=bounce_type,
        bounce_reason=bounce_reason,
        url=url,
    )


def parse_body(body: bytes, webhook_id: str | None = None) -> ParsedBody:
    """Parse a whole request body: a ping, one event, or a non-empty list of events."""
    if webhook_id is not None and not 0 < len(webhook_id) <= MAX_KEY_LENGTH:
        raise WebhookError(400, f"webhook-id must be 1 to {MAX_KEY_LENGTH} characters.")
    data = load_json(body)
    if isinstance(data, dict):
        if data.get("event") == PING:
            return ParsedBody(ping=True)
        return ParsedBody(ping=False, events=(parse_event(data, webhook_id),))
    if isinstance(data, list):
        if not data:
            raise WebhookError(400, "The list of events is empty.")
        if len(data) > MAX_EVENTS:
            raise WebhookError(400, f"At most {MAX_EVENTS} events per request.")
        events = tuple(
            parse_event(item, None, where=f"events[{index}]: ") for index, item in enumerate(data)
        )
        return ParsedBody(ping=False, events=events)
    raise WebhookError(400, "The body must be an event object or a list of them.")
