"""What the admin benchmarks share: the site on PostgreSQL, the table filler, the timer.

The filler writes rows in SQL (``INSERT ... SELECT ... FROM generate_series``): the ORM
would take minutes for a million rows. Its column list is the model's: every concrete
field of ``Delivery`` is written, the ones in :data:`ROW_SQL` from an expression of the
row number ``n``, every other one with its default through the field's own conversion.
A field added to the model without a default fails here at once, naming the field,
instead of the INSERT silently missing it (the old raw INSERT broke on a new column).

The rows mimic a busy site over the last 30 days: 91% delivered, 3% bounced (a few
common reasons, one in ten naming the address), 0.1% complaints, a quarter opened,
95% on the "default" alias, 4.9% "marketing" and 0.1% "transactional", tags "receipt"
(60%), "newsletter" (30%) and a rare "survey" (0.05%), half of them in batches of 500.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.database import postgresql  # noqa: E402 - after the path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/cloudmails_admin_bench"
SMALL = 1_000
SPREAD_DAYS = 30

#: The columns the benchmark varies, as SQL of the row number ``n`` and of ``r``,
#: a pseudo-random 0-999 drawn from ``n`` (see :func:`fill`).
ROW_SQL: dict[str, str] = {
    "id": "gen_random_uuid()",
    "alias": (
        "CASE WHEN n %% 1000 = 7 THEN 'transactional' "
        "WHEN n %% 20 = 3 AND n %% 1000 <> 7 THEN 'marketing' ELSE 'default' END"
    ),
    "message_id": "CASE WHEN status IN ('queued', 'unknown', 'failed') THEN NULL "
    "ELSE 'msg_' || n END",
    "batch_id": "CASE WHEN n %% 2 = 0 THEN 'batch_' || (n / 1000) ELSE '' END",
    "status": "status",
    "to_email": "to_email",
    "from_email": "'Shop <noreply@shop.example>'",
    "subject": "'Newsletter ' || n",
    "payload": (
        "jsonb_build_object('to', to_email, 'from', 'Shop <noreply@shop.example>', "
        "'subject', 'Newsletter ' || n, "
        "'html', '<html><body><p>Hello reader ' || n || '</p><p>' "
        "|| repeat(md5(n::text), 8) || '</p></body></html>', "
        "'text', 'Hello reader ' || n)"
    ),
    "tags": (
        "CASE WHEN n %% 2000 = 1 THEN '[\"survey\"]' WHEN (n * 13) %% 100 < 60 "
        "THEN '[\"receipt\"]' WHEN (n * 13) %% 100 < 90 THEN '[\"newsletter\"]' "
        "ELSE '[]' END::jsonb"
    ),
    "idempotency_key": "'cloudmails-' || n",
    "attempts": "1",
    "created_at": "created",
    "updated_at": "created",
    "sent_at": "CASE WHEN status IN ('queued', 'unknown', 'failed') THEN NULL ELSE created END",
    "failed_at": "CASE WHEN status = 'failed' THEN created END",
    "error_code": "CASE WHEN status = 'failed' THEN '400' ELSE '' END",
    "last_error": "CASE WHEN status = 'failed' THEN 'CloudMails refused the message' ELSE '' END",
    "delivered_at": "CASE WHEN status = 'delivered' THEN created + interval '4 seconds' END",
    "bounced_at": "CASE WHEN status = 'bounced' THEN created + interval '9 seconds' END",
    "bounce_type": "CASE WHEN status = 'bounced' THEN 'hard' ELSE '' END",
    "bounce_reason": (
        "CASE WHEN status <> 'bounced' THEN '' "
        "WHEN n %% 10 = 0 THEN '550 5.1.1 <' || to_email || '>: Recipient address rejected' "
        "ELSE (ARRAY['550 5.1.1 user unknown', '552 5.2.2 mailbox full', "
        "'554 5.7.1 message rejected as spam', '550 5.4.1 domain does not accept mail'])"
        "[1 + n %% 4] END"
    ),
    "complained_at": (
        "CASE WHEN status = 'delivered' AND r = 95 THEN created + interval '1 hour' END"
    ),
    "first_opened_at": "CASE WHEN opened THEN created + interval '10 minutes' END",
    "last_opened_at": "CASE WHEN opened THEN created + interval '2 hours' END",
    "opens": "CASE WHEN opened THEN 1 + n %% 3 ELSE 0 END",
    "first_clicked_at": "CASE WHEN clicked THEN created + interval '11 minutes' END",
    "last_clicked_at": "CASE WHEN clicked THEN created + interval '11 minutes' END",
    "clicks": "CASE WHEN clicked THEN 1 ELSE 0 END",
}

#: The row number's derived values, computed once per row in a subquery.
_DERIVED = """
    SELECT n, r, status, to_email, created,
        status = 'delivered' AND (n * 31) %% 100 < 25 AS opened,
        status = 'delivered' AND (n * 31) %% 100 < 4 AS clicked
    FROM (
        SELECT n, r,
            CASE WHEN r < 5 THEN 'queued' WHEN r < 10 THEN 'unknown'
                WHEN r < 20 THEN 'failed' WHEN r < 50 THEN 'sent'
                WHEN r < 60 THEN 'deferred' WHEN r < 90 THEN 'bounced'
                ELSE 'delivered' END AS status,
            'reader' || n || '@' || (ARRAY['gmail.com', 'gmail.com', 'outlook.com',
                'yahoo.com', 'company' || (n %% 500) || '.example'])[1 + (n * 7) %% 5]
                AS to_email,
            %(now)s - make_interval(secs => (%(total)s - n) * %(spacing)s) AS created
        FROM (SELECT n, (n * 7919) %% 1000 AS r
              FROM generate_series(%(start)s::bigint, %(total)s - 1) AS n) AS numbers
    ) AS drawn
