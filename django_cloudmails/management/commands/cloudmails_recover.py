"""``manage.py cloudmails_recover``: settle deliveries whose send outcome is unknown.

For sites without Celery beat: run it from cron every few minutes. Safe to run while
another run (or a worker) is at it: rows are claimed atomically.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cloudmails.exceptions import CloudMailsConfigurationError
from django_cloudmails.recovery import recover


class Command(BaseCommand):
    help = "Resend or settle deliveries whose outcome is unknown (see the README)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            metavar="SECONDS",
            help="Only rows whose attempt started this long ago "
            '(default: CLOUDMAILS["RECOVER_AFTER"]).',
        )
        parser.add_argument("--limit", type=int, help="At most this many rows (default 10,000).")

    def handle(self, *args: Any, **options: Any) -> None:
        older_than, limit = options["older_than"], options["limit"]
        if older_than is not None and older_than < 0:
            raise CommandError("--older-than must not be negative.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        try:
            report = recover(older_than=older_than, limit=limit)
        except CloudMailsConfigurationError as err:
            raise CommandError(str(err)) from err
        self.stdout.write(
            f"Claimed {report.claimed} deliveries: {report.evidenced} settled by their events, "
            f"{report.resent} resent, {report.accepted} accepted, {report.unknown} still "
            f"unknown, {report.contended} left to a concurrent run."
        )
        if report.unrebuildable:
            self.stderr.write(
                f"{report.unrebuildable} deliveries belong to requests that cannot be rebuilt "
                "(rows of them were deleted); they were not resent."
            )
