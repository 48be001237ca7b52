"""The django-cloudmails tour: send real Django email through a local CloudMails and
watch every message reach its fate, with nothing to install but Python packages.

It migrates the example site's SQLite database, serves the site on a free loopback port,
starts the sandbox with its webhooks pointed at the site and a Celery worker of the
example project (kombu's filesystem transport in a local folder: no server), sends mail
through Django's own API and ``CeleryEmailBackend`` (the rows are written ``queued`` here,
the worker sends them), waits for the worker and the events, and prints the worker's line
per task, every API message with its fate, the suppression list, and what happens when a
suppressed address is mailed again. With ``--serve`` (or when asked on a terminal) it
keeps running with an admin account whose password it prints, sending a message now and
then, so the admin and the dashboard can be watched.

The worker is stopped however the demo ends: at the end, on Ctrl-C, on SIGTERM or on an
error (:class:`example_project.demo.worker.Worker`). With ``EMAIL_BACKEND`` set to the
in-process ``EmailBackend`` it starts no worker and sends from this process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core import mail
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.core.servers.basehttp import ThreadedWSGIServer
from django.core.wsgi import get_wsgi_application
from kombu.utils.url import maybe_sanitize_url

from django_cloudmails.addresses import parse_address
from django_cloudmails.backends import CeleryEmailBackend
from django_cloudmails.exceptions import CloudMailsSuppressed
from django_cloudmails.models import Delivery, Suppression
from django_cloudmails.sandbox import Sandbox
from example_project import celery_app
from example_project.demo.worker import Worker

SIM = "simulator.cloudmails.test"
#: The example settings' own credentials: printed, unlike any taken from the environment.
DEMO_DEFAULTS = {"API_KEY": "sandbox-key", "WEBHOOK_SECRET": "demo:demo-secret"}
TRICKLE_SECONDS = 10
TRICKLE_FATES = ("delivered", "open", "click", "delivered", "bounce", "deferred", "complaint")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Sent:
    """What the tour sent: emails, and their addresses in the order sent."""

    emails: int = 0
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)

    def add(self, message: mail.EmailMessage) -> None:
        self.emails += 1
        self.to.extend(message.to)
        self.cc.extend([*message.cc, *message.bcc])


class Command(BaseCommand):
    help = "Send mail through a local CloudMails sandbox and show each message's fate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--serve",
            action="store_true",
            help="Keep the site running afterwards, with an admin account, until Ctrl-C.",
        )
        parser.add_argument(
            "--no-input", action="store_true", help="Never ask (the default without a terminal)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Ctrl-C and SIGTERM end the demo through the code that stops the worker, even
        # when the demo was started with SIGINT ignored (as a shell's background job is).
        INTERRUPTED.clear()
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, _interrupt)
        call_command("migrate", verbosity=0)
        for model in (Suppression, Delivery):
            model.objects.all().delete()

        site = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
        site.set_app(StaticFilesHandler(get_wsgi_application()))
        threading.Thread(target=site.serve_forever, daemon=True).start()
        credentials = settings.CLOUDMAILS["WEBHOOK_SECRET"]
        webhook_url = f"http://{credentials}@127.0.0.1:{site.server_port}/cloudmails/webhook/"
        try:
            with Sandbox(
                api_key=settings.CLOUDMAILS["API_KEY"],
                verified_senders=["@shop.example"],
                webhook_url=webhook_url,
                event_delay=0.05,
                webhook_retry_delays=(0.2, 0.5, 1.0),
            ) as sandbox:
                settings.CLOUDMAILS["API_URL"] = sandbox.url
                self.stdout.write(
                    f"Sandbox at {sandbox.url}; webhooks to the site on port "
                    f"{site.server_port}, with {self.shown('WEBHOOK_SECRET')}."
                )
                with self.worker(sandbox) as worker:
                    self.tour(sandbox, worker)
                    if self.wants_to_serve(options):
                        self.serve(site.server_port, worker)
        except KeyboardInterrupt:
            self.stdout.write("\nInterrupted.")
            _exit_interrupted(site)
        finally:
            site.shutdown()
        if not options["serve"]:
            self.stdout.write(
                "\nRun `python -m example_project demo --serve` to explore the admin and "
                "the dashboard while messages keep going out."
            )

    def tour(self, sandbox: Sandbox, worker: Worker | None) -> None:
        sent = self.send_examples()
        checkpoint()
        if worker is not None:
            self.stdout.write(
                "CeleryEmailBackend wrote their rows 'queued' and returned at once; the worker "
                "sends them.\n"
            )
        self.wait_for_fates(sandbox, worker, len(sent.to))
        checkpoint()
        self.show_deliveries(sent)
        self.show_suppressions()
        self.try_suppressed()
        checkpoint()

    @contextlib.contextmanager
    def worker(self, sandbox: Sandbox) -> Iterator[Worker | None]:
        """The Celery worker sending for ``CeleryEmailBackend``, stopped on leaving however
        the demo ends; None when the settings name another backend."""
        if not isinstance(mail.get_connection(), CeleryEmailBackend):
            self.stdout.write(
                f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}: this process sends, no worker.\n"
            )
            yield None
            return
        celery_app.control.purge()  # tasks an earlier run left in the broker
        pid = None
        try:
            with Worker.running({"CLOUDMAILS_API_URL": sandbox.url}) as worker:
                pid = worker.pid
                self.stdout.write(
                    f"Celery worker started (pid {pid}): python -m celery -A example_project "
                    f"worker, broker {self.broker()}.\n"
                )
                yield worker
        finally:
            if pid is not None:
                self.stdout.write(f"\nThe worker (pid {pid}) is stopped.")

    def broker(self) -> str:
        """The broker, as the settings name it (the filesystem transport's folder)."""
        url = str(settings.CELERY_BROKER_URL)
        if not url.startswith("filesystem"):
            return str(maybe_sanitize_url(url))  # its password masked
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]).parent
        with contextlib.suppress(ValueError):
            folder = folder.relative_to(Path.cwd())
        return f"kombu's filesystem transport in {folder}/"

    def shown(self, key: str) -> str:
        """A credential of the example settings, or a note that it is the user's own."""
        value = settings.CLOUDMAILS[key]
        if value == DEMO_DEFAULTS[key]:
            return f"credentials {value}" if key == "WEBHOOK_SECRET" else f"key {value}"
        return f"the {key} you set (not shown)"

    # Sending, through Django's own mail API.

    def send_examples(self) -> Sent:
        sent = Sent()
        sent.emails += mail.send_mail(
            "Your order has shipped",
            "Order #1001 is on its way.",
            None,
            [f"delivered@{SIM}"],
            html_message="<p>Order <b>#1001</b> is on its way.</p>",
        )
        sent.to.append(f"delivered@{SIM}")
        invoice = mail.EmailMultiAlternatives(
            "Invoice for March",
            "Your invoice is attached.",
            to=[f"Reader <open@{SIM}>", f"click@{SIM}"],
            cc=[f"delivered+accounts@{SIM}"],
        )
        invoice.attach_alternative(
            "<p>Your invoice is <a href='https://shop.example/i/3'>here</a>.</p>", "text/html"
        )
        invoice.attach("invoice.txt", "Total: 42.00 EUR", "text/plain")
        invoice.custom_args = {"invoice": "2026-03"}  # type: ignore[attr-defined]
        invoice.send()
        sent.add(invoice)
        sale = [f"{fate}@{SIM}" for fate in ("bounce", "complaint", "unsubscribe", "deferred")]
        sent.emails += mail.send_mass_mail(
            [("Spring sale", "20% off this week.", None, [address]) for address in sale]
        )
        sent.to.extend(sale)
        mail.mail_admins("Nightly report", "All systems nominal.")
        sent.emails += 1
        sent.to.extend(a if isinstance(a, str) else a[1] for a in settings.ADMINS)
        rows = len(sent.to)
        self.stdout.write(
            f"Sent {sent.emails} emails with send_mail, EmailMultiAlternatives, send_mass_mail "
            f"and mail_admins: {rows} API messages (one per 'to' address; the four sale emails "
            f"in one batch request), to {rows + len(sent.cc)} recipients (the cc rides with "
            "the first 'to').\n"
        )
        return sent

    def wait_for_fates(self, sandbox: Sandbox, worker: Worker | None, rows: int) -> None:
        """Until the worker sent every row (its log says so), the API answered every
        message and every webhook is delivered."""
        if worker is not None:
            worker.wait_for_rows(rows, check=checkpoint)
            self.stdout.write("The worker's log, one line per task:")
            for line in worker.reports:
                self.stdout.write(f"  {line}")
            self.stdout.write("")
        sandbox.wait_idle(timeout=30)

    # Showing what happened.

    def show_deliveries(self, sent: Sent) -> None:
        order = {parse_address(a, field="to").addr_spec: n for n, a in enumerate(sent.to)}
        rows = sorted(
            Delivery.objects.filter(to_email__in=order),
            key=lambda row: (row.created_at, order[row.to_email]),
        )
        self.stdout.write(
            f"{'subject':<24}{'recipients':<48}{'status':<11}{'opens':>5}{'clicks':>7}\n"
            f"{'  message id':<32}events"
        )
        for row in rows:
            payload = row.payload if isinstance(row.payload, dict) else {}
            self.stdout.write("-" * 95)
            self.stdout.write(
                f"{row.subject[:23]:<24}{payload.get('to', row.to_email)[:47]:<48}"
                f"{row.status:<11}{row.opens:>5}{row.clicks:>7}"
            )
            for kind in ("cc", "bcc"):
                for address in payload.get(kind) or ():
                    self.stdout.write(f"{'':<24}{kind} {address}")
            events = ", ".join(row.events.order_by("occurred_at").values_list("event", flat=True))
            self.stdout.write(f"  {row.message_id or '-':<30}{events or '-'}")
        self.stdout.write("-" * 95)
        tally = Counter(row.status for row in rows)
        counts = ", ".join(f"{status} {count}" for status, count in sorted(tally.items()))
        self.stdout.write(
            f"{len(rows)} API messages: {counts}. (deferred@ stays 'sent': CloudMails sends "
            "no webhook for a deferral; status polling, or the admin's 'Refresh status', asks "
            "GET /emails/<id>.)"
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

    # Staying up for the admin.

    def wants_to_serve(self, options: dict[str, Any]) -> bool:
        if options["serve"]:
            return True
        if options["no_input"] or not sys.stdin.isatty():
            return False
        answer = input("\nKeep running, to explore the admin and the dashboard? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    def serve(self, port: int, worker: Worker | None) -> None:
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(
            username="demo", defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.save()
        base = f"http://127.0.0.1:{port}/admin/"
        self.stdout.write(
            f"\nThe example site runs at {base}\n"
            f"  log in as demo, password {password}\n"
            f"  deliveries: {base}cloudmails/delivery/\n"
            f"  dashboard:  {base}cloudmails/delivery/dashboard/\n"
            f"A message goes out every {TRICKLE_SECONDS} s, and its status follows. "
            "Ctrl-C stops."
        )
        if worker is not None:
            worker.echo = lambda line: self.stdout.write(f"  worker: {line}")
        fates = itertools.cycle(TRICKLE_FATES)
        try:
            for number in itertools.count(1):
                if INTERRUPTED.wait(TRICKLE_SECONDS):
                    raise KeyboardInterrupt
                address = f"{next(fates)}+{number}@{SIM}"
                mail.send_mail(f"Live message {number}", "Sent while you watch.", None, [address])
        except KeyboardInterrupt:
            self.stdout.write("\nStopped.")


#: Set by Ctrl-C or SIGTERM. The KeyboardInterrupt raised then is lost when the signal
#: lands in a finalizer ("Exception ignored in ..."): the demo also stops at the next
#: :func:`checkpoint`.
INTERRUPTED = threading.Event()


def _interrupt(signum: int, frame: Any) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt


def _exit_interrupted(site: ThreadedWSGIServer) -> None:
    """Exit with 130, as a shell reports Ctrl-C, once the worker is stopped.

    Through ``sys.exit`` the interpreter's own shutdown still ran after the cleanup, and
    on a loaded machine some runs ended as if killed by SIGINT (status -2) instead,
    with nothing printed; nothing is left to clean up here that needs it.
    """
    site.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def checkpoint() -> None:
    """Stop here if the demo was interrupted."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
