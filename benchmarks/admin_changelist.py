"""The admin delivery list on a big table: first page with 1,000,000 rows.

    python benchmarks/admin_changelist.py [--rows 1000000]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/cloudmails_admin_bench python ...

On PostgreSQL (a scratch database of its own, created if missing and emptied first), in
one run: the changelist's first page, a status filter, an address search and a message
id search are timed with 1,000 rows, then again with ``--rows`` rows. It prints the
median of several requests for each, and the ratio big/small: the pages should cost the
same whatever the table's size. DESIGN.md's figure: first page under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.database import postgresql  # noqa: E402 - after the path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/cloudmails_admin_bench"
SMALL = 1_000
REPEATS = 7


def configure() -> None:
    import django
    import psycopg
    from django.conf import settings

    from example_project import settings as site

    url = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    name = url.path.lstrip("/") or "cloudmails_admin_bench"
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="example_project.urls",
        INSTALLED_APPS=[app for app in site.INSTALLED_APPS if app != "example_project.demo"],
        MIDDLEWARE=site.MIDDLEWARE,
        TEMPLATES=site.TEMPLATES,
        STATIC_URL=site.STATIC_URL,
        DATABASES={
            "default": {
                **postgresql(url.geturl(), default_name="cloudmails_admin_bench"),
                "CONN_MAX_AGE": None,
            }
        },
        CLOUDMAILS={"API_KEY": "bench", "WEBHOOK_SECRET": "bench:bench"},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(total: int) -> None:
    """Grow the table to ``total`` rows in SQL (minutes in the ORM), then ANALYZE."""
    from django.db import connection

    from django_cloudmails.models import Delivery

    table = connection.ops.quote_name(Delivery._meta.db_table)
    start = Delivery.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (id, alias, message_id, batch_id, status, to_email,
                from_email, subject, payload, metadata, tags, attempts, error_code,
                last_error, created_at, updated_at, sent_at, bounce_type, bounce_reason,
                opens, clicks)
            SELECT gen_random_uuid(), 'default', 'msg_' || n, '',
                (ARRAY['sent','delivered','delivered','delivered','bounced','deferred'])
                    [1 + n %% 6],
                'reader' || n || '@example.com', 'Shop <noreply@shop.example>',
                'Newsletter ' || n, '{{}}', '{{}}', '[]', 1, '', '',
                now() - make_interval(secs => %s - n), now(), now(), '', '', n %% 3, n %% 2
            FROM generate_series(%s, %s - 1) AS n
            """,
            [total, start, total],
        )
        cursor.execute(f"ANALYZE {table}")


def timed(client: object, path: str, params: dict[str, str]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path, params)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    configure()

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from django_cloudmails.models import Delivery

    Delivery.objects.all().delete()
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    path = reverse("admin:cloudmails_delivery_changelist")
    pages = {
        "first page": {},
        "status filter": {"status__exact": "bounced"},
        "search by address": {"q": "reader{n}@example.com"},
        "search by message id": {"q": "msg_{n}"},
    }

    results: dict[int, dict[str, float]] = {}
    for size in (SMALL, args.rows):
        fill(size)
        client.get(path)  # warm the caches of this size
        wanted = str(size // 2)
        results[size] = {
            label: timed(client, path, {k: v.format(n=wanted) for k, v in params.items()})
            for label, params in pages.items()
        }
    print(f"admin delivery changelist on PostgreSQL, median of {REPEATS} requests")
    print(f"{'page':<24}{SMALL:>12,} rows{args.rows:>14,} rows{'ratio':>8}")
    for label in pages:
        small, big = results[SMALL][label], results[args.rows][label]
        print(f"{label:<24}{small * 1000:>13.1f} ms{big * 1000:>15.1f} ms{big / small:>7.2f}x")
    first = results[args.rows]["first page"]
    verdict = "met" if first < 0.3 else "MISSED"
    print(f"first page with {args.rows:,} rows: {first * 1000:.0f} ms (target < 300 ms: {verdict})")


if __name__ == "__main__":
    main()
