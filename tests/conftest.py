"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
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
def use_backend(
    use_mailer: Callable[[str], None], cloudmails_settings: dict[str, Any]
) -> dict[str, Any]:
    """Route Django's mail API to our backend (pytest-django installs locmem)."""
    use_mailer("django_cloudmails.backends.EmailBackend")
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


#: Settings a worker takes from its test, besides CLOUDMAILS.
WORKER_SETTINGS = (
    "MAILERS",
    "CELERY_WORKER_PREFETCH_MULTIPLIER",
    "CELERY_BROKER_TRANSPORT_OPTIONS",
)


@pytest.fixture
def celery_workers(
    transactional_db: None, empty_queue: str, tmp_path: Path, settings: Any
) -> Iterator[Any]:
    """``celery_workers.start(n)`` starts ``n`` real worker processes, each with the test's
    settings at that moment (CLOUDMAILS and :data:`WORKER_SETTINGS`), and returns once
    they consume; ``celery_workers.finished(k)`` waits for ``k`` more ``send_deliveries``
    runs to end and returns their reports; ``celery_workers.settle()`` waits until every
    task published during the test has run to its end, retries included.
    ``worker.kill()`` is a SIGKILL. Every worker is stopped at the end of the test,
    before its data is flushed."""
    from django.db import connection

    from tests.workers import WorkerPool

    def current() -> dict[str, Any]:
        values = {"CLOUDMAILS": settings.CLOUDMAILS}
        for name in WORKER_SETTINGS:
            if hasattr(settings, name):
                values[name] = getattr(settings, name)
        return values

    pool = WorkerPool(tmp_path, str(connection.settings_dict["NAME"]), current)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def written(
    monkeypatch: pytest.MonkeyPatch, cloudmails_settings: dict[str, Any]
) -> list[list[str]]:
    """The id lists CeleryEmailBackend would enqueue, kept here instead (a test enqueues
    them itself, or not at all: a task the broker lost)."""
    from django_cloudmails import backends

    kept: list[list[str]] = []
    monkeypatch.setattr(backends, "_enqueue", kept.extend)
    return kept


def forgets_fetched_tasks() -> bool:
    """Whether the run's broker deletes a message when a worker fetches it (kombu's
    filesystem transport): a worker killed with SIGKILL takes its tasks with it. Redis
    and RabbitMQ deliver an unacknowledged message again."""
    from django.conf import settings

    return str(settings.CELERY_BROKER_URL).startswith("filesystem")


@pytest.fixture
def quick_redelivery(settings: Any) -> None:
    """Workers started from now on give a killed worker's unacknowledged messages back
    to the queue within seconds (Redis waits for a visibility timeout, swept every
    100 s by default; RabbitMQ does it when the connection drops; the filesystem
    transport never)."""
    if str(settings.CELERY_BROKER_URL).startswith("redis"):
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "visibility_timeout": 3,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        }


class RequestGate:
    """Holds the ``number``-th API request the sandbox receives until :meth:`release`:
    a request in flight for as long as a test needs (to kill its sender, say). It is
    then answered as any other (faults included)."""

    def __init__(self, sandbox: Any, number: int) -> None:
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._seen = 0
        draw = sandbox.faults.draw

        def gated() -> Any:
            with self._lock:
                self._seen += 1
                held = self._seen == number
            if held:
                self.arrived.set()
                self._released.wait(120)
            return draw()

        sandbox.faults.draw = gated

    def release(self) -> None:
        self._released.set()


@pytest.fixture
def request_gate(sandbox: Any) -> Iterator[Callable[[int], RequestGate]]:
    """``request_gate(n)`` holds the sandbox's ``n``-th API request (see
    :class:`RequestGate`); released at the end of the test whatever happened."""
    gates: list[RequestGate] = []

    def make(number: int) -> RequestGate:
        gates.append(RequestGate(sandbox, number))
        return gates[-1]

    yield make
    for gate in gates:
        gate.release()


#: What a ``prefetching_worker`` holds at most: the task it runs and those it prefetched.
PREFETCHED = 4


@pytest.fixture
def prefetching_worker(
    celery_workers: Any, request_gate: Any, settings: Any, quick_redelivery: None
) -> Callable[[int], tuple[Any, RequestGate]]:
    """``prefetching_worker(n)`` holds the sandbox's ``n``-th API request in flight and
    starts a worker that prefetches tasks while it sends (:data:`PREFETCHED` for its one
    thread): the scene for a SIGKILL in the middle of a batch (see
    ``celery_workers.kill_in_flight``).
    Returns the worker and the gate. Workers started later give a killed worker's
    unacknowledged tasks back quickly."""

    def start(number: int) -> tuple[Any, RequestGate]:
        gate = request_gate(number)
        settings.CELERY_WORKER_PREFETCH_MULTIPLIER = PREFETCHED
        (worker,) = celery_workers.start()
        settings.CELERY_WORKER_PREFETCH_MULTIPLIER = 1
        return worker, gate

    return start


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's folder (the SQLite test database, the filesystem broker)."""
    from tests.settings import RUN_DIR

    shutil.rmtree(RUN_DIR, ignore_errors=True)


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


@contextlib.contextmanager
def serving(wrap: Callable[[Any], Any]) -> Iterator[Any]:
    """The test site on a live server thread, its WSGI handler wrapped by ``wrap``.

    Its request threads share the test's SQLite connection when the database is in
    memory; at the end it waits for them to finish, so that none still holds a
    PostgreSQL connection when the test database is dropped.
    """
    from django.db import connections
    from django.test.testcases import LiveServerThread

    overrides = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    server = LiveServerThread("127.0.0.1", wrap, connections_override=overrides)
    server.daemon = True
    for conn in overrides.values():
        conn.inc_thread_sharing()
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


@pytest.fixture
def webhook_server(transactional_db: None, sandbox: Any) -> Iterator[Any]:
    """A live server for the webhook view (no static files), behind a
    :class:`WebhookDropper` (``server.dropper``, off until a test sets its rate). The
    sandbox is stopped first at the end, so no keep-alive request thread is left."""
    droppers: list[WebhookDropper] = []

    def wrap(app: Any) -> WebhookDropper:
        droppers.append(WebhookDropper(app))
        return droppers[-1]

    with serving(wrap) as server:
        server.dropper = droppers[0]
        try:
            yield server
        finally:
            sandbox.stop()


@pytest.fixture
def live_site(transactional_db: None) -> Iterator[Any]:
    """The test site served over HTTP, static files included, for this test only."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    with serving(StaticFilesHandler) as server:
        yield server


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
