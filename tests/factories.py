"""Builders of webhook request parts, shared by the webhook, view and recording tests."""

from __future__ import annotations

import base64
from typing import Any


def basic_auth(pair: str) -> str:
    """The Authorization header value for ``"user:password"``."""
    return "Basic " + base64.b64encode(pair.encode()).decode()


def event_body(name: str = "delivered", **fields: Any) -> dict[str, Any]:
    """A webhook event as CloudMails sends it, with the fields its type needs."""
    body: dict[str, Any] = {
        "event": name,
        "message_id": "msg_1",
        "timestamp": "2026-05-19T14:30:00.123456Z",
        "recipient": "someone@example.com",
        "custom_args": {},
    }
    if name == "bounced":
        body.update(bounce_type="hard", bounce_reason="550 5.1.1 user unknown")
    if name == "clicked":
        body["url"] = "https://example.com/"
    body.update(fields)
    return body


def webhook_url(server: Any, credentials: str = "hook:s3cret") -> str:
    """The URL of a live server's webhook view, Basic credentials in it."""
    return f"http://{credentials}@{server.host}:{server.port}/cloudmails/webhook/"
