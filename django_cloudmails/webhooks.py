"""Authenticating and reading CloudMails webhook requests, before anything is stored.

Liberal in what is read, strict in what is stored. Authentication (Basic credentials, the
optional signature) and size (bytes, events per request, nesting depth) are strict: they
refuse the request with a :class:`WebhookError` carrying the HTTP status (401, 403, 413,
400). The shape of an event is not, because a 4xx makes the sender give up and the event
is lost. The API reference documents ``event``, ``message_id``, ``timestamp``,
``recipient`` and ``custom_args``; only ``event`` and ``message_id`` are required
(non-empty strings that fit their columns). Everything else, when missing or unreadable:

* ``timestamp``: the time the request was received (read in any common form, see
  :mod:`~.timestamps`);
* ``recipient``: empty (so no suppression); ``custom_args``: empty (the event then finds
  its row by message id only);
* ``bounce_type`` of a ``bounced`` event: hard (the reference's ``bounced`` is "rejected
  by recipient server"; transient trouble is ``deferred``); values are read
  case-insensitively, ``permanent``/``transient`` too. The reason is ``bounce_reason``
  or ``reason``;
* ``url`` of a ``clicked`` event: empty; the click still counts;
* an event type the lifecycle does not know is stored and changes nothing else.

Every field, known or not, is kept in the stored payload; strings no database can store
(NUL, lone surrogates) become U+FFFD. One bad event of a list is reported, not fatal.

Dedupe key (what makes "the same event delivered twice" count once):

* a body holding **one event** with a ``webhook-id`` (or ``svix-id``) header: that id,
  which the sender keeps across retries and duplicates of the event (an id longer than
  the column, or not printable ASCII, is replaced by its SHA-256);
* an event **inside a list** body: ``"sha256:"`` + the SHA-256 of the canonical JSON of
  its ``event``, ``message_id``, ``timestamp``, ``recipient`` and ``url``. The list's
  ``webhook-id`` names the request, not the events: the sandbox (like real ESPs that
  batch) gives each list a new id, so the two copies of a duplicated event can travel in
  different lists under different ids, while a retry of one list repeats its body;
* a request **without** ``webhook-id``: the same content digest.

Two genuinely different events with the same type, message, recipient, URL and
timestamp (or both without one) count once when they come without a ``webhook-id``;
status polling repairs the counters from the API's own (``opens``, ``clicks``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import lifecycle, signing
from .identity import DELIVERY_ID_ARG
from .json_body import BodyError, load_json
from .timestamps import parse_timestamp

#: Bodies whose ``event`` (or, without one, ``type``) is one of these are test pings.
PING_TYPES = frozenset({"ping", "test"})
#: Column sizes of DeliveryEvent: a longer event type or message id makes the event
#: invalid; a longer recipient is not stored on the row (it stays in the payload).
MAX_EVENT_LENGTH = 64
MAX_KEY_LENGTH = 128
MAX_MESSAGE_ID_LENGTH = 128
MAX_RECIPIENT_LENGTH = 320
#: Most events one request may carry.
MAX_EVENTS = 1000

_BOUNCE_TYPES = {
    "hard": "hard",
    "permanent": "hard",
    "soft": "soft",
    "transient": "soft",
    "temporary": "soft",
}


class WebhookError(Exception):
    """A request refused with ``status`` (401, 403, 400, 413...) because of ``reason``;
    ``invalid`` lists the events of a list body that could not be read."""

    def __init__(self, status: int, reason: str, invalid: tuple[InvalidEvent, ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.invalid = invalid


@dataclass(frozen=True)
class ParsedEvent:
    """One readable event, ready to be recorded."""

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

    @property
    def known(self) -> bool:
        """Whether the lifecycle knows this event type (others change no Delivery)."""
        return self.event in lifecycle.EVENT_TYPES


@dataclass(frozen=True)
class InvalidEvent:
    """An event of a list body that could not be read: its position and why."""

    index: int
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.error}


@dataclass(frozen=True)
class ParsedBody:
    """A request body: a ping, or events (and, for a list, the ones that were invalid)."""

    ping: bool
    events: tuple[ParsedEvent, ...] = ()
    invalid: tuple[InvalidEvent, ...] = ()


# Authentication.


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _usable_pair(pair: bytes) -> bool:
    """Whether ``pair`` is ``user:password`` with neither half empty."""
    user, colon, password = pair.partition(b":")
    return bool(user and colon and password)


def _secret_bytes(secret: object) -> bytes | None:
    if not isinstance(secret, str):
        return None
    try:
        encoded = secret.encode()
    except UnicodeEncodeError:
        return None
    return encoded if _usable_pair(encoded) else None


def check_basic_auth(header: str | None, secrets: Iterable[str]) -> None:
    """Raise a 401 :class:`WebhookError` unless ``header`` carries one of ``secrets``.

    Credentials with an empty user or password never authenticate, and a configured
    secret with an empty half is ignored (system check ``cloudmails.E006`` reports it),
    whether or not the system checks ran.
    """
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
        usable = _secret_bytes(secret)
        if usable is None:
            continue
        # Every pair is compared, whatever the earlier ones gave.
        matched |= hmac.compare_digest(offered_digest, _digest(usable))
    if not (matched and _usable_pair(offered)):
        raise WebhookError(401, "Authentication required.")


_SIGNATURE_PARTS = ("id", "timestamp", "signature")


def header_value(headers: Mapping[str, str], part: str) -> str:
    """The ``webhook-<part>`` header, or its ``svix-<part>`` alias (Svix's names)."""
    return headers.get(f"webhook-{part}") or headers.get(f"svix-{part}") or ""


def check_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str],
    *,
    tolerance: int,
    now: float | None = None,
) -> None:
    """Raise a 403 :class:`WebhookError` unless the Standard Webhooks signature holds
    (``webhook-*`` headers, or Svix's ``svix-*`` aliases)."""
    wanted = {f"webhook-{part}": header_value(headers, part) for part in _SIGNATURE_PARTS}
    try:
        signing.verify(secrets, wanted, body, tolerance=tolerance, now=now)
    except (signing.SignatureError, ValueError) as err:
        raise WebhookError(403, f"Invalid webhook signature: {err}") from err


