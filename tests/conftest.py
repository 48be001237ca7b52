"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

API_KEY = "test-key"
VERIFIED_SENDERS = ["@shop.example", "sender@example.com"]


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """A running CloudMails sandbox on a free loopback port."""
    from django_cloudmails.sandbox import Sandbox

    with Sandbox(
        api_key=API_KEY,
        verified_senders=VERIFIED_SENDERS,
        webhook_retry_delays=(0.05, 0.1, 0.2),
    ) as sb:
        yield sb


@pytest.fixture
def cloudmails_settings(settings: Any, sandbox: Any) -> dict[str, Any]:
    """Point the CLOUDMAILS settings at the running sandbox; returns the dict."""
    settings.CLOUDMAILS = {
        "API_KEY": API_KEY,
        "API_URL": sandbox.url,
        "WEBHOOK_SECRET": "hook:s3cret",
        "RETRY_BACKOFF": 0.0,
        "RETRY_MAX_BACKOFF": 0.0,
    }
    return settings.CLOUDMAILS  # type: ignore[no-any-return]


SIGNAL_NAMES = (
    "email_event",
    "email_delivered",
    "email_bounced",
    "email_opened",
    "email_clicked",
    "email_complained",
    "email_unsubscribed",
)


@pytest.fixture
def signals_sent() -> Iterator[list[tuple[str, Any, Any]]]:
    """``(signal name, delivery, event)`` for every CloudMails signal sent during the test."""
    from django_cloudmails import signals

    calls: list[tuple[str, Any, Any]] = []
    connected = []
    for name in SIGNAL_NAMES:

        def receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            calls.append((name, kwargs["delivery"], kwargs["event"]))

        signal = getattr(signals, name)
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
    yield calls
    for signal, receiver in connected:
        signal.disconnect(receiver)
