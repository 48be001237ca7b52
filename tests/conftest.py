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


@pytest.fixture
def cloudmails_backend(settings: Any, cloudmails_settings: dict[str, Any]) -> dict[str, Any]:
    """Django's mail API sends through our backend (the test runner swaps in locmem)."""
    import django

    backend = "django_cloudmails.backends.EmailBackend"
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend
    return cloudmails_settings


@pytest.fixture
def live_site(transactional_db: None) -> Iterator[Any]:
    """The test site served over HTTP, static files included, for this test only.

    Its request threads share the test's in-memory SQLite connection; at the end it
    waits for them to finish, so that none still holds a PostgreSQL connection when the
    test database is dropped.
    """
    import threading
    import time

    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.db import connections
    from django.test.testcases import LiveServerThread

    overrides = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    for conn in overrides.values():
        conn.inc_thread_sharing()
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, connections_override=overrides)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    try:
        if server.error:
            raise server.error
        server.url = f"http://{server.host}:{server.port}"
        yield server
    finally:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            "process_request_thread" in thread.name for thread in threading.enumerate()
        ):
            time.sleep(0.01)
        server.terminate()
        for conn in overrides.values():
            conn.dec_thread_sharing()


# The admin's fixtures.

#: An API message as the backend stores it: envelope, both bodies, an attachment.
STORED_PAYLOAD: dict[str, Any] = {
    "to": "Ann Reader <ann@example.com>",
    "from": "Shop <noreply@shop.example>",
    "subject": "Your invoice",
    "html": "<p>Your invoice is <b>attached</b>.</p>",
    "text": "Your invoice is attached.",
    "cc": ["accounts@example.com"],
    "bcc": ["audit@shop.example"],
    "reply_to": "Help <help@shop.example>",
    "attachments": [
        {
            "filename": "invoice.pdf",
            "content_type": "application/pdf",
            "content": "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K",
        }
    ],
    "custom_args": {"order": "1001"},
}


@pytest.fixture
def make_delivery(db: None) -> Any:
    """Build Delivery rows as the backend writes them (a stored payload, sent)."""
    from django.utils import timezone

    from django_cloudmails.models import Delivery

    def make(**fields: Any) -> Delivery:
        values: dict[str, Any] = {
            "message_id": f"msg_{Delivery.objects.count() + 1}",
            "status": "sent",
            "to_email": "ann@example.com",
            "from_email": "Shop <noreply@shop.example>",
            "subject": "Your invoice",
            "payload": dict(STORED_PAYLOAD),
            "metadata": {"order": "1001"},
            "sent_at": timezone.now(),
            "attempts": 1,
        }
        values.update(fields)
        return Delivery.objects.create(**values)

    return make


@pytest.fixture
def staff_client(db: None, client: Any) -> Any:
    """A logged-in staff member with the given permissions (``"cloudmails.view_delivery"``...)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    def login(*permissions: str) -> Any:
        user = get_user_model().objects.create_user("support", password="pw", is_staff=True)
        for name in permissions:
            app_label, codename = name.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        client.force_login(user)
        return client

    return login