"""


def configure() -> None:
    """Django on the benchmark's PostgreSQL database (created if missing), migrated."""
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
        TIME_ZONE=site.TIME_ZONE,
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


def insert_statement() -> tuple[str, dict[str, Any]]:
    """The INSERT ... SELECT writing every concrete field of Delivery, and its defaults."""
    from django.db import connection

    from django_cloudmails.models import Delivery

    columns, values, params = [], [], {}
    for field in Delivery._meta.concrete_fields:
        columns.append(connection.ops.quote_name(field.column))
        if field.attname in ROW_SQL:
            values.append(ROW_SQL[field.attname])
        elif field.has_default() or field.null:
            params[field.attname] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({field.attname})s")
        else:
            raise SystemExit(
                f"Delivery.{field.attname} has no default: add an expression for it to "
                "ROW_SQL in benchmarks/admin_site.py."
            )
    unknown = set(ROW_SQL) - {f.attname for f in Delivery._meta.concrete_fields}
    if unknown:
        raise SystemExit(f"ROW_SQL names fields Delivery does not have: {sorted(unknown)}")
    table = connection.ops.quote_name(Delivery._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM ({_DERIVED}) AS row_values"
    )
    return sql, params


def fill(total: int) -> None:
    """Grow the table to ``total`` rows spread over the last 30 days, then VACUUM ANALYZE
    (as autovacuum would have by then: the visibility map lets index-only scans skip the
    rows)."""
    from django.db import connection
    from django.utils import timezone

    from django_cloudmails.models import Delivery

    start = Delivery.objects.count()
    if start >= total:
        return
    sql, params = insert_statement()
    params.update(now=timezone.now(), total=total, start=start, spacing=SPREAD_DAYS * 86400 / total)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    previous = connection.get_autocommit()
    connection.set_autocommit(True)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")
    connection.set_autocommit(previous)


def empty() -> None:
    """Every table of the app emptied at once (TRUNCATE; deleting a million rows through
    the ORM takes minutes)."""
    from django.apps import apps
    from django.db import connection

    tables = [model._meta.db_table for model in apps.get_app_config("cloudmails").get_models()]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(map(connection.ops.quote_name, tables))}")


def reset_rollup() -> None:
    """Forget the dashboard's rollup (the next materialize() counts the whole table)."""
    from django_cloudmails.models import BounceRollup, DeliveryRollup, RollupState

    for model in (DeliveryRollup, BounceRollup, RollupState):
        model.objects.all().delete()


def logged_in_client() -> Any:
    """A test client logged in as a superuser."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def median_time(request: Callable[[], Any], repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``request``; each must answer 200."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = request()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def arguments(doc: str) -> argparse.Namespace:
    """``--rows``, ``--repeats`` and ``--explain``, with the script's docstring."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    return parser.parse_args()


def sizes(rows: int) -> list[int]:
    """The small table and the big one (a single size when ``rows`` is small)."""
    return sorted({min(SMALL, rows), rows})


def measure(
    client: Any,
    path: str,
    pages: dict[str, dict[str, str]],
    values: dict[str, str],
    args: argparse.Namespace,
    *,
    explained: bool,
) -> dict[str, float]:
    """The median time of each page (query templates filled from ``values``)."""
    times = {}
    for label, params in pages.items():
        query = {key: value.format(**values) for key, value in params.items()}
        times[label] = median_time(lambda query=query: client.get(path, query), args.repeats)
        if args.explain and explained:
            print(f"\n== {label}")
            explain(lambda query=query: client.get(path, query))
    return times


def report(what: str, results: dict[int, dict[str, float]], repeats: int, target: float) -> None:
    """The table of medians, small and big table, and the verdict on the slowest page."""
    small, big = min(results), max(results)
    print(f"{what} on PostgreSQL, median of {repeats} requests")
    print(f"{'page':<30}{small:>12,} rows{big:>14,} rows{'ratio':>8}")
    for label in results[big]:
        a, b = results[small][label], results[big][label]
        print(f"{label:<30}{a * 1000:>13.1f} ms{b * 1000:>15.1f} ms{b / a:>7.2f}x")
    label, slowest = max(results[big].items(), key=lambda item: item[1])
    verdict = "met" if slowest < target else "MISSED"
    print(
        f"slowest with {big:,} rows: {label}, {slowest * 1000:.0f} ms "
        f"(target < {target * 1000:.0f} ms: {verdict})"
    )


def explain(request: Callable[[], Any]) -> None:
    """Print each query of one request with its EXPLAIN ANALYZE plan."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        request()
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            print(f"\n  {sql[:300]}")
            for (line,) in cursor.fetchall():
                print(f"    {line}")
