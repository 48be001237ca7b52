"""``manage.py cloudmails_purge_bodies``: drop old message bodies, keep the envelope.

Bodies and attachments are kept so a message can be sent again; after
``BODY_RETENTION_DAYS`` they are only weight (and personal data). The envelope (to,
from, subject, cc, bcc, reply_to, custom_args) and the whole delivery history stay.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_cloudmails.conf import app_settings
from django_cloudmails.limits import ROWS_PER_STATEMENT
from django_cloudmails.models import Delivery

#: Payload keys dropped by a purge.
BODY_KEYS = ("html", "text", "attachments")


class Command(BaseCommand):
    help = "Remove bodies and attachments from Delivery rows older than the retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, help='Age in days (default: CLOUDMAILS["BODY_RETENTION_DAYS"]).'
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is None:
            days = app_settings.body_retention_days
        if days is None:
            raise CommandError('Set CLOUDMAILS["BODY_RETENTION_DAYS"] or pass --days.')
        if days < 0:
            raise CommandError("--days must not be negative.")
        purged = purge_bodies(timezone.now() - timedelta(days=days))
        self.stdout.write(f"Purged the bodies of {purged} deliveries older than {days} days.")


def purge_bodies(before: Any) -> int:
    """Strip the bodies of rows created before ``before``; return how many."""
    rows = Delivery.objects.filter(created_at__lt=before, body_purged_at__isnull=True)
    now = timezone.now()
    total = 0
    while True:
        chunk = list(rows.only("id", "payload")[:ROWS_PER_STATEMENT])
        if not chunk:
            return total
        for row in chunk:
            row.payload = {k: v for k, v in row.payload.items() if k not in BODY_KEYS}
            row.body_purged_at = now
        Delivery.objects.bulk_update(chunk, ["payload", "body_purged_at"])
        total += len(chunk)
