"""Header values checked the way the running Django checks them when it builds a message.

Django < 6.0 sets every header through ``forbid_multi_line_headers``, which raises
``BadHeaderError`` for a CR or LF and encodes the value in the message's charset;
Django 6.0+ sets them on a modern ``email.message.EmailMessage``, whose policy raises
``ValueError`` for a value of more than one line (any ``str.splitlines`` boundary, so
also U+2028 and friends). We call the former and apply the latter's rule, so each
version refuses what it refuses, with its exception type (``BadHeaderError`` is
``ValueError`` on 6.0+).

One departure: the policy lets a single *trailing* line break through, and Python then
writes it as a blank line that ends the header block early (``Subject: x`` followed by
an empty line: every later header, From and To included, lands in the body). Django
6.x would send that broken message; we refuse it like any other line break.
"""

from __future__ import annotations

from functools import lru_cache

import django
from django.core.mail.message import BadHeaderError, forbid_multi_line_headers
from django.utils.encoding import force_str

from .exceptions import CloudMailsInvalidAddress, CloudMailsInvalidMessage, CloudMailsUnencodable

_MODERN = django.VERSION >= (6, 0)
_ADDRESS_HEADERS = frozenset({"From", "To", "Cc", "Reply-To"})


class CloudMailsBadHeader(CloudMailsInvalidMessage, BadHeaderError):
    """A header value with a line break, refused as Django refuses it."""


def header_value(name: str, value: object, *, field: str, encoding: str = "utf-8") -> str:
    """``value`` as the text Django puts in header ``name``; refused as Django refuses it."""
    text = force_str(value)
    if text.isascii() and text.isprintable():  # no line break of any kind, nothing to encode
        return text
    try:
        return _checked(name, text, encoding)
    except UnicodeError as error:
        raise CloudMailsUnencodable(
            f"{field}: {text!r} cannot be encoded in the message's charset {encoding!r} "
            f"({error}); set message.encoding to one that can (utf-8 always can).",
            field=field,
        ) from error
    except BadHeaderError as error:  # ValueError itself on Django 6.0+
        what = "is not a valid email address" if name in _ADDRESS_HEADERS else "is refused"
        raise CloudMailsBadHeader(
            f"{field}: {text!r} {what}: header values can't contain line breaks.", field=field
        ) from error
    except ValueError as error:  # Django < 6.0 re-parses non-ASCII address headers
        raise CloudMailsInvalidAddress(
            f"{field}: {text!r} is not a valid email address ({error}).", field=field
        ) from error


@lru_cache(maxsize=1024)
def _checked(name: str, text: str, encoding: str) -> str:
    if _MODERN:
        if len(text.splitlines()) > 1 or "\n" in text or "\r" in text:
            raise BadHeaderError("Header values may not contain linefeed or carriage return")
        return text
    forbid_multi_line_headers(name, text, encoding)
    return text
