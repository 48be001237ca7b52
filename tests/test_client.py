"""CloudMailsClient against the running sandbox, over real HTTP."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from typing import Any

import pytest
import requests
import urllib3

from django_cloudmails.client import CloudMailsClient, RawJSON, iter_batches
from django_cloudmails.exceptions import (
    CloudMailsBadResponse,
    CloudMailsBatchTooLarge,
    CloudMailsError,
    CloudMailsInvalidRequest,
    CloudMailsNotFound,
    CloudMailsRateLimited,
    CloudMailsSenderNotVerified,
    CloudMailsServerError,
    CloudMailsTimeout,
    CloudMailsTransportError,
    CloudMailsUnauthorized,
)
from django_cloudmails.retry import RetryPolicy
from tests.conftest import API_KEY


def message(to: str = "delivered@simulator.cloudmails.test", **extra: Any) -> dict[str, Any]:
    return {
        "to": to,
        "from": "Shop <noreply@shop.example>",
        "subject": "Hello",
        "html": "<p>Hello</p>",
        **extra,
    }


@pytest.fixture
def client(sandbox: Any) -> Any:
    with CloudMailsClient(API_KEY, api_url=sandbox.url, timeout=5) as c:
        yield c


def no_sleep_policy(attempts: int = 3) -> RetryPolicy:
    waits: list[float] = []
    return RetryPolicy(attempts=attempts, backoff=0.01, sleep=waits.append)


def test_send_returns_the_message_id_and_status(client: Any, sandbox: Any) -> None:
    result = client.send(message(text="Hello"))

    assert result.status == "sent"
    assert result.attempts == 1
    stored = sandbox.message(result.message_id)
    assert stored.payload["text"] == "Hello"
    assert stored.payload["from"] == "Shop <noreply@shop.example>"


def test_send_authenticates_with_a_bearer_key(client: Any, sandbox: Any) -> None:
    client.send(message())

    assert sandbox.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


def test_send_passes_the_idempotency_key(client: Any, sandbox: Any) -> None:
    result = client.send(message(), idempotency_key="cloudmails-1")

    assert sandbox.message(result.message_id).idempotency_key == "cloudmails-1"


def test_send_with_the_same_idempotency_key_sends_once(client: Any, sandbox: Any) -> None:
    first = client.send(message(), idempotency_key="cloudmails-2")
    second = client.send(message(), idempotency_key="cloudmails-2")

    assert first.message_id == second.message_id
    assert len(sandbox.messages) == 1


def test_send_reuses_one_connection(
    client: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects: list[object] = []
    original = urllib3.connection.HTTPConnection.connect

    def counting_connect(self: Any) -> None:
        connects.append(self)
        original(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "connect", counting_connect)
    for _ in range(3):
        client.send(message())

    assert len(connects) == 1


def test_invalid_request_carries_the_api_message_and_field(client: Any) -> None:
    with pytest.raises(CloudMailsInvalidRequest) as raised:
        client.send(message(cc="not-a-list@shop.example"))

    assert raised.value.status_code == 400
    assert raised.value.field == "cc"
    assert "cc" in str(raised.value)
    assert not raised.value.retryable


def test_missing_required_field_is_an_invalid_request(client: Any) -> None:
    payload = message()
    del payload["html"]
    with pytest.raises(CloudMailsInvalidRequest) as raised:
        client.send(payload)

    assert raised.value.field == "html"


def test_wrong_api_key_is_unauthorized(sandbox: Any) -> None:
    with CloudMailsClient("wrong-key", api_url=sandbox.url) as client:
        with pytest.raises(CloudMailsUnauthorized) as raised:
            client.send(message())

    assert raised.value.status_code == 401
    assert not raised.value.retryable


def test_unverified_sender_is_refused(client: Any) -> None:
    with pytest.raises(CloudMailsSenderNotVerified) as raised:
        client.send(message(**{"from": "someone@elsewhere.example"}))

    assert raised.value.status_code == 403


def test_rate_limit_carries_retry_after(client: Any, sandbox: Any) -> None:
    sandbox.faults.throttle_next(1, retry_after=7)
    with pytest.raises(CloudMailsRateLimited) as raised:
        client.send(message())

    assert raised.value.retry_after == 7
    assert raised.value.retryable


def test_server_error_is_retryable(client: Any, sandbox: Any) -> None:
    sandbox.faults.fail_next(1, status=503)
    with pytest.raises(CloudMailsServerError) as raised:
        client.send(message())

    assert raised.value.status_code == 503
    assert raised.value.retryable


def test_dropped_connection_is_a_transport_error(client: Any, sandbox: Any) -> None:
    sandbox.faults.drop_next(1)
    with pytest.raises(CloudMailsTransportError) as raised:
        client.send(message())

    assert raised.value.retryable
    assert sandbox.messages == []


def test_unreachable_api_is_a_transport_error() -> None:
    with CloudMailsClient("k", api_url="http://127.0.0.1:9/v1", timeout=2) as client:
        with pytest.raises(CloudMailsTransportError):
            client.send(message())


# Which failures leave the outcome unknown.


def test_a_connection_that_never_opened_is_a_definite_failure(unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}/v1"
    with CloudMailsClient("k", api_url=url, retry=no_sleep_policy(2)) as client:
        with pytest.raises(CloudMailsTransportError) as raised:
            client.send(message())

    assert (raised.value.ambiguous, raised.value.outcome_unknown) == (False, False)
    assert raised.value.attempts == 2


@pytest.mark.parametrize("fault", ["drop", "lose"])
def test_a_connection_closed_after_sending_leaves_the_outcome_unknown(
    client: Any, sandbox: Any, fault: str
) -> None:
    sandbox.faults.script(fault)
    with pytest.raises(CloudMailsTransportError) as raised:
        client.send(message())

    assert (raised.value.ambiguous, raised.value.outcome_unknown) == (True, True)


def test_a_read_timeout_leaves_the_outcome_unknown(client: Any, sandbox: Any) -> None:
    sandbox.faults.latency = 0.5
    client.timeout = 0.05
    with pytest.raises(CloudMailsTimeout) as raised:
        client.send(message())

    assert raised.value.outcome_unknown


@pytest.mark.parametrize("status", [400, 429, 500, 503])
def test_an_http_error_status_is_a_definite_answer(client: Any, sandbox: Any, status: int) -> None:
    sandbox.faults.script(status)
    with pytest.raises(CloudMailsError) as raised:
        client.send(message())

    assert (raised.value.ambiguous, raised.value.outcome_unknown) == (False, False)


@pytest.mark.parametrize("later", [500, 429, 400])
def test_a_refusal_after_a_lost_response_leaves_the_outcome_unknown(
    sandbox: Any, later: int
) -> None:
    sandbox.faults.script("lose", later)
    with CloudMailsClient(API_KEY, api_url=sandbox.url, retry=no_sleep_policy(2)) as client:
        with pytest.raises(CloudMailsError) as raised:
            client.send(message(), idempotency_key="cloudmails-k")

    assert raised.value.status_code == later
    assert raised.value.outcome_unknown
    assert raised.value.attempts == 2
    assert len(sandbox.messages) == 1


def test_refusals_of_every_attempt_stay_definite(sandbox: Any) -> None:
    """Only an attempt that may have reached the API makes the outcome unknown."""
    policy = no_sleep_policy(2)
    sandbox.faults.script(500, 500)
    with CloudMailsClient(API_KEY, api_url=sandbox.url, retry=policy) as client:
        with pytest.raises(CloudMailsServerError) as raised:
            client.send(message())

    assert not raised.value.outcome_unknown


def test_slow_api_is_a_timeout(client: Any, sandbox: Any) -> None:
    sandbox.faults.latency = 0.5
    client.timeout = 0.05
    with pytest.raises(CloudMailsTimeout):
        client.send(message())


def test_retry_policy_retries_server_errors(sandbox: Any) -> None:
    sandbox.faults.fail_next(2, status=500)
    with CloudMailsClient(API_KEY, api_url=sandbox.url, retry=no_sleep_policy()) as client:
        result = client.send(message())

    assert result.attempts == 3
    assert len(sandbox.messages) == 1


def test_retry_policy_honours_retry_after(sandbox: Any) -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=2, backoff=0.01, sleep=waits.append)
    sandbox.faults.throttle_next(1, retry_after=3)
    with CloudMailsClient(API_KEY, api_url=sandbox.url, retry=policy) as client:
        client.send(message())

    assert waits == [3.0]


def test_retry_after_lost_response_sends_once(sandbox: Any) -> None:
    sandbox.faults.lose_next(1)
    with CloudMailsClient(API_KEY, api_url=sandbox.url, retry=no_sleep_policy()) as client:
        result = client.send(message(), idempotency_key="cloudmails-lost")

    assert result.attempts == 2
    assert [m.message_id for m in sandbox.messages] == [result.message_id]


def test_retry_policy_gives_up_and_reports_attempts(sandbox: Any) -> None:
    sandbox.faults.fail_next(5, status=500)
    with CloudMailsClient(API_KEY, api_url=sandbox.url, retry=no_sleep_policy(3)) as client:
        with pytest.raises(CloudMailsServerError) as raised:
            client.send(message())

    assert raised.value.attempts == 3


def test_client_errors_are_never_retried(sandbox: Any) -> None:
    with CloudMailsClient("wrong", api_url=sandbox.url, retry=no_sleep_policy()) as client:
        with pytest.raises(CloudMailsUnauthorized) as raised:
            client.send(message())

    assert raised.value.attempts == 1
    assert len(sandbox.requests) == 1


def test_send_batch_returns_one_item_per_message_in_order(client: Any) -> None:
    result = client.send_batch(
        [message(f"delivered+{i}@simulator.cloudmails.test") for i in range(3)]
    )

    assert result.batch_id
    assert [item.index for item in result.items] == [0, 1, 2]
    assert [item.to for item in result.items] == [
        f"delivered+{i}@simulator.cloudmails.test" for i in range(3)
    ]
    assert all(item.accepted and item.message_id for item in result.items)


def test_send_batch_reports_a_bad_message_without_sinking_the_others(client: Any) -> None:
    bad = message(cc="not-a-list")
    result = client.send_batch([message(), bad, message()])

    assert [item.accepted for item in result.items] == [True, False, True]
    assert result.items[1].error is not None
    assert result.items[1].error.code == 400
    assert result.items[1].error.field == "cc"


def test_send_batch_applies_envelope_defaults(client: Any, sandbox: Any) -> None:
    bare = {"to": "delivered@simulator.cloudmails.test", "subject": "Hi", "html": "<p>Hi</p>"}
    result = client.send_batch([bare], defaults={"from": "noreply@shop.example"})
    sandbox.wait_idle()

    assert sandbox.message(result.items[0].message_id).payload["from"] == "noreply@shop.example"


def test_an_encoded_message_is_sent_as_it_is(client: Any, sandbox: Any) -> None:
    text = json.dumps(message(subject="Grüße"))

    result = client.send(RawJSON(text))
    sandbox.wait_idle()

    assert sandbox.requests[-1].body.decode() == text
    assert sandbox.message(result.message_id).payload["subject"] == "Grüße"


def test_send_batch_takes_encoded_and_plain_messages_with_defaults(
    client: Any, sandbox: Any
) -> None:
    bare = {"to": "delivered@simulator.cloudmails.test", "subject": "Hi", "html": "<p>Hi</p>"}
    encoded = RawJSON.encode({**bare, "subject": "Encoded"})

    result = client.send_batch(
        [encoded, bare], defaults={"from": "noreply@shop.example", "messages": "ignored"}
    )
    sandbox.wait_idle()

    body = json.loads(sandbox.requests[-1].body)
    assert body == {
        "from": "noreply@shop.example",
        "messages": [{**bare, "subject": "Encoded"}, bare],
    }
    assert [item.accepted for item in result.items] == [True, True]


def test_send_batch_refuses_more_than_1000_before_any_request(client: Any, sandbox: Any) -> None:
    with pytest.raises(CloudMailsBatchTooLarge, match="1001"):
        client.send_batch([message()] * 1001)

    assert sandbox.requests == []


def test_send_batch_of_1000_is_accepted(client: Any, sandbox: Any) -> None:
    result = client.send_batch([message(f"u{i}@example.org") for i in range(1000)])
    sandbox.wait_idle()

    assert len(result.items) == 1000
    assert len({item.message_id for item in result.items}) == 1000


def test_iter_batches_splits_into_api_sized_chunks() -> None:
    chunks = list(iter_batches(list(range(2500))))

    assert [len(chunk) for chunk in chunks] == [1000, 1000, 500]
    assert [n for chunk in chunks for n in chunk] == list(range(2500))


def test_iter_batches_refuses_oversized_chunks() -> None:
    with pytest.raises(ValueError, match="1000"):
        list(iter_batches([1], size=1001))


def test_get_email_follows_the_simulated_fate(client: Any, sandbox: Any) -> None:
    sent = client.send(message("bounce@simulator.cloudmails.test"))
    sandbox.wait_idle()

    status = client.get_email(sent.message_id)
    assert status.message_id == sent.message_id
    assert status.status == "bounced"
    assert status.bounce_reason
    assert status.created_at is not None
    assert status.created_at.tzinfo is not None


def test_get_email_counts_opens_and_clicks(client: Any, sandbox: Any) -> None:
    sent = client.send(message("click@simulator.cloudmails.test"))
    sandbox.wait_idle()

    status = client.get_email(sent.message_id)
    assert (status.status, status.opens, status.clicks) == ("delivered", 1, 1)
    assert status.delivered_at is not None


def test_get_email_of_unknown_id_is_not_found(client: Any) -> None:
    with pytest.raises(CloudMailsNotFound):
        client.get_email("msg_unknown")


def test_api_key_never_appears_in_repr_errors_or_logs(
    sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-very-secret-value"
    caplog.set_level(logging.DEBUG)
    with CloudMailsClient(secret, api_url=sandbox.url) as client:
        with pytest.raises(CloudMailsUnauthorized) as raised:
            client.send(message())
        text = repr(client) + str(raised.value) + repr(raised.value)

    assert secret not in text
    assert secret not in caplog.text


def test_client_needs_an_api_key() -> None:
    with pytest.raises(ValueError, match="API key"):
        CloudMailsClient("")


def test_client_closes_only_a_session_it_created(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = requests.Session()
    closed: list[bool] = []
    monkeypatch.setattr(session, "close", lambda: closed.append(True))
    with CloudMailsClient(API_KEY, api_url=sandbox.url, session=session) as client:
        client.send(message())

    assert closed == []


def test_client_closes_the_session_it_created(sandbox: Any) -> None:
    client = CloudMailsClient(API_KEY, api_url=sandbox.url)
    closed: list[bool] = []
    client.session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    client.close()

    assert closed == [True]


def test_repeated_sends_each_carry_their_own_body_and_key(client: Any, sandbox: Any) -> None:
    first = client.send(message("a@example.org"), idempotency_key="key-a")
    second = client.send(message("b@example.org"), idempotency_key="key-b")
    third = client.send(message("c@example.org"))

    stored = [sandbox.message(r.message_id) for r in (first, second, third)]
    assert [m.to for m in stored] == ["a@example.org", "b@example.org", "c@example.org"]
    assert [m.idempotency_key for m in stored] == ["key-a", "key-b", None]


def test_a_session_given_by_the_caller_keeps_its_own_headers(sandbox: Any) -> None:
    session = requests.Session()
    session.headers["X-Trace"] = "abc"
    with CloudMailsClient(API_KEY, api_url=sandbox.url, session=session) as client:
        client.send(message(), idempotency_key="key-1")

    headers = sandbox.requests[-1].headers
    assert headers["x-trace"] == "abc"
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["idempotency-key"] == "key-1"
    session.close()


def test_client_takes_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with CloudMailsClient("k", api_url="https://api.cloudmails.eu/v1") as client:
        assert client.session.proxies["https"] == "http://proxy.internal:3128"


def test_client_honours_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with CloudMailsClient("k", api_url="http://127.0.0.1:8025/v1") as client:
        assert "http" not in client.session.proxies


def test_client_takes_the_ca_bundle_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/internal-ca.pem")
    with CloudMailsClient("k") as client:
        assert client.session.verify == "/etc/ssl/internal-ca.pem"


def test_client_module_imports_nothing_from_django() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import django_cloudmails.client, django_cloudmails.sandbox; "
        "print(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _CannedHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's canned status and body."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.server.canned  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def canned_api() -> Any:
    """A local HTTP server answering what a test sets in ``.canned``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
    server.canned = (200, b"{}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"message_id": null}',
        b'{"message_id": 42}',
        b"[]",
        b"not json",
    ],
)
def test_unreadable_send_response_is_a_bad_response(canned_api: Any, body: bytes) -> None:
    canned_api.canned = (200, body)
    url = f"http://127.0.0.1:{canned_api.server_port}/v1"
    with CloudMailsClient("k", api_url=url) as client:
        with pytest.raises(CloudMailsBadResponse, match="POST /send") as raised:
            client.send(message())

    assert not raised.value.retryable
    assert raised.value.outcome_unknown


