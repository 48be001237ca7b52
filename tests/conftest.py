"""Fixtures shared by the whole suite."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
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


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebhookDropper:
    """WSGI middleware that answers 503 to a share (``rate``) of webhook requests, chosen
    by their ``webhook-id`` and ``seed``, on every try: the sender gives up on them, as
    when an ESP drops events. Requests without a ``webhook-id`` always pass."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.rate = 0.0
        self.seed = 0
        self.dropped: set[str] = set()

    def drops(self, webhook_id: str) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{webhook_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") < self.rate * 2**64

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        webhook_id = environ.get("HTTP_WEBHOOK_ID", "")
        if self.rate and webhook_id and self.drops(webhook_id):
            self.dropped.add(webhook_id)
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"dropped"]
        return self.app(environ, start_response)


@pytest.fixture
def webhook_server(transactional_db: None, sandbox: Any) -> Iterator[Any]:
    """A live server for the webhook view (no static files, which the suite's settings
    leave unconfigured), behind a :class:`WebhookDropper` (``server.dropper``, off until
    a test sets its rate). The sandbox is stopped first, so no keep-alive request thread
    still holds the shared in-memory SQLite connection."""
    from django.db import connections
    from django.test.testcases import LiveServerThread

    overrides = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    droppers: list[WebhookDropper] = []

    def wrap(app: Any) -> WebhookDropper:
        droppers.append(WebhookDropper(app))
        return droppers[-1]

    server = LiveServerThread("127.0.0.1", wrap, connections_override=overrides)
    server.daemon = True
    for conn in overrides.values():
        conn.inc_thread_sharing()
    server.start()
    server.is_ready.wait()
    try:
        if server.error:
            raise server.error
        server.dropper = droppers[0]
        yield server
    finally:
        sandbox.stop()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            "process_request_thread" in thread.name for thread in threading.enumerate()
        ):
            time.sleep(0.01)
        server.terminate()
        for conn in overrides.values():
            conn.dec_thread_sharing()
