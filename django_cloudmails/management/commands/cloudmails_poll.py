"""``manage.py cloudmails_poll``: ask the API about the rows whose fate it knows better.

For sites without Celery beat: run it from cron every minute or so (each row has its own
schedule, so a frequent run asks only about the rows that are due).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cloudmails.exceptions import CloudMailsConfigurationError
from django_cloudmails.polling import poll


class Command(BaseCommand):
    help = "Poll GET /emails/{id} for deliveries not yet final (see the README)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, help="Poll at most this many rows, oldest first.")
        parser.add_argument(
            "--ignore-schedule",
            action="store_true",
            help="Poll every row that is not final now, whatever its schedule.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["limit"]
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        try:
            report = poll(limit=limit, ignore_schedule=options["ignore_schedule"])
        except CloudMailsConfigurationError as err:
            raise CommandError(str(err)) from err
        self.stdout.write(
            f"Polled {report.polled} deliveries: {report.advanced} moved forward, "
            f"{report.bounced} bounced, {report.not_found} unknown to the API, "
            f"{report.errors} failed requests."
        )
        if report.rate_limited:
            wait = "" if report.retry_after is None else f"; retry after {report.retry_after:g} s"
            self.stderr.write(f"CloudMails answered 429: the run stopped early{wait}.")
