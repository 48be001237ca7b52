"""``manage.py cloudmails_sendtest ADDRESS``: prove the setup works end to end."""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cloudmails.exceptions import CloudMailsConfigurationError, CloudMailsError
from django_cloudmails.mailers import backend_for


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
        try:
            backend = backend_for(options["mailer"])
        except CloudMailsConfigurationError as error:
            raise CommandError(str(error)) from error
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
