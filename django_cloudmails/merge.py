"""Per-recipient personalisation: ``{{name}}`` placeholders filled from merge data.

The API has no templating of its own, so placeholders are filled here, before a message
leaves, once per recipient. The attributes follow django-anymail (``merge_data``,
``merge_global_data``), so a project moving from anymail keeps its code:

    message.merge_global_data = {"shop": "Acme"}
    message.merge_data = {"ann@example.com": {"name": "Ann"}}
    message.subject = "Hello {{name}}"

Values are HTML-escaped in ``html`` (unless marked safe) and used as they are in
``subject`` and ``text``. A placeholder without a value is an error, not an empty string,
so a half-personalised email never goes out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.utils.html import conditional_escape

from .exceptions import CloudMailsInvalidMessage

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")


def is_set(value: Any) -> bool:
    """Whether a message attribute was given (None and anymail's ``UNSET`` are not)."""
    return value is not None and getattr(value, "__name__", None) != "UNSET"


def has_merge_data(message: Any) -> bool:
    """Whether ``message`` asks for placeholders to be filled."""
    return is_set(getattr(message, "merge_data", None)) or is_set(
        getattr(message, "merge_global_data", None)
    )


def recipient_values(message: Any, to: str, bare: str) -> dict[str, Any]:
    """The merge values for one ``to`` address: global data overlaid by the recipient's.

    ``merge_data`` may be keyed by the address as written in ``to`` or by the bare
    address (case-insensitive), as anymail users key it.
    """
    values: dict[str, Any] = {}
    global_data = getattr(message, "merge_global_data", None)
    if is_set(global_data):
        values.update(_mapping(global_data, "merge_global_data"))
    per_recipient = getattr(message, "merge_data", None)
    if is_set(per_recipient):
        data = _mapping(per_recipient, "merge_data")
        own = data.get(to, data.get(bare))
        if own is None:
            lowered = bare.lower()
            own = next((v for k, v in data.items() if str(k).lower() == lowered), None)
        if own is not None:
            values.update(_mapping(own, f"merge_data[{bare!r}]"))
    return values


def render(template: str, values: Mapping[str, Any], *, html: bool, to: str) -> str:
    """``template`` with every placeholder replaced; escaped for HTML when ``html``."""
    if "{{" not in template:
        return template

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise CloudMailsInvalidMessage(
                f"No merge value for placeholder {{{{{name}}}}} (recipient {to}); "
                "set it in merge_data or merge_global_data.",
                field="merge_data",
            )
        value = values[name]
        return str(conditional_escape(value)) if html else str(value)

    return PLACEHOLDER.sub(fill, template)


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CloudMailsInvalidMessage(f"{name} must be a dict.", field="merge_data")
    return value
