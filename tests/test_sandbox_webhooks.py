"""Webhooks from the sandbox to a real receiver: signing, Basic auth, retries, switches."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import traceback
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from django_cloudmails import signing
from django_cloudmails.sandbox import Sandbox

API_KEY = "test-key"
SIM = "simulator.cloudmails.test"
FAST = (0.05, 0.1)
#: The fields of the API reference's webhook payload, all the sandbox sends by default.
MINIMAL = ["custom_args", "event", "message_id", "recipient", "timestamp"]


class Receiver:
    """A webhook endpoint on a free port that records requests and answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answers to give first; then 200
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._cond:
                    receiver.received.append((headers, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}
        )
        self.thread.start()
        self.url = f"http://hook:s3cret@127.0.0.1:{self.server.server_address[1]}/hook/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def wait_for(self, count: int, timeout: float = 5) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, timeout)

    def bodies(self, *, pings: bool = False) -> list:
        parsed = [json.loads(body) for _, body in self.received]
        return [b for b in parsed if pings or not (isinstance(b, dict) and b["event"] == "ping")]

    def events(self) -> list[str]:
        return [body["event"] for body in self.bodies()]


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def hooked_sandbox(receiver):
    with Sandbox(
        api_key=API_KEY, webhook_url=receiver.url, webhook_retry_delays=FAST, seed=1
    ) as sb:
        sb.wait_idle()  # the test ping
        yield sb


def send(sb: Sandbox, to: str, **extra: object) -> str:
    payload = {
        "to": to,
        "from": "noreply@shop.example",
        "subject": "Hi",
        "html": "<p>Hi</p>",
        **extra,
    }
    response = requests.post(
        f"{sb.url}/send", json=payload, timeout=5, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 200
    return response.json()["message_id"]


def test_configured_url_gets_a_test_ping(hooked_sandbox, receiver):
    (ping,) = receiver.bodies(pings=True)
    assert ping["event"] == "ping"
    assert ping["timestamp"].endswith("Z")


def test_configure_webhook_pings_the_new_url(receiver):
    with Sandbox(api_key=API_KEY) as sb:
        sb.configure_webhook(receiver.url)
        sb.wait_idle()
        assert sb.webhook_url == receiver.url
    assert receiver.bodies(pings=True)[0]["event"] == "ping"


def test_inspection_api_sets_the_webhook_url(receiver):
    with Sandbox(api_key=API_KEY) as sb:
        root = sb.url.replace("/v1", "/_sandbox")
        state = requests.post(f"{root}/webhook", json={"url": receiver.url}, timeout=5)
        assert state.json()["url"] == receiver.url.replace("s3cret", "***")
        assert "s3cret" not in state.text
        assert sb.webhook_url == receiver.url  # the Python API keeps the real URL
        sb.wait_idle()
    assert receiver.bodies(pings=True)[0]["event"] == "ping"


def test_webhook_sends_basic_auth_from_the_url(hooked_sandbox, receiver):
    headers, _ = receiver.received[0]
    scheme, _, encoded = headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded) == b"hook:s3cret"
    assert headers["content-type"] == "application/json"


def test_webhook_signature_verifies_with_signing_module(hooked_sandbox, receiver):
    send(hooked_sandbox, "a@example.org")
    hooked_sandbox.wait_idle()
    for headers, body in receiver.received:
        assert headers["webhook-id"].startswith("evt_")
        signing.verify([hooked_sandbox.webhook_signing_secret], headers, body)


def test_webhook_signature_verifies_with_standardwebhooks(hooked_sandbox, receiver):
    send(hooked_sandbox, "a@example.org")
    hooked_sandbox.wait_idle()
    webhook = Webhook(hooked_sandbox.webhook_signing_secret)
    for headers, body in receiver.received:
        webhook.verify(body, headers)


def test_webhook_signature_verifies_with_svix(hooked_sandbox, receiver):
    from svix.webhooks import Webhook as SvixWebhook

    send(hooked_sandbox, "a@example.org")
    hooked_sandbox.wait_idle()
    webhook = SvixWebhook(hooked_sandbox.webhook_signing_secret)
    for headers, body in receiver.received:
        svix_names = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
        webhook.verify(body, svix_names)


@pytest.mark.parametrize("padding", ["", "="], ids=["unpadded", "half-padded"])
def test_given_secret_without_padding_signs_as_standardwebhooks_reads_it(receiver, padding):
    secret = "whsec_" + base64.b64encode(b"k" * 22).decode().rstrip("=") + padding
    with Sandbox(api_key=API_KEY, webhook_url=receiver.url, webhook_signing_secret=secret) as sb:
        sb.wait_idle()
    headers, body = receiver.received[0]
    Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!!", "whsec_a"])
