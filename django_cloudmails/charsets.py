"""Text encoded in a message's charset, labelled the way the running Django labels it.

``EmailMessage.encoding`` (or ``DEFAULT_CHARSET``) is the charset of every text part.
Django < 6.0 builds text parts with ``MIMEText``, which goes through
:class:`email.charset.Charset` (``shift_jis`` text is converted to and labelled
``iso-2022-jp``); Django 6.0+ uses ``set_content``, which encodes with the charset as
given and labels it with its alias (``latin-1`` -> ``iso-8859-1``). Text that cannot be
encoded is refused, as Django refuses it (a ``UnicodeEncodeError``).
"""

from __future__ import annotations

import email.charset
from functools import lru_cache

import django

from .exceptions import CloudMailsUnencodable

_MODERN = django.VERSION >= (6, 0)


@lru_cache(maxsize=64)
def charset_of(encoding: str) -> tuple[str, str]:
    """``(label, codec)``: the ``charset=`` parameter and the codec of the bytes."""
    if _MODERN:
        return email.charset.ALIASES.get(encoding, encoding), encoding
    charset = email.charset.Charset(encoding)
    label = str(charset.get_output_charset())
    return label, label


def encode_text(text: str, encoding: str, *, field: str) -> bytes:
    """``text`` in the message's charset; refused naming ``field`` if it cannot be."""
    codec = charset_of(encoding)[1]
    try:
        return text.encode(codec)
    except (UnicodeError, LookupError) as error:
        raise CloudMailsUnencodable(
            f"{field}: the text cannot be encoded in the message's charset {encoding!r} "
            f"({error}); set message.encoding to one that can (utf-8 always can).",
            field=field,
        ) from error


def check_encodable(text: str, encoding: str, *, field: str) -> None:
    """Refuse ``text`` unless the message's charset can encode it (ASCII always can)."""
    if not text.isascii() or charset_of(encoding)[1] not in _ASCII_SUPERSETS:
        encode_text(text, encoding, field=field)


_ASCII_SUPERSETS = frozenset({"utf-8", "utf8", "us-ascii", "iso-8859-1", "latin-1"})