# Reading events.


def content_key(raw: Mapping[str, Any]) -> str:
    """The dedupe key of an event without its own ``webhook-id`` (see module docs)."""
    fields = [raw.get(name) for name in ("event", "message_id", "timestamp", "recipient", "url")]
    canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _id_key(webhook_id: str | None) -> str | None:
    """The dedupe key a ``webhook-id`` gives (None: use the content digest)."""
    if not webhook_id:
        return None
    if len(webhook_id) <= MAX_KEY_LENGTH and webhook_id.isascii() and webhook_id.isprintable():
        return webhook_id
    digest = hashlib.sha256(webhook_id.encode("utf-8", "surrogatepass")).hexdigest()
    return "webhook-id-sha256:" + digest


def _kind(value: Any) -> str:
    """An event or bounce type as compared: stripped, lower-cased; "" if not a string."""
    return value.strip().lower() if isinstance(value, str) else ""


def _text(raw: Mapping[str, Any], *names: str) -> str:
    """The first of ``names`` holding a non-empty string, else ""."""
    for name in names:
        value = raw.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _required(raw: Mapping[str, Any], name: str, max_length: int, where: str) -> str:
    if name not in raw:
        raise WebhookError(400, f"{where}missing '{name}'.")
    value = raw[name]
    if not isinstance(value, str):
        raise WebhookError(400, f"{where}'{name}' must be a string.")
    if not value.strip():
        raise WebhookError(400, f"{where}'{name}' must not be empty.")
    if len(value) > max_length:
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