def test_unusable_signing_secret_fails_before_the_sandbox_starts(secret):
    before = sandbox_threads()
    with pytest.raises(ValueError, match="signing secret"):
        Sandbox(api_key=API_KEY, webhook_signing_secret=secret)
    assert sandbox_threads() == before


def test_sandbox_signs_with_its_own_code_not_the_package():
    import ast
    import inspect

    import django_cloudmails.sandbox as package

    for module in Path(inspect.getfile(package)).parent.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "django_cloudmails.signing" not in imported, module.name
        assert "django_cloudmails.webhooks" not in imported, module.name


def test_given_signing_secret_is_used(receiver):
    secret = signing.generate_secret()
    with Sandbox(api_key=API_KEY, webhook_url=receiver.url, webhook_signing_secret=secret) as sb:
        sb.wait_idle()
    headers, body = receiver.received[0]
    signing.verify([secret], headers, body)


@pytest.mark.parametrize(
    ("local", "events"),
    [
        ("delivered", ["delivered"]),
        ("bounce", ["bounced"]),
        ("softbounce", ["bounced"]),
        ("complaint", ["delivered", "complained"]),
        ("open", ["delivered", "opened"]),
        ("click", ["delivered", "opened", "clicked"]),
        ("unsubscribe", ["delivered", "unsubscribed"]),
        ("deferred", []),
        ("reject", []),
    ],
)
def test_every_event_type_is_delivered(hooked_sandbox, receiver, local, events):
    message_id = send(hooked_sandbox, f"{local}@{SIM}", custom_args={"user_id": "12345"})
    hooked_sandbox.wait_idle()
    assert receiver.events() == events
    for body in receiver.bodies():
        assert sorted(body) == MINIMAL
        assert body["message_id"] == message_id
        assert body["recipient"] == f"{local}@{SIM}"
        assert body["custom_args"] == {"user_id": "12345"}
        assert body["timestamp"].endswith("Z")


@pytest.mark.parametrize("local", ["bounce", "softbounce", "click"])
def test_events_carry_the_reference_fields_only_by_default(hooked_sandbox, receiver, local):
    send(hooked_sandbox, f"{local}@{SIM}")
    hooked_sandbox.wait_idle()
    assert receiver.bodies()
    for body in receiver.bodies():
        assert sorted(body) == MINIMAL


@pytest.fixture
def rich_sandbox(receiver):
    with Sandbox(
        api_key=API_KEY,
        webhook_url=receiver.url,
        webhook_retry_delays=FAST,
        rich_events=True,
    ) as sb:
        sb.wait_idle()
        yield sb


@pytest.mark.parametrize(
    ("local", "kind", "reason"),
    [
        ("bounce", "hard", "550 5.1.1 user unknown"),
        ("softbounce", "soft", "452 4.2.2 mailbox full"),
    ],
)
def test_rich_bounced_event_has_type_and_reason(rich_sandbox, receiver, local, kind, reason):
    send(rich_sandbox, f"{local}@{SIM}")
    rich_sandbox.wait_idle()
    (event,) = receiver.bodies()
    assert (event["bounce_type"], event["bounce_reason"]) == (kind, reason)


def test_rich_clicked_event_has_url(rich_sandbox, receiver):
    send(rich_sandbox, f"click@{SIM}")
    rich_sandbox.wait_idle()
    assert receiver.bodies()[-1]["url"] == "https://example.com/"


def test_rich_delivered_event_has_nothing_more(rich_sandbox, receiver):
    send(rich_sandbox, f"delivered@{SIM}")
    rich_sandbox.wait_idle()
    assert [sorted(body) for body in receiver.bodies()] == [MINIMAL]


