"""Fixtures shared by the whole suite."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.celery_app  # noqa: F401 - the Celery app the test process enqueues through

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
def use_mailer(settings: Any) -> Callable[[str], None]:
    """``use_mailer(path)`` makes that backend the default mailer (MAILERS on Django 6.1,
    EMAIL_BACKEND before), for this test."""
    import django

    def use(backend: str) -> None:
        if django.VERSION >= (6, 1):
            settings.MAILERS = {"default": {"BACKEND": backend}}
        else:
            settings.EMAIL_BACKEND = backend

    return use


# Celery: real worker processes on the test run's broker, sharing the test database.


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The test database; on SQLite in WAL mode, so that worker processes write to the
    file while the test process reads it (the mode stays with the file)."""
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")


@pytest.fixture(scope="session")
def celery_queue() -> Iterator[str]:
    """The run's own queue; deleted from Redis or RabbitMQ at the end of the run."""
    from django.conf import settings

    from tests.celery_app import app

    name = str(settings.CELERY_TASK_DEFAULT_QUEUE)
    yield name
    if not settings.CELERY_BROKER_URL.startswith("filesystem"):
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            queue = app.amqp.queues[name](channel)
            queue.declare()  # kombu deletes only the bindings it knows of
            queue.delete()
            queue.exchange(channel).delete()


@pytest.fixture
def empty_queue(celery_queue: str) -> str:
    """The run's queue, emptied of what earlier tests enqueued without a worker."""
    from tests.celery_app import app

    with app.connection_for_write() as connection:
        queue = app.amqp.queues[celery_queue](connection.default_channel)
        queue.declare()
        queue.purge()
    return celery_queue


@pytest.fixture
def celery_workers(
    transactional_db: None, empty_queue: str, tmp_path: Path, settings: Any
) -> Iterator[Any]:
    """``celery_workers.start(n)`` starts ``n`` real worker processes, each with the test's
    settings at that moment (CLOUDMAILS, MAILERS), and returns once they consume;
    ``celery_workers.finished(k)`` waits for ``k`` more ``send_deliveries`` tasks to end
    and returns their reports. ``worker.kill()`` is a SIGKILL. Every worker is stopped
    at the end of the test, before its data is flushed."""
    from django.db import connection

    from tests.workers import WorkerPool

    def current() -> dict[str, Any]:
        values = {"CLOUDMAILS": settings.CLOUDMAILS}
        if hasattr(settings, "MAILERS"):
            values["MAILERS"] = settings.MAILERS
        return values

    pool = WorkerPool(tmp_path, str(connection.settings_dict["NAME"]), current)
    try:
        yield pool
    finally:
        pool.stop()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's folder (the SQLite test database, the filesystem broker)."""
    from tests.settings import RUN_DIR

    shutil.rmtree(RUN_DIR, ignore_errors=True)
