"""Webhook ingestion under gunicorn on PostgreSQL, against a no-op view on the same server.

    python benchmarks/webhook_ingest.py [--events 3000] [--clients 4] [--deliveries 1000]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/cloudmails_bench python benchmarks/...

Serves the example project (``benchmarks/ingest_site.py``: its settings on PostgreSQL plus
a no-op view) with gunicorn on a free loopback port, then, in alternating rounds, has
``--clients`` client processes with keep-alive connections POST the same signed-off
requests (Basic auth, ``webhook-id``, one ``opened`` event per request) to ``/noop/``
and to ``/cloudmails/webhook/``. Prints requests/s for both, the ratio (target >= 0.5x)
and checks that the ``opens`` counters add up to the number of distinct events posted.
The database is created and migrated if missing and emptied before each run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.ingest_site")

from benchmarks.ingest_site import DEFAULT_DATABASE_URL, WEBHOOK_CREDENTIALS  # noqa: E402

GUNICORN = Path(sys.executable).with_name("gunicorn")
AUTH = "Basic " + base64.b64encode(WEBHOOK_CREDENTIALS.encode()).decode()
T0 = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)


def ensure_database() -> None:
    """Create the benchmark database if missing (connecting to ``postgres``), migrate it."""
    import psycopg

    url = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    name = url.path.lstrip("/") or "cloudmails_bench"
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def reset_rows(deliveries: int) -> list[str]:
    """Empty our tables and create ``deliveries`` sent rows; returns their message ids."""
    from django.db import connection

    from django_cloudmails.models import Delivery, DeliveryEvent, Suppression

    Suppression.objects.all().delete()
    DeliveryEvent.objects.all().delete()
    Delivery.objects.all().delete()
    rows = [
        Delivery(
            message_id=f"msg_bench_{i}",
            status="delivered",
            to_email=f"reader{i}@example.com",
            from_email="shop@shop.example",
            subject=f"Newsletter {i}",
        )
        for i in range(deliveries)
    ]
    Delivery.objects.bulk_create(rows)
    connection.close()
    return [row.message_id for row in rows if row.message_id]


def requests_for(round_no: int, events: int, message_ids: list[str]) -> list[tuple[str, bytes]]:
    """``(webhook-id, body)`` per distinct ``opened`` event, spread over the messages."""
    items = []
    for n in range(events):
        moment = T0 + timedelta(seconds=round_no, microseconds=n)
        message_id = message_ids[n % len(message_ids)]
        body = {
            "event": "opened",
            "message_id": message_id,
            "timestamp": moment.isoformat().replace("+00:00", "Z"),
            "recipient": "reader@example.com",
            "custom_args": {},
        }
        items.append((f"evt_{round_no}_{n}", json.dumps(body, separators=(",", ":")).encode()))
    return items


def client(port: int, path: str, items: list[tuple[str, bytes]]) -> tuple[float, float, int]:
    """POST every item over one keep-alive connection; (start, end, non-200 count)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    failures = 0
    started = time.perf_counter()
    for webhook_id, body in items:
        headers = {
            "Authorization": AUTH,
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
        }
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            failures += 1
        if response.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ended = time.perf_counter()
    conn.close()
    return started, ended, failures