def status_of(sb: Sandbox, message_id: str) -> dict:
    response = requests.get(
        f"{sb.url}/emails/{message_id}",
        timeout=5,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    return response.json()


@pytest.mark.parametrize("local", ["delivered", "open", "click", "complaint"])
def test_delivered_event_and_status_carry_the_same_instant(hooked_sandbox, receiver, local):
    message_id = send(hooked_sandbox, f"{local}@{SIM}")
    hooked_sandbox.wait_idle()
    (delivered,) = [body for body in receiver.bodies() if body["event"] == "delivered"]
    assert status_of(hooked_sandbox, message_id)["delivered_at"] == delivered["timestamp"]


def send_batch(sb: Sandbox, local: str, count: int) -> list[str]:
    """Send ``count`` messages to ``local+N@`` simulator addresses in one batch."""
    batch = {
        "from": "a@shop.example",
        "subject": "s",
        "html": "h",
        "messages": [{"to": f"{local}+{i}@{SIM}"} for i in range(count)],
    }
    response = requests.post(
        f"{sb.url}/send/batch",
        json=batch,
        timeout=5,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 202
    return [entry["message_id"] for entry in response.json()["messages"]]


def test_batch_events_are_delivered(hooked_sandbox, receiver):
    send_batch(hooked_sandbox, "open", 3)
    hooked_sandbox.wait_idle()
    assert sorted(receiver.events()) == ["delivered"] * 3 + ["opened"] * 3


def test_failed_webhook_is_retried_with_the_same_id(hooked_sandbox, receiver):
    receiver.statuses = [500]
    send(hooked_sandbox, "a@example.org")
    hooked_sandbox.wait_idle()
    first, second = receiver.received[1:]
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert first[1] == second[1]
    signing.verify([hooked_sandbox.webhook_signing_secret], second[0], second[1])
    assert [result for _, result, _ in hooked_sandbox.webhook_attempts][1:] == [500, 200]


def test_webhook_is_given_up_after_the_last_delay(hooked_sandbox, receiver):
    receiver.statuses = [503, 503, 503]
    send(hooked_sandbox, "a@example.org")
    hooked_sandbox.wait_idle()
    assert len(receiver.received) == 1 + 3
    (failure,) = hooked_sandbox.webhook_failures
    assert json.loads(failure[1])["event"] == "delivered"


def test_unreachable_webhook_url_is_retried_then_given_up():
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens there now
    with Sandbox(
        api_key=API_KEY,
        webhook_url=f"http://hook:s3cret@127.0.0.1:{port}/",
        webhook_retry_delays=FAST,
    ) as sb:
        sb.wait_idle()
        results = [result for _, result, _ in sb.webhook_attempts]
        assert len(results) == 3
        assert all(isinstance(result, str) for result in results)
        assert not any("s3cret" in result for result in results)
        assert len(sb.webhook_failures) == 1


def test_duplicate_switch_sends_every_event_twice(hooked_sandbox, receiver):
    hooked_sandbox.faults.duplicate_webhooks = True
    send(hooked_sandbox, f"open@{SIM}")
    hooked_sandbox.wait_idle()
    ids = [headers["webhook-id"] for headers, _ in receiver.received[1:]]
    assert len(ids) == 4
    assert len(set(ids)) == 2
    assert sorted(receiver.events()) == ["delivered", "delivered", "opened", "opened"]


def test_shuffle_switch_delivers_out_of_order(hooked_sandbox, receiver):
    hooked_sandbox.faults.shuffle_webhooks = True
    message_id = send(hooked_sandbox, f"click@{SIM}")
    hooked_sandbox.wait_idle()
    emitted = [e["event"] for e in hooked_sandbox.message(message_id).events]
    assert sorted(receiver.events()) == sorted(emitted)
    assert receiver.events() != emitted


def test_batch_switch_sends_lists_of_events(hooked_sandbox, receiver):
    hooked_sandbox.faults.webhook_batch = 10
    send(hooked_sandbox, f"click@{SIM}")
    hooked_sandbox.wait_idle()
    (body,) = receiver.bodies()
    assert [event["event"] for event in body] == ["delivered", "opened", "clicked"]
    headers, raw = receiver.received[-1]
    Webhook(hooked_sandbox.webhook_signing_secret).verify(raw, headers)


def test_drop_rate_of_one_loses_every_event_but_the_api_knows_better(hooked_sandbox, receiver):
    hooked_sandbox.faults.webhook_drop_rate = 1.0
    message_id = send(hooked_sandbox, f"open@{SIM}")
    hooked_sandbox.wait_idle()
    assert receiver.bodies() == []
    assert [e["event"] for e in hooked_sandbox.webhook_dropped] == ["delivered", "opened"]
    assert [e["event"] for e in hooked_sandbox.message(message_id).events] == [
        "delivered",
        "opened",
    ]
    assert (status_of(hooked_sandbox, message_id)["status"], hooked_sandbox.webhook_failures) == (
        "delivered",
        [],
    )


def test_drop_rate_loses_a_share_of_events_decided_per_event(hooked_sandbox, receiver):
    hooked_sandbox.faults.webhook_drop_rate = 0.5
    message_ids = send_batch(hooked_sandbox, "delivered", 200)
    hooked_sandbox.wait_idle()
    delivered = {body["message_id"] for body in receiver.bodies()}
    dropped = {event["message_id"] for event in hooked_sandbox.webhook_dropped}
    assert delivered.isdisjoint(dropped)
    assert delivered | dropped == set(message_ids)
    assert 60 <= len(dropped) <= 140


def test_dropped_events_have_no_duplicates_either(hooked_sandbox, receiver):
    hooked_sandbox.faults.update({"webhook_drop_rate": 0.5, "duplicate_webhooks": True})
    message_ids = send_batch(hooked_sandbox, "delivered", 50)
    hooked_sandbox.wait_idle()
    copies = Counter(body["message_id"] for body in receiver.bodies())
    dropped = {event["message_id"] for event in hooked_sandbox.webhook_dropped}
    assert set(copies.values()) == {2}
    assert dropped
    assert dropped.isdisjoint(copies)
    assert dropped | set(copies) == set(message_ids)


def test_drop_decisions_repeat_for_the_same_seed(receiver):
    def dropped_indexes(seed: int) -> list[int]:
        with Sandbox(api_key=API_KEY, webhook_url=receiver.url, seed=seed) as sb:
            sb.faults.webhook_drop_rate = 0.3
            message_ids = send_batch(sb, "delivered", 40)
            sb.wait_idle()
            dropped = {event["message_id"] for event in sb.webhook_dropped}
            return [i for i, message_id in enumerate(message_ids) if message_id in dropped]

    first = dropped_indexes(7)
    assert dropped_indexes(7) == first
    assert dropped_indexes(8) != first


def test_drop_rate_is_a_settable_fault(hooked_sandbox):
    root = hooked_sandbox.url.replace("/v1", "/_sandbox")
    state = requests.post(f"{root}/faults", json={"webhook_drop_rate": 0.25}, timeout=5).json()
    assert state["webhook_drop_rate"] == 0.25
    hooked_sandbox.faults.clear()
    assert hooked_sandbox.faults.webhook_drop_rate == 0.0


def test_emit_queues_a_hand_made_event(hooked_sandbox, receiver):
    message_id = send(hooked_sandbox, f"deferred@{SIM}")
    hooked_sandbox.wait_idle()
    hooked_sandbox.emit(message_id, "bounced", bounce_type="hard", bounce_reason="x")
    hooked_sandbox.wait_idle()
    (event,) = receiver.bodies()
    assert (event["event"], event["message_id"], event["bounce_reason"]) == (
        "bounced",
        message_id,
        "x",
    )


def test_events_are_recorded_without_a_webhook_url():
    with Sandbox(api_key=API_KEY) as sb:
        message_id = send(sb, f"open@{SIM}")
        sb.wait_idle()
        assert [e["event"] for e in sb.message(message_id).events] == ["delivered", "opened"]
        assert sb.webhook_attempts == []


def test_wait_idle_raises_timeout_error_when_busy(receiver):
    receiver.statuses = [500]
    with Sandbox(api_key=API_KEY, webhook_url=receiver.url, webhook_retry_delays=(30,)) as sb:
        receiver.wait_for(1)
        with pytest.raises(TimeoutError):
            sb.wait_idle(timeout=0.05)


# The command line switches.


def run_cli(*args: str):
    """The sandbox's command line on a free port, and its API base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "django_cloudmails.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().split()[3].rstrip(";")


def cli_send(url: str, to: str) -> None:
    response = requests.post(
        f"{url}/send",
        json={"to": to, "from": "a@shop.example", "subject": "s", "html": "h"},
        timeout=5,
        headers={"Authorization": "Bearer sandbox-key"},
    )
    assert response.status_code == 200


def stop_cli(process) -> None:
    process.terminate()
    assert process.wait(timeout=10) == 0
    process.stdout.close()


def test_command_line_rich_events_switch(receiver):
    process, url = run_cli("--webhook-url", receiver.url, "--rich-events")
    try:
        cli_send(url, f"bounce@{SIM}")
        receiver.wait_for(2)
    finally:
        stop_cli(process)
    (event,) = receiver.bodies()
    assert (event["bounce_type"], event["bounce_reason"]) == ("hard", "550 5.1.1 user unknown")


def test_command_line_sends_the_reference_shape_by_default(receiver):
    process, url = run_cli("--webhook-url", receiver.url)
    try:
        cli_send(url, f"bounce@{SIM}")
        receiver.wait_for(2)
    finally:
        stop_cli(process)
    assert [sorted(body) for body in receiver.bodies()] == [MINIMAL]


def test_command_line_sets_the_webhook_drop_rate():
    process, url = run_cli("--webhook-drop-rate", "0.4")
    try:
        faults = requests.get(url.replace("/v1", "/_sandbox/faults"), timeout=5).json()
    finally:
        stop_cli(process)
    assert faults["webhook_drop_rate"] == 0.4


# Webhook credentials stay out of the unauthenticated inspection API and error messages.

BAD_URLS = [
    "ftp://hook:s3cret@127.0.0.1/hook/",
    "http://hook:s3cret@/hook/",
    "http://hook:s3cret@127.0.0.1:99999/hook/",
    "http://hook:s3cret@127.0.0.1:port/hook/",
    "http://hook:s3cret@[::1/hook/",
    "hook:s3cret@127.0.0.1/hook/",
]


def sandbox_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("cloudmails-sandbox"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_nothing_listens(port: int) -> None:
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_inspection_api_hides_the_webhook_password_and_signing_secret(hooked_sandbox, receiver):
    root = hooked_sandbox.url.replace("/v1", "/_sandbox")
    response = requests.get(f"{root}/webhook", timeout=5)
    assert response.status_code == 200
    assert "s3cret" not in response.text
    assert hooked_sandbox.webhook_signing_secret not in response.text
    assert "signing_secret" not in response.json()
    port = receiver.server.server_address[1]
    assert response.json()["url"] == f"http://hook:***@127.0.0.1:{port}/hook/"
    assert response.json()["attempts"][0]["result"] == 200


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hook:s3cret@example.test:8443/a/b?x=1",
            "https://hook:***@example.test:8443/a/b?x=1",
        ),
        ("http://hook:@example.test/", "http://hook:***@example.test/"),
        ("http://hook@example.test/", "http://hook@example.test/"),
        ("http://example.test/hook", "http://example.test/hook"),
        ("http://a%40b:p%3Aw@[::1]:9000/h", "http://a%40b:***@[::1]:9000/h"),
    ],
)
def test_inspection_api_shows_the_url_without_its_password(url, shown):
    with Sandbox(api_key=API_KEY) as sb:
        sb.configure_webhook(url)
        root = sb.url.replace("/v1", "/_sandbox")
        assert requests.get(f"{root}/webhook", timeout=5).json()["url"] == shown
        sb.configure_webhook(None)


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_webhook_url_fails_before_anything_starts(url):
    before = sandbox_threads()
    port = free_port()
    with pytest.raises(ValueError, match=r"webhook URL must be") as info:
        with Sandbox(api_key=API_KEY, port=port, webhook_url=url):
            pytest.fail("the sandbox started")  # pragma: no cover
    message = str(info.value)
    assert "s3cret" not in message
    assert "webhook URL must be http(s)://host[:port]/path" in message
    assert "s3cret" not in "".join(traceback.format_exception(info.value))  # nor chained
    assert sandbox_threads() == before
    assert_nothing_listens(port)


@pytest.mark.parametrize("url", BAD_URLS)
def test_configure_webhook_with_a_bad_url_changes_nothing(hooked_sandbox, receiver, url):
    with pytest.raises(ValueError, match=r"webhook URL must be") as info:
        hooked_sandbox.configure_webhook(url)
    assert "s3cret" not in str(info.value)
    assert hooked_sandbox.webhook_url == receiver.url
    hooked_sandbox.wait_idle()
    assert len(receiver.received) == 1  # no new ping


def test_inspection_api_rejects_a_bad_url_without_echoing_it(hooked_sandbox, receiver):
    root = hooked_sandbox.url.replace("/v1", "/_sandbox")
    response = requests.post(f"{root}/webhook", json={"url": BAD_URLS[0]}, timeout=5)
    assert response.status_code == 400
    assert "s3cret" not in response.text
    assert hooked_sandbox.webhook_url == receiver.url


def test_failed_start_stops_what_it_started(monkeypatch):
    before = sandbox_threads()
    sb = Sandbox(api_key=API_KEY, port=free_port())

    def broken() -> None:
        raise RuntimeError("no thread for you")

    monkeypatch.setattr(sb._sender, "start", broken)
    with pytest.raises(RuntimeError):
        sb.start()
    assert sandbox_threads() == before
    assert_nothing_listens(sb.port)
