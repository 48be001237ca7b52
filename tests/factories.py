"""Builders of webhook request parts, shared by the webhook, view and recording tests."""

from __future__ import annotations

import base64
from typing import Any

#: The fields the API reference documents for every webhook event, and no others.
MINIMAL_FIELDS = ("event", "message_id", "timestamp", "recipient", "custom_args")

#: Fields some senders add (and the sandbox's rich switch sends); never there by default.
RICH_FIELDS: dict[str, dict[str, Any]] = {
    "bounced": {"bounce_type": "hard", "bounce_reason": "550 5.1.1 user unknown"},
    "clicked": {"url": "https://example.com/"},
}


def basic_auth(pair: str) -> str:
    """The Authorization header value for ``"user:password"``."""
    return "Basic " + base64.b64encode(pair.encode()).decode()


def event_body(name: str = "delivered", *, rich: bool = False, **fields: Any) -> dict[str, Any]:
    """A webhook event in the API reference's own shape (``event``, ``message_id``,
    ``timestamp``, ``recipient``, ``custom_args`` and nothing else); ``rich`` adds the
    type's extra fields (:data:`RICH_FIELDS`), ``fields`` override or add any."""
    body: dict[str, Any] = {
        "event": name,
        "message_id": "msg_1",
        "timestamp": "2026-05-19T14:30:00.123456Z",
        "recipient": "someone@example.com",
        "custom_args": {},
    }
    if rich:
        body.update(RICH_FIELDS.get(name, {}))
    body.update(fields)
    return body


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """``body`` without the fields ``names``."""
    return {key: value for key, value in body.items() if key not in names}


def webhook_url(server: Any, credentials: str = "hook:s3cret") -> str:
    """The URL of a live server's webhook view, Basic credentials in it."""
    return f"http://{credentials}@{server.host}:{server.port}/cloudmails/webhook/"
