"""Field validation of API messages, the way the CloudMails API answers 400 and 403.

Kept apart from the HTTP code so that one bad message in a batch becomes one per-message
error entry instead of a failed request, and so the rules can be read in one place.
Addresses and MIME types are read by :mod:`.mailboxes`, the sandbox's own code: nothing
here comes from the package, so the sandbox can catch the package's mistakes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any

from django_cloudmails.limits import MAX_MESSAGE_BYTES

from .mailboxes import AddressError, parse_content_type, parse_mailbox

REQUIRED_FIELDS = ("to", "from", "subject", "html")
STRING_FIELDS = ("to", "from", "subject", "html", "text", "reply_to")
ADDRESS_FIELDS = ("to", "from", "reply_to")
LIST_FIELDS = ("cc", "bcc")
MESSAGE_FIELDS = frozenset((*STRING_FIELDS, *LIST_FIELDS, "attachments", "custom_args"))
ATTACHMENT_REQUIRED = ("filename", "content", "content_type")
ATTACHMENT_FIELDS = frozenset((*ATTACHMENT_REQUIRED, "disposition", "content_id"))
DISPOSITIONS = ("attachment", "inline")


class ValidationError(Exception):
    """One message (or request) is refused; ``status`` is 400 or 403."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    def as_error(self) -> dict[str, Any]:
        """The ``error`` object of the wire format."""
        error: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.field is not None and self.status == 400:
            error["field"] = self.field
        return error


def _check_address(value: str, field: str) -> None:
    try:
        parse_mailbox(value)
    except AddressError as error:
        raise ValidationError(f"'{field}' is not a valid email address: {error}.", field) from None


def bare_address(value: str) -> str:
    """The addr-spec of an address field (the value itself, stripped, if it has none)."""
    try:
        return parse_mailbox(value).addr_spec
    except AddressError:
        return value.strip()


def _check_types(message: Mapping[str, Any], *, envelope: bool = False) -> None:
    for key in message:
        if key not in MESSAGE_FIELDS or (envelope and key == "to"):
            where = "batch envelope" if envelope else "message"
            raise ValidationError(f"Unknown field '{key}' in {where}.", key)
    for field in STRING_FIELDS:
        if field in message and not isinstance(message[field], str):
            raise ValidationError(f"'{field}' must be a string.", field)
    for field in ADDRESS_FIELDS:
        if field in message:
            _check_address(message[field], field)
    if "subject" in message and ("\r" in message["subject"] or "\n" in message["subject"]):
        raise ValidationError("'subject' must be one line (no CR or LF).", "subject")
    if "html" in message and not message["html"]:
        raise ValidationError("'html' must not be empty.", "html")
    for field in LIST_FIELDS:
        if field in message:
            _check_address_list(message[field], field)
    if "attachments" in message:
        _check_attachments(message["attachments"])
    if "custom_args" in message:
        _check_custom_args(message["custom_args"])


def _check_address_list(value: Any, field: str) -> None:
    if not isinstance(value, list):
        raise ValidationError(f"'{field}' must be a list of strings.", field)
    for item in value:
        if not isinstance(item, str):
            raise ValidationError(f"'{field}' must be a list of strings.", field)
        _check_address(item, field)


def _check_attachments(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("'attachments' must be a list of objects.", "attachments")
    for index, item in enumerate(value):
        _check_attachment(item, f"attachments[{index}]")


def _check_attachment(item: Any, where: str) -> None:
    field = "attachments"
    if not isinstance(item, dict):
        raise ValidationError(f"{where} must be an object.", field)
    for key in item:
        if key not in ATTACHMENT_FIELDS:
            raise ValidationError(f"Unknown field '{key}' in {where}.", field)
    for key in ATTACHMENT_REQUIRED:
        if key not in item:
            raise ValidationError(f"{where} is missing '{key}'.", field)
    for key in ATTACHMENT_FIELDS:
        if key in item and not isinstance(item[key], str):
            raise ValidationError(f"{where}.{key} must be a string.", field)
    _check_attachment_values(item, where)


def _check_attachment_values(item: dict[str, str], where: str) -> None:
    field = "attachments"
    if not item["filename"]:
        raise ValidationError(f"{where}.filename must not be empty.", field)
    if "\r" in item["filename"] or "\n" in item["filename"]:
        raise ValidationError(f"{where}.filename must be one line (no CR or LF).", field)
    try:
        parse_content_type(item["content_type"])
    except ValueError as error:
        raise ValidationError(f"{where}.content_type: {error}.", field) from None
    try:
        base64.b64decode(item["content"], validate=True)
    except (ValueError, binascii.Error):
        raise ValidationError(f"{where}.content is not valid base64.", field) from None
    disposition = item.get("disposition", "attachment")
    if disposition not in DISPOSITIONS:
        raise ValidationError(f"{where}.disposition must be 'attachment' or 'inline'.", field)
    if disposition == "inline" and not item.get("content_id"):
        raise ValidationError(f"{where} is inline and needs a content_id.", field)


def _check_custom_args(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("'custom_args' must be an object.", "custom_args")
    for key, item in value.items():
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise ValidationError(
                f"custom_args['{key}'] must be a string, number, boolean or null.",
                "custom_args",
            )


def validate_message(message: Any, *, check_size: bool = True) -> dict[str, Any]:
    """Check one message (defaults already applied) and return it; 400 otherwise.

    ``check_size`` can be turned off when the whole request body is known to be
    smaller than the per-message limit, which saves re-serialising every message.
    """
    if not isinstance(message, dict):
        raise ValidationError("A message must be a JSON object.", "message")
    _check_types(message)
    for field in REQUIRED_FIELDS:
        if field not in message:
            raise ValidationError(f"Missing required field '{field}'.", field)
    if check_size:
        size = len(json.dumps(message, separators=(",", ":")).encode())
        if size > MAX_MESSAGE_BYTES:
            raise ValidationError(
                f"The message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}.",
                "message",
            )
    return message


def validate_envelope(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """Check the batch defaults (every key but ``messages``); a whole-request 400."""
    defaults = {key: value for key, value in envelope.items() if key != "messages"}
    _check_types(defaults, envelope=True)
    return defaults


class SenderPolicy:
    """Which ``from`` addresses count as verified (None = all of them)."""

    def __init__(self, verified: Iterable[str] | None):
        self.addresses: set[str] | None = None
        self.domains: set[str] = set()
        if verified is not None:
            self.addresses = set()
            for entry in verified:
                cleaned = entry.strip().lower()
                if cleaned.startswith("@"):
                    self.domains.add(cleaned[1:])
                else:
                    self.addresses.add(bare_address(cleaned).lower())

    def check(self, sender: str) -> None:
        """Raise a 403 :class:`ValidationError` unless ``sender`` is verified."""
        if self.addresses is None:
            return
        address = bare_address(sender).lower()
        domain = address.rpartition("@")[2]
        if address in self.addresses or domain in self.domains:
            return
        raise ValidationError(f"The sender address {address} is not verified.", "from", status=403)
