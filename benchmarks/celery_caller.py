"""The caller's cost of CeleryEmailBackend, against a bulk insert of the same rows.

    python benchmarks/celery_caller.py [--messages 1000] [--rounds 7]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python benchmarks/...

What a web request pays to send mail through the worker. Each round measures, on the
same database:

(a) ``Delivery.objects.bulk_create()`` of the rows ``send_messages`` writes (built
    beforehand, payloads and all);
(b) ``CeleryEmailBackend().send_messages()`` of as many one-recipient emails: building
    and checking them, the suppression lookup, the INSERT and the enqueue of the row ids
    (kombu's filesystem transport in a scratch folder; no worker runs).

and prints the medians and the ratio b/a (target: within 1.5x). The API URL points at a
closed port, so any HTTP request from the caller would fail the run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from send_throughput import FROM, configure_django, drop_scratch_database, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        vendor = configure_django("http://127.0.0.1:9/v1", folder)
        try:
            run(vendor, Path(folder), args.messages, args.rounds)
        finally:
            drop_scratch_database()


def run(vendor: str, folder: Path, count: int, rounds: int) -> None:
    from celery import Celery

    from django_cloudmails import outbox
    from django_cloudmails.backends import CeleryEmailBackend
    from django_cloudmails.brokers import filesystem_transport_options
    from django_cloudmails.models import Delivery
    from django_cloudmails.payloads import build_api_messages

    app = Celery("caller-bench")
    app.conf.broker_url = "filesystem://"
    app.conf.broker_transport_options = filesystem_transport_options(folder / "broker")
    app.set_default()

    def prebuilt(tag: str) -> list[Delivery]:
        rows = []
        for message in messages(count, tag):
            rows.extend(
                outbox.new_delivery(api, alias="default") for api in build_api_messages(message)
            )
        requests = [rows[start : start + 1000] for start in range(0, len(rows), 1000)]
        outbox.assign_idempotency_keys(requests, batch=True)
        return rows

    print(f"database: {vendor}; {count} messages from {FROM}; Python {sys.version.split()[0]}")
    CeleryEmailBackend().send_messages(messages(50, "warm"))  # imports, connections, caches
    a_times, b_times = [], []
    for number in range(rounds):
        rows = prebuilt(f"a{number}-")
        started = time.perf_counter()
        Delivery.objects.bulk_create(rows, batch_size=1000)
        a_times.append(time.perf_counter() - started)

        emails = messages(count, f"b{number}-")
        started = time.perf_counter()
        CeleryEmailBackend().send_messages(emails)
        b_times.append(time.perf_counter() - started)
    queued = Delivery.objects.filter(status="queued", attempt_started_at__isnull=True).count()
    if queued != (count * 2 * rounds) + 50:
        raise SystemExit(f"{queued} queued rows, expected {count * 2 * rounds + 50}")
    a, b = statistics.median(a_times), statistics.median(b_times)
    print(f"(a) bulk_create of the same rows             {a * 1000:8.1f} ms (median of {rounds})")
    print(f"(b) CeleryEmailBackend.send_messages, no HTTP {b * 1000:7.1f} ms (median of {rounds})")
    print(f"ratio b/a = {b / a:.2f}x  (target: within 1.5x)")


if __name__ == "__main__":
    main()
