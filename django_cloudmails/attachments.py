"""EmailMessage attachments as API attachment objects, with the bytes Django would send.

Django keeps attachments as ``(filename, content, mimetype)`` tuples (``attach()``,
``attach_file()``) or as MIME parts (``MIMEImage`` on Django < 6.1, ``MIMEPart`` on 6.0+).
The API wants ``{"filename", "content" (base64), "content_type"}``, plus
``"disposition": "inline"`` and ``"content_id"`` for a part with a ``Content-ID``, which
is how HTML bodies embed images (``<img src="cid:logo">``).

``content_type`` is the whole MIME type with its parameters: a text attachment is encoded
in the message's charset (``message.encoding`` or ``DEFAULT_CHARSET``) and labelled with
it (``text/plain; charset="iso-8859-1"``), as Django labels it; a MIME part keeps its own
``Content-Type``. A ``str`` given for a non-text type becomes the bytes the running Django
would make of it (UTF-8 on 6.0+; ASCII, or Python's raw-unicode-escape, before).
"""

from __future__ import annotations

import base64
import email.message
import mimetypes
from typing import Any

import django
from django.utils.encoding import force_bytes, force_str

from .anymail_compat import unsupported_feature
from .charsets import charset_of, encode_text
from .exceptions import CloudMailsInvalidMessage
from .headers import header_value
from .limits import MAX_MESSAGE_BYTES

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_MODERN = django.VERSION >= (6, 0)


def encode_attachments(attachments: list[Any], *, encoding: str = "utf-8") -> list[dict[str, str]]:
    """Every attachment of a message as an API attachment object, in order.

    A multipart attachment is skipped here: :func:`check_single_parts` refuses it, after
    the checks Django makes itself, so an email Django refuses gets Django's error first.
    """
    encoded = []
    for index, attachment in enumerate(attachments):
        if isinstance(attachment, email.message.Message):
            item = _from_mime(attachment, index)
        else:
            item = _from_tuple(attachment, index, encoding)
        if item is None:
            continue
        if len(item["content"]) > MAX_MESSAGE_BYTES:
            raise CloudMailsInvalidMessage(
                f'Attachment "{item["filename"]}" is {len(item["content"])} bytes in base64; '
                f"one API message may carry at most {MAX_MESSAGE_BYTES} bytes.",
                field="attachments",
            )
        encoded.append(item)
    return encoded


def _from_tuple(attachment: Any, index: int, encoding: str) -> dict[str, str]:
    filename, content, mimetype = attachment
    filename = force_str(filename or "")
    mimetype = force_str(mimetype or "") or (
        mimetypes.guess_type(filename)[0] or DEFAULT_CONTENT_TYPE
    )
    maintype = mimetype.partition("/")[0].strip().lower()
    if maintype == "text" and isinstance(content, bytes):
        try:  # as EmailMessage.attach() does, for tuples appended by hand
            content = content.decode()
        except UnicodeDecodeError:
            mimetype, maintype = DEFAULT_CONTENT_TYPE, "application"
    if _MODERN and filename:
        header_value("Content-Disposition", filename, field="attachments")
    if maintype == "text":
        data = encode_text(force_str(content), encoding, field="attachments")
        content_type = _with_charset(mimetype, charset_of(encoding)[0])
    elif maintype == "message":
        data = _message_bytes(content)
        content_type = mimetype
    else:
        data = _binary(content)
        content_type = mimetype
    return {
        "filename": filename or _default_filename(index, mimetype),
        "content": base64.b64encode(data).decode("ascii"),
        "content_type": content_type,
    }


def _with_charset(mimetype: str, label: str) -> str:
    """``mimetype`` with its ``charset`` replaced by ``label``, as ``set_param`` writes it."""
    holder = email.message.Message()
    holder["Content-Type"] = mimetype
    holder.set_param("charset", label)
    return " ".join(str(holder["Content-Type"]).split())


def _message_bytes(content: Any) -> bytes:
    if isinstance(content, email.message.Message):
        return content.as_bytes()
    if hasattr(content, "message") and callable(content.message):
        return bytes(content.message().as_bytes())  # a Django EmailMessage
    return force_bytes(content)


def _binary(content: Any) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    if _MODERN or not isinstance(content, str):
        return force_bytes(content)
    # Django < 6.0 hands the str to MIMEBase.set_payload(), and base64-encodes what
    # Message.get_payload(decode=True) makes of it.
    try:
        return content.encode("ascii", "surrogateescape")
    except UnicodeError:
        return content.encode("raw-unicode-escape")


def check_single_parts(attachments: list[Any]) -> None:
    """Refuse a multipart attachment: the API carries single files only."""
    for index, part in enumerate(attachments):
        if _is_multipart(part):
            raise unsupported_feature(
                f"Attachment {index} is a {part.get_content_type()} MIME part; the API "
                "carries single files only. Attach its parts one by one.",
                field="attachments",
            )


def _is_multipart(part: Any) -> bool:
    return (
        isinstance(part, email.message.Message)
        and part.is_multipart()
        and part.get_content_type() != "message/rfc822"
    )


def _from_mime(part: email.message.Message, index: int) -> dict[str, str] | None:
    content_type = part.get_content_type()
    if _is_multipart(part):
        return None  # refused by check_single_parts() unless unsupported is ignored
    data: bytes
    if content_type == "message/rfc822":
        inner = part.get_payload(0)
        data = inner.as_bytes() if isinstance(inner, email.message.Message) else b""
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    raw_type = part.get("Content-Type")
    item = {
        "filename": part.get_filename() or _default_filename(index, content_type),
        "content": base64.b64encode(data).decode("ascii"),
        "content_type": " ".join(str(raw_type).split()) if raw_type else content_type,
    }
    content_id = str(part.get("Content-ID", "")).strip().strip("<>")
    if content_id:
        item["disposition"] = "inline"
        item["content_id"] = content_id
    return item


def _default_filename(index: int, content_type: str) -> str:
    base = content_type.partition(";")[0].strip()
    return f"attachment-{index + 1}{mimetypes.guess_extension(base) or ''}"
