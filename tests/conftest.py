"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
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
def use_backend(settings: Any, cloudmails_settings: dict[str, Any]) -> dict[str, Any]:
    """Route Django's mail API to our backend (pytest-django installs locmem)."""
    import django

    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": "django_cloudmails.backends.EmailBackend"}}
    else:
        settings.EMAIL_BACKEND = "django_cloudmails.backends.EmailBackend"
    return cloudmails_settings


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


class GunicornServer:
    """gunicorn serving ``tests.gunicorn_site`` on a database of its own (see the
    ``gunicorn_server`` fixture): send it raw requests, read its tables."""

    def __init__(self, port: int, database: dict[str, Any], blocker: Any) -> None:
        self.port = port
        self.database = database
        self._blocker = blocker

    def post(
        self, path: str, body: bytes | Iterable[bytes], headers: dict[str, str]
    ) -> tuple[int, Any]:
        """POST ``body`` (an iterable of chunks goes chunked, without Content-Length);
        returns the status and the decoded JSON answer."""
        import http.client
        import json

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            # The server may answer (413) before reading everything: read the answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request("POST", path, body, headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` on the server's database, through a connection of our own."""
        from django.db.utils import ConnectionHandler

        handler = ConnectionHandler({"default": dict(self.database)})
        with self._blocker.unblock():
            connection = handler["default"]
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    return list(cursor.fetchall()) if cursor.description else []
            finally:
                connection.close()


def _server_database(tmp_path: Any) -> tuple[dict[str, Any], Any]:
    """A DATABASES entry for the server's own database, and how to drop it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}, (
            lambda: None
        )
    import psycopg

    settings = connection.settings_dict
    entry = {key: settings[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    entry["NAME"] = f"{settings['NAME']}_gunicorn"
    admin = {
        "dbname": "postgres",
        "user": entry["USER"],
        "password": entry["PASSWORD"] or None,
        "host": entry["HOST"],
        "port": entry["PORT"],
    }

    def execute(sql: str) -> None:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(sql)

    execute(f'DROP DATABASE IF EXISTS "{entry["NAME"]}"')
    execute(f'CREATE DATABASE "{entry["NAME"]}"')
    return entry, lambda: execute(f'DROP DATABASE IF EXISTS "{entry["NAME"]}" WITH (FORCE)')


@pytest.fixture(scope="module")
def gunicorn_server(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[GunicornServer]:
    """gunicorn (gthread, one worker) serving the test site on a free loopback port, on a
    database of its own (SQLite file or a PostgreSQL database next to the test one),
    migrated first; its webhook takes bodies up to 64 KiB."""
    import http.client
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with django_db_blocker.unblock():
        database, drop = _server_database(tmp_path_factory.mktemp("gunicorn"))
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.gunicorn_site",
        "CLOUDMAILS_TEST_SERVER_DATABASE": json.dumps(database),
        "CLOUDMAILS_TEST_SERVER_MAX_BODY": str(64 * 1024),
        "PYTHONPATH": str(root),
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        cwd=root,
        env=env,
        check=True,
        timeout=120,
    )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.gunicorn_wsgi:application",
            *("--bind", f"fd://{listener.fileno()}", "--workers", "1"),
            *("--worker-class", "gthread", "--threads", "2", "--log-level", "warning"),
        ],
        cwd=root,
        env=env,
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "gunicorn exited at start-up"
            assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                conn.request("GET", "/cloudmails/webhook/")
                if conn.getresponse().status == 405:
                    break
            except OSError:
                pass
            finally:
                conn.close()
        yield GunicornServer(port, database, django_db_blocker)
    finally:
        process.terminate()
        process.wait(timeout=30)
        with django_db_blocker.unblock():
            drop()
