"""The delivery dashboard on a big table: the whole page for each period.

    python benchmarks/admin_dashboard.py [--rows 1000000] [--repeats 7] [--explain]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/cloudmails_admin_bench python ...

On PostgreSQL (the scratch database of ``admin_changelist.py``, emptied first), the
dashboard is requested through Django's test client as a superuser for the last 24
hours, 7 and 30 days, custom dates and one alias, with 1,000 rows and then ``--rows``
rows spread over 30 days (filled in SQL, see ``admin_site.py``): each figure is the
median of ``--repeats`` requests. The rollup is brought up to date before the timed
requests (``rollup.materialize()`` over the whole table, whose time is printed: a site
pays it once, then 15 minutes of rows at a time); each timed request still checks that
it is caught up, and counts the newest 15-30 minutes of rows live. The page's totals
are checked against a COUNT(*) of the table. DESIGN.md's figure: the whole page under
0.5 s at 1,000,000 rows.

``--rows 2000 --repeats 1`` is the smoke run CI does.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import admin_site

PAGES: dict[str, dict[str, str]] = {
    "last 24 hours": {"period": "24h"},
    "last 7 days": {"period": "7d"},
    "last 30 days": {"period": "30d"},
    "dates (31 days)": {"period": "custom", "start": "{start}", "end": "{end}"},
    "30 days, alias marketing": {"period": "30d", "alias": "marketing"},
}


def main() -> None:
    args = admin_site.arguments(__doc__)
    admin_site.configure()

    from django.urls import reverse
    from django.utils import timezone

    from django_cloudmails import rollup

    admin_site.empty()
    client = admin_site.logged_in_client()
    path = reverse("admin:cloudmails_dashboard")
    today = timezone.localdate()
    values = {"start": str(today - timedelta(days=30)), "end": str(today)}
    results: dict[int, dict[str, float]] = {}
    for size in admin_site.sizes(args.rows):
        admin_site.reset_rollup()  # so that the whole table is rolled up, and timed
        admin_site.fill(size)
        started = time.perf_counter()
        rollup.materialize()
        print(f"{size:,} rows: rolled up in {time.perf_counter() - started:.2f} s")
        check_totals(client, path)
        results[size] = admin_site.measure(
            client, path, PAGES, values, args, explained=size == args.rows
        )
    admin_site.report("admin delivery dashboard", results, args.repeats, target=0.5)


def check_totals(client: object, path: str) -> None:
    """The 30-day page's total of created rows is a COUNT(*) of the same rows."""
    from django.utils import timezone

    from django_cloudmails.admin.dashboard import PeriodForm
    from django_cloudmails.models import Delivery

    response = client.get(path, {"period": "30d"})  # type: ignore[attr-defined]
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    shown = re.search(r'<tfoot><tr><th scope="row">[^<]*</th><td>(\d+)</td>', html)
    assert shown, "no totals row on the dashboard"
    period, _granularity, _label = PeriodForm({"period": "30d"}).chosen()
    expected = Delivery.objects.filter(
        created_at__gte=period.start, created_at__lt=timezone.now()
    ).count()
    assert int(shown.group(1)) == expected, (shown.group(1), expected)


if __name__ == "__main__":
    main()
