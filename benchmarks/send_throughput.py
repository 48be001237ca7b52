"""Sending throughput: EmailBackend (rows written) against a bare requests loop.

    python benchmarks/send_throughput.py [--messages 2000] [--batch-messages 5000]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python benchmarks/...

The sandbox runs in its own process. In one run the script measures:

(a) a bare ``requests.Session`` loop POSTing prebuilt payloads to ``/send``;
(b) ``EmailBackend.send_messages([message])`` once per message, one Delivery row each;
(c) one ``send_messages`` call with every message (the ``/send/batch`` path).

and prints messages per second and the ratios b/a (target >= 0.7) and c/a (>= 10).
SQLite runs in WAL mode with ``synchronous=NORMAL``, the example project's default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.database import is_postgresql, postgresql  # noqa: E402 - after the path

API_KEY = "bench-key"
FROM = "Shop <noreply@shop.example>"


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    """The sandbox in a child process on a free port; returns it and its API URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "django_cloudmails.sandbox", "--port", "0", "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    url = next((word.rstrip(";") for word in line.split() if word.startswith("http")), None)
    if url is None:
        process.kill()
        raise SystemExit(f"The sandbox did not start: {line!r}")
    return process, url


def configure_django(api_url: str, workdir: str) -> str:
    import django
    from django.conf import settings
    from django.db.backends.signals import connection_created

    url = os.environ.get("DATABASE_URL", "")
    if is_postgresql(url):
        database = {
            **postgresql(url),
            # A scratch database of its own, dropped at the end: never real data, and
            # never the database of another benchmark running at the same time.
            "TEST": {"NAME": f"cloudmails_send_bench_{os.getpid()}"},
        }
    else:
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(workdir, "bench.sqlite3"),
        }
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="bench",
        INSTALLED_APPS=["django_cloudmails"],
        DATABASES={"default": database},
        DEFAULT_FROM_EMAIL=FROM,
        EMAIL_BACKEND="django_cloudmails.backends.EmailBackend",
        CLOUDMAILS={"API_KEY": API_KEY, "API_URL": api_url, "RETRY_ATTEMPTS": 1},
    )

    def wal(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")

    connection_created.connect(wal)
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        from django.test.utils import setup_databases

        _SCRATCH.append(setup_databases(verbosity=0, interactive=False))
    else:
        call_command("migrate", verbosity=0)
    return str(connection.vendor)


_SCRATCH: list[Any] = []


def drop_scratch_database() -> None:
    if _SCRATCH:
        from django.test.utils import teardown_databases

        teardown_databases(_SCRATCH.pop(), verbosity=0)


def messages(count: int, tag: str) -> list[Any]:
    from django.core.mail import EmailMessage

    return [
        EmailMessage(
            f"Order {i} confirmed",
            f"Hello,\n\nyour order {i} is confirmed.\n\nThanks!",
            FROM,
            [f"{tag}{i}@example.com"],
        )
        for i in range(count)
    ]


def timed(label: str, count: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    print(f"{label:<48} {count:>6} msgs  {elapsed:7.3f} s  {rate:9.0f} msgs/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-messages", type=int, default=5000)
    args = parser.parse_args()

    with_sandbox_and_django(
        lambda url, vendor: run(url, vendor, args.messages, args.batch_messages)
    )


def with_sandbox_and_django(run: Callable[[str, str], None]) -> None:
    """``run(api_url, vendor)`` with the sandbox in its own process and Django configured
    on a scratch database; both are cleaned up after."""
    sandbox, api_url = start_sandbox()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            vendor = configure_django(api_url, workdir)
            try:
                run(api_url, vendor)
            finally:
                drop_scratch_database()
    finally:
        sandbox.terminate()
        sandbox.wait(10)


def run(api_url: str, vendor: str, count: int, batch_count: int) -> None:
    import requests
    from django.db.models import Count

    from django_cloudmails.backends import EmailBackend
    from django_cloudmails.models import Delivery
    from django_cloudmails.payloads import build_api_messages, with_delivery_id

    print(f"database: {vendor}; sandbox: {api_url}; Python {sys.version.split()[0]}")
    bare_payloads = []
    for message in messages(count, "bare"):
        for api in build_api_messages(message):
            delivery_id = str(uuid.uuid4())
            bare_payloads.append((with_delivery_id(api, delivery_id), f"cloudmails-{delivery_id}"))
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }

    def bare() -> None:
        with requests.Session() as session:
            for payload, key in bare_payloads:
                body = json.dumps(payload, separators=(",", ":"))
                response = session.post(
                    f"{api_url}/send", data=body, headers={**headers, "Idempotency-Key": key}
                )
                response.raise_for_status()
                response.json()

    sequential_messages = messages(count, "seq")

    def sequential() -> None:
        with EmailBackend() as backend:
            for message in sequential_messages:
                backend.send_messages([message])

    batch_messages = messages(batch_count, "batch")

    def batch() -> None:
        EmailBackend().send_messages(batch_messages)

    warmup = messages(50, "warm")
    with EmailBackend() as backend:  # connections, imports, caches
        for message in warmup:
            backend.send_messages([message])

    a = timed("(a) bare requests.Session loop, /send", count, bare)
    b = timed("(b) EmailBackend, one send_messages per message", count, sequential)
    c = timed("(c) EmailBackend, one send_messages (batch)", batch_count, batch)
    sent = Delivery.objects.filter(status="sent").count()
    expected = count + batch_count + len(warmup)
    if sent != expected:
        counts = dict(Delivery.objects.values_list("status").annotate(n=Count("id")))
        raise SystemExit(f"{sent} sent rows, expected {expected}: {counts}")
    print(f"sequential ratio b/a = {b / a:.2f}x  (target >= 0.7x)")
    print(f"batch ratio      c/a = {c / a:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
