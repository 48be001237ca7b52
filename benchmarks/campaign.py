"""A campaign through the Celery worker, against a bulk insert of the same rows.

    python benchmarks/campaign.py [--recipients 100000] [--workers 1]
    python benchmarks/campaign.py --recipients 2000            # smoke run
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python benchmarks/campaign.py
    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 python benchmarks/campaign.py

The sandbox runs in its own process, and so does each worker (``celery -A
example_project worker --pool=solo`` with ``benchmarks/campaign_site.py`` as settings,
kombu's filesystem transport in a scratch folder unless CELERY_BROKER_URL is set).
In one run the script measures, in this order (so that the caller's peak RSS is the
campaign's own; the table is emptied in between):

(b) ``send_campaign()`` of personalised recipients (a generator), from the call until
    every row is ``sent``, with the worker(s) sending to the sandbox;
(a) a bulk insert (``bulk_create``, 1,000 rows a statement) of as many rows as the
    campaign writes: the same personalised payloads, built beforehand;

and prints the API requests the sandbox received (target: one per 1,000 recipients),
the peak RSS of the caller and of each worker (target: under 250 MB each) and the
ratio b/a (target: within 3x). On PostgreSQL it works in a scratch database
``cloudmails_campaign_bench_<pid>``, dropped at the end.
"""

from __future__ import annotations

import argparse
import html
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from send_throughput import ROOT, start_sandbox

from tests.workers import worker_command

SUBJECT = "{{name}}, your code {{code}}"
HTML = "<p>Hello {{name}},</p><p>your code is <b>{{code}}</b>.</p>"
TEXT = "Hello {{name}}, your code is {{code}}."
FROM = "Shop <noreply@shop.example>"


def recipients(count: int, tag: str) -> Iterator[dict[str, str]]:
    for i in range(count):
        yield {"email": f"{tag}{i}@example.com", "name": f"Customer {i}", "code": f"C{i:06d}"}


def setup_database() -> str:
    """Migrate the scratch database; return its name for the workers."""
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    if connection.vendor == "postgresql":
        from django.test.utils import setup_databases

        _SCRATCH.append(setup_databases(verbosity=0, interactive=False))
    else:
        call_command("migrate", verbosity=0)
    return str(connection.settings_dict["NAME"])


_SCRATCH: list[Any] = []


class Worker:
    """One worker process; ``ready`` once it consumes, ``peak_rss_mb`` before it stops."""

    def __init__(self, number: int, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            worker_command("example_project", f"bench{number}"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.ready = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kilobytes = next(
            line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")
        )
        return int(kilobytes) / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def bulk_insert(count: int) -> float:
    """Seconds to bulk-insert the rows the campaign writes (payloads built first)."""
    from django_cloudmails.models import Delivery

    rows = []
    for person in recipients(count, "bulk"):
        delivery_id = uuid.uuid4()

        def fill(text: str, escape: bool, person: dict[str, str] = person) -> str:
            for key, value in person.items():
                text = text.replace(f"{{{{{key}}}}}", html.escape(value) if escape else value)
            return text

        payload = {
            "to": person["email"],
            "from": FROM,
            "subject": fill(SUBJECT, False),
            "html": fill(HTML, True),
            "text": fill(TEXT, False),
            "custom_args": {"cloudmails_delivery_id": str(delivery_id)},
        }
        rows.append(
            Delivery(
                id=delivery_id,
                to_email=person["email"],
                from_email=FROM,
                subject=payload["subject"],
                payload=payload,
                idempotency_key=f"cloudmails-{delivery_id}",
            )
        )
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        Delivery.objects.bulk_create(rows[start : start + 1000])
    elapsed = time.perf_counter() - started
    empty_table()
    return elapsed


def empty_table() -> None:
    from django.db import connection

    from django_cloudmails.models import Delivery

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(Delivery._meta.db_table)}")


def campaign(count: int, total_timeout: float) -> tuple[float, float]:
    """Seconds until every row is written, and until every row is sent."""
    from django_cloudmails.models import Delivery
    from django_cloudmails.tasks import send_campaign

    started = time.perf_counter()
    report = send_campaign(recipients(count, "r"), subject=SUBJECT, html=HTML, text=TEXT)
    written = time.perf_counter() - started
    assert report.queued == count, report
    deadline = started + total_timeout
    while (done := Delivery.objects.exclude(status="queued").count()) < count:
        if time.perf_counter() > deadline:
            raise SystemExit(f"Only {done} of {count} rows left 'queued' in {total_timeout} s.")
        time.sleep(0.1)
    finished = time.perf_counter() - started
    sent = Delivery.objects.filter(status="sent").count()
    if sent != count:
        raise SystemExit(f"{sent} of {count} rows sent.")
    return written, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    sandbox, api_url = start_sandbox()
    workers: list[Worker] = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="benchmarks.campaign_site",
            CAMPAIGN_DIR=folder,
            CAMPAIGN_API_URL=api_url,
            CAMPAIGN_DB_NAME=f"cloudmails_campaign_bench_{os.getpid()}",
            CAMPAIGN_QUEUE=f"cloudmails-campaign-bench-{os.getpid()}",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        sys.path.insert(0, str(ROOT))
        try:
            database = setup_database()
            env = {**os.environ, "CAMPAIGN_DB_NAME": database}
            workers = [Worker(number, env) for number in range(args.workers)]
            for worker in workers:
                if not worker.ready.wait(60):
                    raise SystemExit("A worker did not start:\n" + "".join(worker.lines))
            run(args.recipients, api_url, workers, args.timeout)
        finally:
            for worker in workers:
                worker.stop()
            if _SCRATCH:
                from django.test.utils import teardown_databases

                teardown_databases(_SCRATCH.pop(), verbosity=0)
            sandbox.terminate()
            sandbox.wait(10)


def run(count: int, api_url: str, workers: list[Worker], timeout: float) -> None:
    from django.db import connection

    broker = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
    print(
        f"database: {connection.vendor}; broker: {broker}; {len(workers)} worker(s); "
        f"{count} recipients; Python {sys.version.split()[0]}"
    )
    # The campaign first: the caller's peak RSS is its own, not the baseline's (which
    # holds every row in memory). Then the table is emptied, so both write into the same.
    written, b = campaign(count, timeout)
    caller_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inspection = api_url.replace("/v1", "/_sandbox")
    seen = requests.get(f"{inspection}/requests", timeout=30).json()
    sends = [r for r in seen if r["method"] == "POST" and r["path"].startswith("/v1/send")]
    empty_table()
    a = bulk_insert(count)
    print(f"(a) bulk insert of the same rows        {a:8.2f} s  {count / a:9.0f} rows/s")
    print(f"(b) send_campaign until every row sent  {b:8.2f} s  {count / b:9.0f} msgs/s")
    print(f"    of which writing the rows (caller)  {written:8.2f} s")
    print(
        f"API requests: {len(sends)} carrying {sum(r['messages'] for r in sends)} messages "
        f"(target: {-(-count // 1000)})"
    )
    print(
        f"peak RSS: caller {caller_mb:.0f} MB; workers "
        + ", ".join(f"{worker.peak_rss_mb():.0f} MB" for worker in workers)
        + " (target: under 250 MB each)"
    )
    print(f"ratio b/a = {b / a:.2f}x  (target: within 3x)")


if __name__ == "__main__":
    main()
