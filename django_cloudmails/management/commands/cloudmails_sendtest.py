"""``manage.py cloudmails_sendtest ADDRESS``: prove the setup works end to end."""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cloudmails.backends import EmailBackend
from django_cloudmails.exceptions import CloudMailsConfigurationError, CloudMailsError


class Command(BaseCommand):
    help = "Send one test email through CloudMails and print its message id and status."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="Recipient of the test email.")
        parser.add_argument(
            "--from", dest="from_email", help="Sender (default: DEFAULT_FROM_EMAIL)."
        )
        parser.add_argument("--subject", default="CloudMails test email")
        parser.add_argument(
            "--mailer", default=None, help="MAILERS alias to send with (Django 6.1+)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backend = _backend(options["mailer"])
        message = EmailMessage(
            subject=options["subject"],
            body="This is a test email sent by django-cloudmails (cloudmails_sendtest).",
            from_email=options["from_email"],
            to=[options["address"]],
        )
        try:
            backend.send_messages([message])
        except (CloudMailsError, CloudMailsConfigurationError) as error:
            raise CommandError(f"Sending failed: {error}") from error
        delivery = message.cloudmails_deliveries[0]  # type: ignore[attr-defined]
        self.stdout.write(f"message_id: {delivery.message_id}")
        self.stdout.write(f"status: {delivery.status}")


def _backend(alias: str | None) -> EmailBackend:
    """Our backend, built from ``MAILERS[alias]`` when that is how it is configured."""
    if django.VERSION >= (6, 1) and hasattr(settings, "MAILERS"):
        from django.core.mail import mailers

        name = alias or "default"
        if name not in mailers:
            raise CommandError(f'MAILERS has no "{name}" alias.')
        backend = mailers[name]
        if not isinstance(backend, EmailBackend):
            raise CommandError(f'MAILERS["{name}"] does not use the CloudMails backend.')
        return backend
    if alias:
        raise CommandError("--mailer needs Django 6.1+ and the MAILERS setting.")
    return EmailBackend()
