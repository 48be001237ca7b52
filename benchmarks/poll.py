"""Status polling throughput: polling.poll() against a bare requests loop, same concurrency.

    python benchmarks/poll.py [--messages 10000] [--concurrency 8] [--rounds 2]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python benchmarks/poll.py
    python benchmarks/poll.py --messages 200 --rounds 1        # the CI smoke run

The sandbox runs in its own process. The script sends ``--messages`` emails through the
batch path (rows ``sent`` with the sandbox's message ids), then, in alternating rounds:

(a) ``--concurrency`` threads, each with its own ``requests.Session``, GETting
    ``/emails/{id}`` for every message and reading the JSON;
(b) ``polling.poll(ignore_schedule=True)`` with ``POLL_CONCURRENCY`` the same: the same
    GETs, plus selecting the rows, parsing the answers and writing them back in bulk.

Before each (b) round the rows are set back to ``sent`` with no poll yet. Prints rows
per second for both, their ratio (target >= 0.7x), and checks that every row was
polled. SQLite runs in WAL mode with ``synchronous=NORMAL``; on PostgreSQL a scratch
database is created and dropped.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.send_throughput import (  # noqa: E402 - after the path
    API_KEY,
    messages,
    with_sandbox_and_django,
)


def timed(label: str, count: int, run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    print(f"{label:<52} {count:>6} rows  {elapsed:7.3f} s  {rate:8.0f} rows/s", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with_sandbox_and_django(
        lambda url, vendor: run(url, vendor, args.messages, args.concurrency, args.rounds)
    )


def run(api_url: str, vendor: str, count: int, concurrency: int, rounds: int) -> None:
    import requests
    from django.conf import settings

    from django_cloudmails.backends import EmailBackend
    from django_cloudmails.models import Delivery
    from django_cloudmails.polling import poll

    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "POLL_CONCURRENCY": concurrency}
    python = sys.version.split()[0]
    print(f"database: {vendor}; sandbox: {api_url}; concurrency {concurrency}; Python {python}")
    EmailBackend().send_messages(messages(count, "poll"))
    ids = list(Delivery.objects.values_list("message_id", flat=True))
    if len(ids) != count or None in ids:
        raise SystemExit(f"expected {count} sent rows with message ids")
    local = threading.local()

    def get(message_id: str) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers.update(
                {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
            )
        response = session.get(f"{api_url}/emails/{message_id}")
        response.raise_for_status()
        response.json()

    def bare() -> None:
        with ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(get, ids):
                pass

    def ours() -> None:
        report = poll(ignore_schedule=True)
        if report.polled != count or report.errors or report.rate_limited:
            raise SystemExit(f"poll() did not poll every row: {report}")

    bare_rates, our_rates = [], []
    for number in range(1, rounds + 1):
        bare_rates.append(timed(f"(a) bare requests.Session GETs, round {number}", count, bare))
        Delivery.objects.update(status="sent", polls=0, next_poll_at=None)
        our_rates.append(timed(f"(b) polling.poll(), round {number}", count, ours))
    a, b = max(bare_rates), max(our_rates)
    print(f"best of {rounds}: (a) {a:.0f} rows/s, (b) {b:.0f} rows/s")
    print(f"ratio b/a = {b / a:.2f}x  (target >= 0.7x)")


if __name__ == "__main__":
    main()
