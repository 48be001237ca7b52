"""The address syntax the CloudMails API accepts, in one place.

The backend checks addresses with these rules before it writes or sends anything, and
the sandbox refuses what they refuse, so the two never disagree. Pure standard library:
the sandbox and the client side stay free of Django.
"""

from __future__ import annotations

import re
from functools import lru_cache

_LABEL = r"[^\W_](?:(?:[^\W_]|-)*[^\W_])?"
_ADDR_SPEC = re.compile(
    r"(?!\.)(?!.*\.\.)[^\s<>()\[\],;:@\"\\]{1,64}(?<!\.)"
    rf"@(?:{_LABEL}\.)*{_LABEL}"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ADDRESS_LENGTH = 254


@lru_cache(maxsize=4096)  # a batch checks one sender thousands of times
def split_address(value: str) -> tuple[str, str] | None:
    """``(display name, address)`` of ``"Name <a@b>"`` or ``"a@b"``; None if invalid."""
    if _CONTROL.search(value):
        return None
    value = value.strip()
    if not value:
        return None
    name = ""
    if value.endswith(">"):
        start = value.rfind("<")
        if start < 0:
            return None
        name = value[:start].strip()
        value = value[start + 1 : -1].strip()
        if "<" in name or ">" in name:
            return None
    if len(value) > MAX_ADDRESS_LENGTH or _ADDR_SPEC.fullmatch(value) is None:
        return None
    return name, value


def bare_address(value: str) -> str:
    """The address part of an address string (the string itself, stripped, if invalid)."""
    parts = split_address(value)
    return parts[1] if parts else value.strip()