def _type_of(data: Mapping[str, Any]) -> str:
    return _kind(data.get("event")) or _kind(data.get("type"))


def is_ping(data: Mapping[str, Any]) -> bool:
    """Whether a whole-body object is a test ping (answered 200, changing nothing): its
    ``event`` (or ``type``) is ping or test, or it has no ``message_id`` and no event
    type the lifecycle knows, so there is nothing it could be recorded against."""
    kind = _type_of(data)
    if kind in PING_TYPES:
        return True
    return not data.get("message_id") and kind not in lifecycle.EVENT_TYPES


def parse_event(
    raw: Any,
    dedupe_key: str | None = None,
    where: str = "",
    *,
    received_at: datetime | None = None,
) -> ParsedEvent:
    """Read one event object (see the module docs for what each field may be).

    ``dedupe_key`` None means "use the content digest"; ``received_at`` (default: now)
    stands in for a missing or unreadable timestamp. Raises a 400 :class:`WebhookError`
    when ``event`` or ``message_id`` is unusable.
    """
    if not isinstance(raw, dict):
        raise WebhookError(400, f"{where}an event must be a JSON object.")
    event = _kind(_required(raw, "event", MAX_EVENT_LENGTH, where))
    message_id = _required(raw, "message_id", MAX_MESSAGE_ID_LENGTH, where)
    occurred_at = parse_timestamp(raw.get("timestamp"))
    if occurred_at is None:
        occurred_at = received_at or datetime.now(timezone.utc)
    recipient = raw.get("recipient")
    if not isinstance(recipient, str) or len(recipient) > MAX_RECIPIENT_LENGTH:
        recipient = ""
    custom_args = raw.get("custom_args")
    if not isinstance(custom_args, dict):
        custom_args = {}
    bounce_type = bounce_reason = url = ""
    if event == lifecycle.EVENT_BOUNCED:
        bounce_type = _BOUNCE_TYPES.get(_kind(raw.get("bounce_type")), "hard")
        bounce_reason = _text(raw, "bounce_reason", "reason")
    elif event == lifecycle.EVENT_CLICKED:
        url = _text(raw, "url")
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


def parse_body(
    body: bytes, webhook_id: str | None = None, *, received_at: datetime | None = None
) -> ParsedBody:
    """Read a whole request body: a ping, one event, or a list of events.

    In a list, an event that cannot be read is reported in ``invalid`` and the others
    are kept; pings inside it are skipped. Raises a 400 :class:`WebhookError` for a body
    that is not JSON, too deep, neither an object nor a list, holds more than
    :data:`MAX_EVENTS` items, is one unreadable event, or is a list of which nothing
    could be read.
    """
    try:
        data = load_json(body)
    except BodyError as err:
        raise WebhookError(400, str(err)) from None
    if isinstance(data, dict):
        if is_ping(data):
            return ParsedBody(ping=True)
        event = parse_event(data, _id_key(webhook_id), received_at=received_at)
        return ParsedBody(ping=False, events=(event,))
    if not isinstance(data, list):
        raise WebhookError(400, "The body must be an event object or a list of them.")
    if len(data) > MAX_EVENTS:
        raise WebhookError(400, f"At most {MAX_EVENTS} events per request.")
    events: list[ParsedEvent] = []
    invalid: list[InvalidEvent] = []
    pings = 0
    for index, item in enumerate(data):
        if isinstance(item, dict) and _type_of(item) in PING_TYPES:
            pings += 1
            continue
        try:
            events.append(parse_event(item, None, received_at=received_at))
        except WebhookError as err:
            invalid.append(InvalidEvent(index, err.reason))
    if invalid and not events and not pings:
        raise WebhookError(
            400, f"None of the {len(invalid)} events could be read.", invalid=tuple(invalid)
        )
    only_pings = bool(pings) and not events and not invalid
    return ParsedBody(ping=only_pings, events=tuple(events), invalid=tuple(invalid))
