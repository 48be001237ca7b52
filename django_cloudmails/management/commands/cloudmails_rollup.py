"""``manage.py cloudmails_rollup``: bring the dashboard's rollup up to date now.

The dashboard does it as it is read (a fifth of a second at most per request); after
installing on a big table, or from cron every few minutes, this does it all at once,
15-minute slots a transaction, so writers wait a few milliseconds at a time.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_cloudmails import rollup


class Command(BaseCommand):
    help = "Roll the closed 15-minute slots of deliveries up for the dashboard (PostgreSQL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=5.0,
            help="Seconds to wait for writers in flight before giving up (default 5).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        mark = rollup.materialize(lock_timeout=options["lock_timeout"])
        if mark is None:
            self.stdout.write("No rollup on this database: the dashboard counts the table.")
            return
        moment = rollup.slot_moment(mark).isoformat()
        self.stdout.write(f"Deliveries created before {moment} are rolled up.")
