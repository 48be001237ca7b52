"""EmailMessage attachments as API attachment objects.

Django keeps attachments as ``(filename, content, mimetype)`` tuples (``attach()``,
``attach_file()``) or as MIME parts (``MIMEImage`` on Django < 6.1, ``MIMEPart`` on 6.1+).
The API wants ``{"filename", "content" (base64), "content_type"}``, plus
``"disposition": "inline"`` and ``"content_id"`` for a part with a ``Content-ID``, which
is how HTML bodies embed images (``<img src="cid:logo">``).
"""

from __future__ import annotations

import base64
import email.message
import mimetypes
from typing import Any

from django.utils.encoding import force_bytes, force_str

from .exceptions import CloudMailsInvalidMessage, CloudMailsUnsupportedFeature
from .limits import MAX_MESSAGE_BYTES

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def encode_attachments(
    attachments: list[Any], *, encoding: str = "utf-8", ignore_unsupported: bool = False
) -> list[dict[str, str]]:
    """Every attachment of a message as an API attachment object, in order."""
    encoded = []
    for index, attachment in enumerate(attachments):
        if isinstance(attachment, email.message.Message):
            item = _from_mime(attachment, index, ignore_unsupported)
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
    mimetype = force_str(mimetype or "") or (
        mimetypes.guess_type(str(filename or ""))[0] or DEFAULT_CONTENT_TYPE
    )
    if isinstance(content, email.message.Message):
        data = content.as_bytes()
    elif hasattr(content, "message") and callable(content.message):
        data = content.message().as_bytes()  # a Django EmailMessage (message/rfc822)
    elif isinstance(content, str):
        data = content.encode(encoding)
    else:
        data = force_bytes(content)
    return {
        "filename": force_str(filename or "") or _default_filename(index, mimetype),
        "content": base64.b64encode(data).decode("ascii"),
        "content_type": mimetype,
    }


def _from_mime(part: email.message.Message, index: int, ignore: bool) -> dict[str, str] | None:
    content_type = part.get_content_type()
    if part.is_multipart() and content_type != "message/rfc822":
        if ignore:
            return None
        raise CloudMailsUnsupportedFeature(
            f"Attachment {index} is a {content_type} MIME part; the API carries single "
            "files only. Attach its parts one by one.",
            field="attachments",
        )
    data: bytes
    if content_type == "message/rfc822":
        inner = part.get_payload(0)
        data = inner.as_bytes() if isinstance(inner, email.message.Message) else b""
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    item = {
        "filename": part.get_filename() or _default_filename(index, content_type),
        "content": base64.b64encode(data).decode("ascii"),
        "content_type": content_type,
    }
    content_id = str(part.get("Content-ID", "")).strip().strip("<>")
    if content_id:
        item["disposition"] = "inline"
        item["content_id"] = content_id
    return item


def _default_filename(index: int, content_type: str) -> str:
    return f"attachment-{index + 1}{mimetypes.guess_extension(content_type) or ''}"