@pytest.mark.parametrize(
    "entries",
    [
        [{"index": 0, "message_id": "m0"}],
        [{"index": 1, "message_id": "m1"}, {"index": 0, "message_id": "m0"}],
        [{"index": 0, "message_id": "m0"}, {"index": 0, "message_id": "m0"}],
        [{"index": -1, "message_id": "m"}, {"index": 0, "message_id": "m0"}],
        [{"index": 0, "message_id": "m0"}, "oops"],
        [{"index": 0}, {"index": 1, "message_id": "m1"}],
    ],
)
def test_batch_response_that_does_not_answer_each_message_in_order_is_refused(
    canned_api: Any, entries: list[Any]
) -> None:
    canned_api.canned = (202, json.dumps({"batch_id": "b", "messages": entries}).encode())
    url = f"http://127.0.0.1:{canned_api.server_port}/v1"
    with CloudMailsClient("k", api_url=url) as client:
        with pytest.raises(CloudMailsBadResponse, match="send/batch"):
            client.send_batch([message(), message()])


def test_status_response_without_a_status_is_a_bad_response(canned_api: Any) -> None:
    canned_api.canned = (200, b'{"message_id": "msg_1"}')
    url = f"http://127.0.0.1:{canned_api.server_port}/v1"
    with CloudMailsClient("k", api_url=url) as client:
        with pytest.raises(CloudMailsBadResponse, match="GET /emails/msg_1"):
            client.get_email("msg_1")
