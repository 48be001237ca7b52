"""The django-cloudmails tour: send real Django email through a local CloudMails and
watch every message reach its fate, with nothing to install but Python packages.

It migrates the example site's SQLite database, serves the site on a free loopback port,
starts the sandbox with its webhooks pointed at the site, sends mail through Django's own
API, waits for the events, and prints the Delivery table and the suppression list.
"""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.core.servers.basehttp import ThreadedWSGIServer
from django.core.wsgi import get_wsgi_application

from django_cloudmails.exceptions import CloudMailsSuppressed
from django_cloudmails.models import Delivery, Suppression
from django_cloudmails.sandbox import Sandbox

SIM = "simulator.cloudmails.test"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Command(BaseCommand):
    help = "Send mail through a local CloudMails sandbox and show each message's fate."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        Delivery.objects.all().delete()
        Suppression.objects.all().delete()

        site = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
        site.set_app(get_wsgi_application())
        threading.Thread(target=site.serve_forever, daemon=True).start()
        credentials = settings.CLOUDMAILS["WEBHOOK_SECRET"]
        webhook_url = f"http://{credentials}@127.0.0.1:{site.server_port}/cloudmails/webhook/"

        with Sandbox(
            api_key=settings.CLOUDMAILS["API_KEY"],
            verified_senders=["@shop.example"],
            webhook_url=webhook_url,
            event_delay=0.05,
            webhook_retry_delays=(0.2, 0.5, 1.0),
        ) as sandbox:
            settings.CLOUDMAILS["API_URL"] = sandbox.url
            self.stdout.write(
                f"Sandbox at {sandbox.url}; webhooks to the site on port {site.server_port}.\n"
            )
            self.send_examples()
            sandbox.wait_idle(timeout=30)
            self.show_deliveries()
            self.show_suppressions()
            self.try_suppressed()
        site.shutdown()
        self.stdout.write(
            "\nExplore it in the admin:\n"
            "  python -m example_project createsuperuser\n"
            "  python -m django_cloudmails.sandbox --port 8025 --webhook-url "
            "http://USER:PASSWORD@127.0.0.1:8000/cloudmails/webhook/ &\n"
            '     (USER:PASSWORD as in CLOUDMAILS["WEBHOOK_SECRET"])\n'
            "  python -m example_project runserver\n"
            "then open http://127.0.0.1:8000/admin/cloudmails/delivery/"
        )

    def send_examples(self) -> None:
        singles = mail.send_mail(
            "Your order has shipped",
            "Order #1001 is on its way.",
            None,
            [f"delivered@{SIM}"],
            html_message="<p>Order <b>#1001</b> is on its way.</p>",
        )
        message = mail.EmailMultiAlternatives(
            "Invoice for March",
            "Your invoice is attached.",
            to=[f"Reader <open@{SIM}>", f"click@{SIM}"],
            cc=[f"delivered+accounts@{SIM}"],
        )
        message.attach_alternative(
            "<p>Your invoice is <a href='https://shop.example/i/3'>here</a>.</p>", "text/html"
        )
        message.attach("invoice.txt", "Total: 42.00 EUR", "text/plain")
        message.custom_args = {"invoice": "2026-03"}
        singles += message.send()
        batch = mail.send_mass_mail(
            [
                ("Spring sale", "20% off this week.", None, [f"bounce@{SIM}"]),
                ("Spring sale", "20% off this week.", None, [f"complaint@{SIM}"]),
                ("Spring sale", "20% off this week.", None, [f"unsubscribe@{SIM}"]),
                ("Spring sale", "20% off this week.", None, [f"deferred@{SIM}"]),
            ]
        )
        mail.mail_admins("Nightly report", "All systems nominal.")
        self.stdout.write(
            f"Sent {singles + 1} emails with send_mail, EmailMultiAlternatives (two "
            f"recipients: one batch request) and mail_admins, and {batch} with "
            "send_mass_mail (one batch request).\n"
        )

    def show_deliveries(self) -> None:
        rows = Delivery.objects.order_by("created_at")
        self.stdout.write(f"{'recipient':<44}{'status':<11}{'opens':>6}{'clicks':>7}  events")
        for row in rows:
            events = ", ".join(row.events.order_by("occurred_at").values_list("event", flat=True))
            self.stdout.write(
                f"{row.to_email:<44}{row.status:<11}{row.opens:>6}{row.clicks:>7}  {events}"
            )

        self.stdout.write(
            "(deferred@ stays 'sent': CloudMails sends no webhook for a deferral; "
            "GET /emails/<id> reports it.)"
        )

    def show_suppressions(self) -> None:
        self.stdout.write("\nSuppressed addresses:")
        for row in Suppression.objects.order_by("address"):
            self.stdout.write(f"  {row.address} ({row.get_reason_display()})")

    def try_suppressed(self) -> None:
        try:
            sent = mail.send_mail("Spring sale, again", "Still 20% off.", None, [f"bounce@{SIM}"])
        except CloudMailsSuppressed as error:
            self.stdout.write(f"\nSending to bounce@{SIM} again is refused: {error}")
            return
        row = Delivery.objects.filter(to_email=f"bounce@{SIM}").latest("created_at")
        self.stdout.write(
            f"\nSending to bounce@{SIM} again: {sent} sent, row {row.status} "
            f"({row.error_code}: {row.last_error})"
        )