def measure(
    pool: Any,
    port: int,
    path: str,
    items: list[tuple[str, bytes]],
    clients: int,
    *,
    groups: dict[str, list[int]] | None = None,
) -> tuple[float, int]:
    """Requests per second over all clients, and how many answers were not 200.

    With ``groups``, also prints the CPU time each process group spent per request
    (PostgreSQL's count includes whatever else the machine's PostgreSQL did).
    """
    before = {name: cpu_seconds(pids) for name, pids in (groups or {}).items()}
    shares = [items[i::clients] for i in range(clients)]
    results = pool.starmap(client, [(port, path, share) for share in shares])
    elapsed = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    if groups:
        spent = {
            name: (cpu_seconds(pids) - before[name]) / len(items) * 1e6
            for name, pids in groups.items()
        }
        print(
            f"  CPU per request on {path}: "
            + ", ".join(f"{n} {us:.0f} us" for n, us in spent.items())
        )
    return len(items) / elapsed, sum(failures for _, _, failures in results)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of ``pids`` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_groups(server: subprocess.Popen[bytes]) -> dict[str, list[int]]:
    """The server's workers, PostgreSQL's processes and our client processes."""
    groups: dict[str, list[int]] = {"gunicorn": [], "postgres": [], "clients": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        parent = int(text.rpartition(")")[2].split()[1])
        if parent == server.pid:
            groups["gunicorn"].append(int(entry))
        elif name == "postgres":
            groups["postgres"].append(int(entry))
        elif parent == os.getpid() and int(entry) != server.pid:
            groups["clients"].append(int(entry))
    return groups


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    port: int, workers: int, threads: int, worker_class: str
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(GUNICORN),
            "benchmarks.ingest_site:application",
            *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
            *("--worker-class", worker_class, "--threads", str(threads)),
            *("--keep-alive", "30", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.ingest_site"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("POST", "/noop/", b"{}")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gunicorn did not start")


def opens_total() -> tuple[int, int]:
    from django.db import connection
    from django.db.models import Sum

    from django_cloudmails.models import Delivery, DeliveryEvent

    total = Delivery.objects.aggregate(total=Sum("opens"))["total"] or 0
    events = DeliveryEvent.objects.count()
    connection.close()
    return int(total), events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per round")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    parser.add_argument("--cpu", action="store_true", help="print CPU time per request")
    args = parser.parse_args()

    ensure_database()
    message_ids = reset_rows(args.deliveries)
    port = free_port()
    server = start_server(port, args.workers, args.threads, args.worker_class)
    print(
        f"gunicorn {args.worker_class} {args.workers}x{args.threads} "
        f"on 127.0.0.1:{port}, PostgreSQL; "
        f"{args.clients} client processes; {args.events} events per round; "
        f"{os.cpu_count()} cores; Python {sys.version.split()[0]}"
    )
    noop_rates: list[float] = []
    hook_rates: list[float] = []
    posted = 0
    try:
        with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
            warm = requests_for(999, 200, message_ids)
            measure(pool, port, "/noop/", warm, args.clients)
            measure(pool, port, "/cloudmails/webhook/", warm, args.clients)
            groups = process_groups(server) if args.cpu else None
            posted += len(warm)
            for round_no in range(args.rounds):
                items = requests_for(round_no, args.events, message_ids)
                rate, failed = measure(pool, port, "/noop/", items, args.clients, groups=groups)
                assert not failed, f"{failed} no-op requests failed"
                noop_rates.append(rate)
                rate, failed = measure(
                    pool, port, "/cloudmails/webhook/", items, args.clients, groups=groups
                )
                assert not failed, f"{failed} webhook requests failed"
                hook_rates.append(rate)
                posted += len(items)
                print(
                    f"round {round_no + 1}: no-op {noop_rates[-1]:7.0f} req/s   "
                    f"webhook {hook_rates[-1]:7.0f} events/s   "
                    f"ratio {hook_rates[-1] / noop_rates[-1]:.2f}x"
                )
    finally:
        server.terminate()
        server.wait(10)
    opens, events = opens_total()
    assert (opens, events) == (posted, posted), f"opens {opens}, events {events}, {posted=}"
    ratios = sorted(hook / noop for hook, noop in zip(hook_rates, noop_rates, strict=True))
    print(f"no-op view          {statistics.median(noop_rates):7.0f} req/s (median round)")
    print(f"webhook view        {statistics.median(hook_rates):7.0f} events/s (median round)")
    print(
        f"ratio webhook/no-op {statistics.median(ratios):.2f}x median of rounds "
        f"(min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x; target >= 0.5x)"
    )
    print(f"counters exact: {opens} opens = {events} events = {posted} distinct events posted")


if __name__ == "__main__":
    main()
