"""The admin delivery list on a big table: the first page with each filter applied.

    python benchmarks/admin_changelist.py [--rows 1000000] [--repeats 7] [--explain]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/cloudmails_admin_bench python ...

On PostgreSQL (a scratch database of its own, created if missing and emptied first),
in one run: the changelist's first page, every filter (common and rare values), and
the searches by address and message id are requested through Django's test client as a
superuser, with 1,000 rows and then with ``--rows`` rows (filled in SQL, see
``admin_site.py``); each figure is the median of ``--repeats`` requests, with the ratio
big/small. ``--explain`` prints every query of each big-table page with its plan.
DESIGN.md's figure: every first page under 0.3 s at 1,000,000 rows.

``--rows 2000 --repeats 1`` is the smoke run CI does: the pages answer 200 and show
what they should.
"""

from __future__ import annotations

import admin_site

#: label -> query string; ``{n}`` is a row number in the middle of the table.
PAGES: dict[str, dict[str, str]] = {
    "first page": {},
    "status delivered (91%)": {"status__exact": "delivered"},
    "status bounced (3%)": {"status__exact": "bounced"},
    "status unknown (0.5%)": {"status__exact": "unknown"},
    "created today": {"created": "today"},
    "created past 7 days": {"created": "7d"},
    "created past 30 days": {"created": "30d"},
    "alias default (95%)": {"alias": "default"},
    "alias transactional (0.1%)": {"alias": "transactional"},
    "tag receipt (60%)": {"tag": "receipt"},
    "tag survey (0.05%)": {"tag": "survey"},
    "batch id": {"batch": "batch_{batch}"},
    "search by address": {"q": "reader{n}@gmail.com"},
    "search by message id": {"q": "msg_{n}"},
}


def main() -> None:
    args = admin_site.arguments(__doc__)
    admin_site.configure()

    from django.urls import reverse

    admin_site.empty()
    client = admin_site.logged_in_client()
    path = reverse("admin:cloudmails_delivery_changelist")
    results: dict[int, dict[str, float]] = {}
    for size in admin_site.sizes(args.rows):
        admin_site.fill(size)
        middle = _gmail_row(size)
        values = {"n": str(middle), "batch": str(middle // 1000)}
        for params in PAGES.values():  # warm the caches; each page shows its list
            response = client.get(path, {k: v.format(**values) for k, v in params.items()})
            assert b"cm-paginator" in response.content, params
        results[size] = admin_site.measure(
            client, path, PAGES, values, args, explained=size == args.rows
        )
    admin_site.report("admin delivery changelist", results, args.repeats, target=0.3)


def _gmail_row(size: int) -> int:
    """A delivered row near the middle whose address is at gmail.com (see admin_site):
    it has a message id."""
    n = size // 2
    while (n * 7) % 5 not in (0, 1) or (n * 7919) % 1000 < 90:
        n += 1
    return n


if __name__ == "__main__":
    main()
