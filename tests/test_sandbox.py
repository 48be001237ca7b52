"""The sandbox over real HTTP: endpoints, validation, auth, limits, fates, faults."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import requests

from django_cloudmails.limits import (
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
)
from django_cloudmails.sandbox import Sandbox

API_KEY = "test-key"
SIM = "simulator.cloudmails.test"


class Api:
    """A keep-alive session bound to one sandbox, with the API key set."""

    def __init__(self, sandbox: Sandbox, key: str | None = API_KEY) -> None:
        self.base = sandbox.url
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def post(self, path: str, payload: object = None, **kwargs: object):
        if payload is not None:
            kwargs["json"] = payload
        return self.session.post(self.base + path, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: object):
        return self.session.get(self.base + path, timeout=10, **kwargs)


@pytest.fixture
def api(sandbox):
    client = Api(sandbox)
    yield client
    client.session.close()


def message(**overrides: object) -> dict:
    payload = {
        "to": "customer@example.org",
        "from": "Shop <noreply@shop.example>",
        "subject": "Your order",
        "html": "<p>Thanks!</p>",
    }
    payload.update(overrides)
    return payload


def error_of(response: requests.Response) -> dict:
    return response.json()["error"]


# /send and GET /emails/{id}


def test_send_answers_message_id_and_sent(api):
    response = api.post("/send", message())
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "sent"
    assert body["message_id"].startswith("msg_")


def test_send_stores_the_payload(api, sandbox):
    payload = message(text="Thanks!", cc=["a@example.org"], custom_args={"id": 7})
    message_id = api.post("/send", payload).json()["message_id"]
    stored = sandbox.message(message_id)
    assert stored.payload == payload
    assert stored.to == "customer@example.org"
    assert sandbox.messages == [stored]


def test_get_email_returns_every_status_field(api, sandbox):
    message_id = api.post("/send", message()).json()["message_id"]
    sandbox.wait_idle()
    body = api.get(f"/emails/{message_id}").json()
    assert set(body) == {
        "message_id",
        "status",
        "created_at",
        "delivered_at",
        "bounce_reason",
        "opens",
        "clicks",
        "to",
    }
    assert body["status"] == "delivered"
    assert body["created_at"].endswith("Z")
    assert body["delivered_at"].endswith("Z")
    assert body["bounce_reason"] is None


def test_get_unknown_message_id_is_404(api):
    response = api.get("/emails/msg_nope")
    assert response.status_code == 404
    assert error_of(response)["code"] == 404


def test_reset_forgets_messages_and_requests(api, sandbox):
    api.post("/send", message())
    sandbox.reset()
    assert sandbox.messages == []
    assert sandbox.requests == []


def test_keep_requests_bounds_the_request_log():
    with Sandbox(api_key=API_KEY, keep_requests=2) as sb:
        client = Api(sb)
        for _ in range(5):
            client.post("/send", message())
        assert 2 <= len(sb.requests) <= 4
        assert sb.requests[-1].status == 200


def test_keep_requests_zero_records_nothing():
    with Sandbox(api_key=API_KEY, keep_requests=0) as sb:
        Api(sb).post("/send", message())
        assert sb.requests == []


def test_requests_are_recorded(api, sandbox):
    api.post("/send", message(), headers={"Idempotency-Key": "abc"})
    record = sandbox.requests[-1]
    assert (record.method, record.path, record.status) == ("POST", "/v1/send", 200)
    assert record.headers["idempotency-key"] == "abc"
    assert record.json == message()
    assert json.loads(record.body) == message()


# Validation


@pytest.mark.parametrize("field", ["to", "from", "subject", "html"])
def test_missing_required_field_is_400_naming_it(api, field):
    payload = message()
    del payload[field]
    response = api.post("/send", payload)
    assert response.status_code == 400
    assert error_of(response)["field"] == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", 42),
        ("from", ["a@shop.example"]),
        ("subject", None),
        ("html", {"p": 1}),
        ("text", 1),
        ("reply_to", True),
        ("cc", "a@example.org"),
        ("bcc", "a@example.org"),
        ("cc", [1]),
        ("attachments", {"filename": "a"}),
        ("custom_args", ["a"]),
        ("custom_args", {"nested": {"no": 1}}),
    ],
)
def test_wrong_type_is_400_naming_the_field(api, field, value):
    response = api.post("/send", message(**{field: value}))
    assert response.status_code == 400
    assert error_of(response)["field"] == field


def test_empty_html_is_400(api):
    response = api.post("/send", message(html=""))
    assert error_of(response)["field"] == "html"


def test_empty_subject_is_accepted(api):
    assert api.post("/send", message(subject="")).status_code == 200


def test_unknown_field_is_400_naming_it(api):
    response = api.post("/send", message(priority="high"))
    assert response.status_code == 400
    assert error_of(response)["field"] == "priority"


@pytest.mark.parametrize(
    "address",
    [
        "not-an-address",
        "a@",
        "@b.example",
        "a b@c.example",
        "a@b.example, c@d.example",
        "a..b@c.example",
        "Name <a@b.example",
        "a@-b.example",
        "a@b.example\n",
    ],
)
def test_invalid_address_is_400(api, address):
    response = api.post("/send", message(to=address))
    assert response.status_code == 400
    assert error_of(response)["field"] == "to"


@pytest.mark.parametrize("subject", ["Hi\nBcc: x@evil.example", "Hi\r", "\nHi"])
def test_subject_with_a_line_break_is_400(api, subject):
    response = api.post("/send", message(subject=subject))
    assert response.status_code == 400
    assert error_of(response)["field"] == "subject"


def test_unicode_domain_is_400_until_idna_encoded(api):
    assert api.post("/send", message(to="a@bücher.example")).status_code == 400
    assert api.post("/send", message(to="a@xn--bcher-kva.example")).status_code == 200


def test_attachment_content_type_may_carry_parameters(api):
    item = attachment(content_type='text/plain; charset="iso-8859-1"')
    assert api.post("/send", message(attachments=[item])).status_code == 200


def test_display_names_are_allowed(api):
    payload = message(to='"Doe, Jane" <jane@example.org>', reply_to="Help <h@shop.example>")
    assert api.post("/send", payload).status_code == 200


def attachment(**overrides: object) -> dict:
    item = {
        "filename": "a.txt",
        "content": base64.b64encode(b"hello").decode(),
        "content_type": "text/plain",
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not None}


def test_valid_attachments_are_accepted(api):
    inline = attachment(filename="logo.png", disposition="inline", content_id="logo")
    response = api.post("/send", message(attachments=[attachment(), inline]))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "item",
    [
        attachment(filename=None),
        attachment(content=None),
        attachment(content_type=None),
        attachment(content="not base64!"),
        attachment(content_type=5),
        attachment(disposition="inline"),
        attachment(disposition="sideways"),
        attachment(size=5),
        "a.txt",
        attachment(content_type="text"),
        attachment(filename="a.txt\r\nX-Injected: 1"),
    ],
    ids=[
        "no-filename",
        "no-content",
        "no-content-type",
        "bad-base64",
        "typed",
        "inline-without-content-id",
        "bad-disposition",
        "unknown-key",
        "not-object",
        "not-a-mime-type",
        "filename-line-break",
    ],
)
def test_bad_attachment_is_400(api, item):
    response = api.post("/send", message(attachments=[item]))
    assert response.status_code == 400
    assert error_of(response)["field"] == "attachments"


def test_malformed_json_is_400(api):
    response = api.post("/send", data=b'{"to": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in error_of(response)["message"]


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null", b""])
def test_non_object_body_is_400(api, body):
    response = api.post("/send", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_oversized_message_is_400(api):
    content = base64.b64encode(b"x" * (MAX_MESSAGE_BYTES * 3 // 4 + 10)).decode()
    payload = message(attachments=[attachment(content=content)])
    response = api.post("/send", payload)
    assert response.status_code == 400
    assert "limit" in error_of(response)["message"]


def test_oversized_request_is_400_before_the_body_is_read(sandbox):
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(MAX_REQUEST_BYTES + 1).encode() + b"\r\n\r\n{"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == 400


def test_oversized_request_gets_400_through_requests(api):
    body = b'{"to": "' + b"x" * (MAX_REQUEST_BYTES + 1) + b'"}'
    response = api.post("/send", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/nope", "/emails", "/emails/a/b"])
def test_unknown_path_is_404_json(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert error_of(response)["code"] == 404


def test_unknown_path_outside_v1_is_404_json(sandbox):
    response = requests.get(sandbox.url.replace("/v1", "/favicon.ico"), timeout=5)
    assert response.status_code == 404
    assert error_of(response)["code"] == 404


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/send", "POST"),
        ("PUT", "/send/batch", "POST"),
        ("DELETE", "/emails/msg_1", "GET"),
        ("PATCH", "/send", "POST"),
    ],
)
def test_wrong_method_is_405_with_allow(api, method, path, allow):
    response = api.session.request(method, api.base + path, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert error_of(response)["code"] == 405


# Auth, verified senders, rate limit


def test_missing_api_key_is_401(sandbox):
    response = Api(sandbox, key=None).post("/send", message())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == 401


def test_wrong_api_key_is_401(sandbox):
    response = Api(sandbox, key="wrong").get("/emails/msg_1")
    assert response.status_code == 401


def test_any_of_several_api_keys_is_accepted():
    with Sandbox(api_key=["old", "new"]) as sb:
        assert Api(sb, key="old").post("/send", message()).status_code == 200
        assert Api(sb, key="new").post("/send", message()).status_code == 200


def test_unverified_sender_is_403(api):
    response = api.post("/send", message(**{"from": "Evil <x@evil.example>"}))
    assert response.status_code == 403
    assert error_of(response) == {
        "code": 403,
        "message": "The sender address x@evil.example is not verified.",
    }


@pytest.mark.parametrize(
    "sender", ["SENDER@Example.com", "Bob <sender@example.com>", "news@SHOP.example"]
)
def test_verified_sender_matches_case_insensitively(api, sender):
    assert api.post("/send", message(**{"from": sender})).status_code == 200


def test_every_sender_is_verified_by_default():
    with Sandbox(api_key=API_KEY) as sb:
        assert Api(sb).post("/send", message(**{"from": "a@any.example"})).ok


def test_rate_limit_answers_429_with_retry_after():
    with Sandbox(api_key=API_KEY, rate_limit=1) as sb:
        client = Api(sb)
        assert client.post("/send", message()).status_code == 200
        response = client.post("/send", message())
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert error_of(response)["code"] == 429


def test_rate_limit_is_per_api_key():
    with Sandbox(api_key=["a", "b"], rate_limit=1) as sb:
        assert Api(sb, key="a").post("/send", message()).status_code == 200
        assert Api(sb, key="b").post("/send", message()).status_code == 200


# Batches


def test_batch_of_1001_is_400(api, sandbox):
    response = api.post("/send/batch", {"messages": [message()] * 1001})
    assert response.status_code == 400
    assert error_of(response)["field"] == "messages"
    assert sandbox.messages == []


def test_batch_of_1000_is_202_then_processed(api, sandbox):
    messages = [message(to=f"user{i}@example.org") for i in range(MAX_BATCH_MESSAGES)]
    response = api.post("/send/batch", {"messages": messages})
    assert response.status_code == 202
    body = response.json()
    assert body["batch_id"].startswith("bat_")
    assert [item["index"] for item in body["messages"]] == list(range(1000))
    assert len({item["message_id"] for item in body["messages"]}) == 1000
    sandbox.wait_idle()
    assert {m.status for m in sandbox.messages} == {"delivered"}
    assert all(m.batch_id == body["batch_id"] for m in sandbox.messages)


def test_batch_messages_start_queued(api, sandbox):
    sandbox.pause_processing()
    item = api.post("/send/batch", {"messages": [message()]}).json()["messages"][0]
    assert api.get(f"/emails/{item['message_id']}").json()["status"] == "queued"
    sandbox.resume_processing()
    sandbox.wait_idle()
    assert api.get(f"/emails/{item['message_id']}").json()["status"] == "delivered"


def test_batch_envelope_fills_missing_fields(api, sandbox):
    envelope = {"from": "news@shop.example", "subject": "Hi", "html": "<p>Hi</p>"}
    batch = {
        **envelope,
        "messages": [{"to": "a@example.org"}, {"to": "b@example.org", "subject": "Own"}],
    }
    items = api.post("/send/batch", batch).json()["messages"]
    first, second = (sandbox.message(i["message_id"]) for i in items)
    assert first.payload == {**envelope, "to": "a@example.org"}
    assert second.payload["subject"] == "Own"
    assert items[1]["to"] == "b@example.org"


def test_batch_errors_do_not_sink_the_others(api, sandbox):
    batch = {
        "messages": [
            message(),
            message(cc="x@example.org"),
            message(to="nope"),
            message(**{"from": "a@evil.example"}),
            "text",
            message(),
        ]
    }
    items = api.post("/send/batch", batch).json()["messages"]
    assert "message_id" in items[0]
    assert items[1]["error"] == {
        "code": 400,
        "message": "'cc' must be a list of strings.",
        "field": "cc",
    }
    assert items[2]["error"]["field"] == "to"
    assert items[3]["error"]["code"] == 403
    assert items[4]["error"]["code"] == 400
    assert "message_id" in items[5]
    assert len(sandbox.messages) == 2


@pytest.mark.parametrize(
    "batch",
    [
        {},
        {"messages": []},
        {"messages": "a"},
        {"messages": [message()], "to": "a@b.example"},
        {"messages": [message()], "cc": "a@b.example"},
        {"messages": [message()], "x": 1},
    ],
    ids=["no-messages", "empty", "not-list", "envelope-to", "envelope-type", "unknown"],
)
def test_bad_batch_envelope_is_a_whole_request_400(api, sandbox, batch):
    response = api.post("/send/batch", batch)
    assert response.status_code == 400
    assert "field" in error_of(response)
    assert sandbox.messages == []


# Fates


FATES = [
    ("delivered", "delivered", None, 0, 0, ["delivered"]),
    ("bounce", "bounced", "550 5.1.1 user unknown", 0, 0, ["bounced"]),
    ("softbounce", "bounced", "452 4.2.2 mailbox full", 0, 0, ["bounced"]),
    ("deferred", "deferred", None, 0, 0, []),
    ("complaint", "delivered", None, 0, 0, ["delivered", "complained"]),
    ("open", "delivered", None, 1, 0, ["delivered", "opened"]),
    ("click", "delivered", None, 1, 1, ["delivered", "opened", "clicked"]),
    ("unsubscribe", "delivered", None, 0, 0, ["delivered", "unsubscribed"]),
    ("reject", "failed", None, 0, 0, []),
]


@pytest.mark.parametrize("fate", FATES, ids=[fate[0] for fate in FATES])
def test_simulator_address_decides_the_fate(api, sandbox, fate):
    local, status, reason, opens, clicks, events = fate
    message_id = api.post("/send", message(to=f"{local}+7@{SIM}")).json()["message_id"]
    sandbox.wait_idle()
    body = api.get(f"/emails/{message_id}").json()
    assert (body["status"], body["bounce_reason"]) == (status, reason)
    assert (body["opens"], body["clicks"]) == (opens, clicks)
    assert (body["delivered_at"] is not None) == (status == "delivered")
    assert [e["event"] for e in sandbox.message(message_id).events] == events


def test_bounce_event_has_the_reference_fields_only(api, sandbox):
    message_id = api.post("/send", message(to=f"Bob <bounce@{SIM}>")).json()["message_id"]
    sandbox.wait_idle()
    (event,) = sandbox.message(message_id).events
    assert sorted(event) == ["custom_args", "event", "message_id", "recipient", "timestamp"]
    assert event["recipient"] == f"bounce@{SIM}"


def test_fates_follow_event_delay():
    with Sandbox(api_key=API_KEY, event_delay=0.01) as sb:
        message_id = Api(sb).post("/send", message(to=f"click@{SIM}")).json()["message_id"]
        sb.wait_idle()
        assert sb.message(message_id).clicks == 1


# Idempotency


def test_idempotency_key_replays_the_first_response(api, sandbox):
    headers = {"Idempotency-Key": "order-1"}
    first = api.post("/send", message(), headers=headers)
    second = api.post("/send", message(), headers=headers)
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(sandbox.messages) == 1


def test_idempotency_key_replays_batches(api, sandbox):
    headers = {"Idempotency-Key": "batch-1"}
    first = api.post("/send/batch", {"messages": [message()]}, headers=headers)
    second = api.post("/send/batch", {"messages": [message()]}, headers=headers)
    assert (second.status_code, second.content) == (202, first.content)
    assert len(sandbox.messages) == 1


def test_ignore_idempotency_processes_every_request_anew(api, sandbox):
    sandbox.faults.ignore_idempotency = True
    headers = {"Idempotency-Key": "order-2"}
    first = api.post("/send", message(), headers=headers)
    second = api.post("/send", message(), headers=headers)
    assert first.json()["message_id"] != second.json()["message_id"]
    assert "Idempotent-Replayed" not in second.headers
    assert len(sandbox.messages) == 2


def test_idempotency_keys_are_per_api_key():
    with Sandbox(api_key=["a", "b"]) as sb:
        headers = {"Idempotency-Key": "same"}
        first = Api(sb, key="a").post("/send", message(), headers=headers)
        second = Api(sb, key="b").post("/send", message(), headers=headers)
        assert first.json()["message_id"] != second.json()["message_id"]


# Faults


def test_fail_next_answers_500_then_recovers(api, sandbox):
    sandbox.faults.fail_next(1)
    response = api.post("/send", message())
    assert response.status_code == 500
    assert error_of(response)["code"] == 500
    assert api.post("/send", message()).status_code == 200
    assert len(sandbox.messages) == 1


def test_fail_next_with_status_503(api, sandbox):
    sandbox.faults.fail_next(2, status=503)
    assert [api.post("/send", message()).status_code for _ in range(3)] == [503, 503, 200]


def test_throttle_next_answers_429_with_retry_after(api, sandbox):
    sandbox.faults.throttle_next(1, retry_after=3)
    response = api.post("/send", message())
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")


def test_error_rate_one_fails_every_request(api, sandbox):
    sandbox.faults.error_rate = 1.0
    sandbox.faults.error_status = 503
    assert api.post("/send", message()).status_code == 503


def test_latency_still_answers(api, sandbox):
    sandbox.faults.latency = 0.01
    assert api.post("/send", message()).status_code == 200


def test_drop_next_closes_without_processing(api, sandbox):
    sandbox.faults.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        api.post("/send", message())
    assert sandbox.messages == []
    assert sandbox.requests[-1].outcome == "dropped"
    assert api.post("/send", message()).status_code == 200


def test_lose_next_stores_the_message_and_replays_on_retry(api, sandbox):
    sandbox.faults.lose_next(1)
    headers = {"Idempotency-Key": "lost-1"}
    with pytest.raises(requests.ConnectionError):
        api.post("/send", message(), headers=headers)
    (stored,) = sandbox.messages
    retry = api.post("/send", message(), headers=headers)
    assert retry.json()["message_id"] == stored.message_id
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.messages) == 1


def test_drop_rate_one_drops_every_request(api, sandbox):
    sandbox.faults.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        api.post("/send", message())
    assert sandbox.messages == []


def test_lose_response_rate_one_processes_without_answering(api, sandbox):
    sandbox.faults.lose_response_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        api.post("/send", message())
    assert len(sandbox.messages) == 1
    assert sandbox.requests[-1].outcome == "lost"


def test_script_answers_one_step_per_request_in_order(api, sandbox):
    sandbox.faults.script("lose", 500, 429, "drop", "ok")
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append(api.post("/send", message()).status_code)
        except requests.ConnectionError:
            outcomes.append(sandbox.requests[-1].outcome)
    assert outcomes == ["lost", 500, 429, "dropped", 200, 200]
    assert len(sandbox.messages) == 3  # the lost one was processed


def test_script_comes_before_the_other_switches(api, sandbox):
    sandbox.faults.fail_next(1, status=503)
    sandbox.faults.error_rate = 1.0
    sandbox.faults.script("ok", 400)
    statuses = [api.post("/send", message()).status_code for _ in range(3)]
    assert statuses == [200, 400, 503]


def test_script_refuses_an_unknown_step(sandbox):
    with pytest.raises(ValueError, match="script step"):
        sandbox.faults.script("explode")
    assert sandbox.faults.as_dict()["script"] == []


def test_inspection_sets_a_script_and_clear_forgets_it(api, sandbox):
    root = sandbox.url.replace("/v1", "/_sandbox")
    response = requests.post(f"{root}/faults", json={"script": ["lose", 500]}, timeout=5)
    assert response.json()["script"] == ["lose", 500]
    sandbox.faults.clear()
    assert api.post("/send", message()).status_code == 200


# Robustness


def test_server_survives_a_client_leaving_mid_body(api, sandbox):
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/send HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert api.post("/send", message()).status_code == 200


def test_garbage_request_line_gets_a_json_400(sandbox):
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["code"] == 400


def test_chunked_request_body_is_read(api):
    payload = json.dumps(message()).encode()
    response = api.post(
        "/send",
        data=iter([payload[:10], payload[10:]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200


def test_keep_alive_connection_serves_many_requests(api, sandbox):
    for _ in range(20):
        assert api.post("/send", message()).status_code == 200
    assert len({record.peer for record in sandbox.requests}) == 1


def test_stop_leaves_no_threads_behind():
    with Sandbox(api_key=API_KEY) as sb:
        client = Api(sb)
        client.post("/send", message(to=f"click@{SIM}"))
        sb.wait_idle()
    client.session.close()
    names = [t.name for t in threading.enumerate()]
    assert not [name for name in names if name.startswith("cloudmails-sandbox")]


# Inspection API


def test_inspection_lists_and_shows_messages(api, sandbox):
    message_id = api.post("/send", message()).json()["message_id"]
    root = sandbox.url.replace("/v1", "/_sandbox")
    listing = requests.get(f"{root}/messages", timeout=5).json()
    assert [m["message_id"] for m in listing] == [message_id]
    one = requests.get(f"{root}/messages/{message_id}", timeout=5).json()
    assert one["payload"] == message()


def test_inspection_unknown_message_is_404(sandbox):
    root = sandbox.url.replace("/v1", "/_sandbox")
    response = requests.get(f"{root}/messages/msg_nope", timeout=5)
    assert response.status_code == 404
    assert error_of(response)["code"] == 404


def test_inspection_delete_resets(api, sandbox):
    api.post("/send", message())
    root = sandbox.url.replace("/v1", "/_sandbox")
    assert requests.delete(f"{root}/messages", timeout=5).json() == {"deleted": 1}
    assert sandbox.messages == []


def test_inspection_lists_requests_with_their_message_counts_and_no_secrets(api, sandbox):
    api.post("/send", message())
    api.post("/send/batch", {"messages": [message(), message()]})
    root = sandbox.url.replace("/v1", "/_sandbox")

    listing = requests.get(f"{root}/requests", timeout=5).json()

    assert [(r["method"], r["path"], r["status"], r["messages"]) for r in listing] == [
        ("POST", "/v1/send", 200, 1),
        ("POST", "/v1/send/batch", 202, 2),
    ]
    assert listing[0]["received_at"] <= listing[1]["received_at"]
    assert API_KEY not in json.dumps(listing)


def test_inspection_sets_faults(api, sandbox):
    root = sandbox.url.replace("/v1", "/_sandbox")
    response = requests.post(f"{root}/faults", json={"fail_next": 1, "latency": 0.0}, timeout=5)
    assert response.json()["fail_next"] == 1
    assert api.post("/send", message()).status_code == 500


def test_inspection_rejects_unknown_fault(sandbox):
    root = sandbox.url.replace("/v1", "/_sandbox")
    assert requests.post(f"{root}/faults", json={"nope": 1}, timeout=5).status_code == 400


# The reference's own examples, run against the sandbox


def test_reference_curl_example(sandbox):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{sandbox.url}/send",
            "-H",
            f"Authorization: Bearer {API_KEY}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(
                {
                    "to": "recipient@example.com",
                    "from": "sender@example.com",
                    "subject": "Test Email",
                    "html": "<html><body><h1>Hello</h1><p>This is a test email.</p></body></html>",
                    "text": "Hello, this is a test email.",
                }
            ),
        ],
        capture_output=True,
        check=True,
        timeout=10,
    )
    assert json.loads(result.stdout)["status"] == "sent"


def test_reference_python_example(sandbox):
    api_key = API_KEY
    base_url = sandbox.url

    def send_email(to, subject, html_body, text_body=None):
        payload = {"to": to, "from": "sender@example.com", "subject": subject, "html": html_body}
        if text_body:
            payload["text"] = text_body
        response = requests.post(
            f"{base_url}/send",
            json=payload,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        )
        return response.json()

    result = send_email(
        to="recipient@example.com",
        subject="Hello from CloudMails",
        html_body="<h1>Hello</h1><p>This is a test.</p>",
    )
    assert result["status"] == "sent"
    assert sandbox.message(result["message_id"]).to == "recipient@example.com"


# The command line


def test_command_line_serves_until_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "django_cloudmails.sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "sandbox-key" in line
        assert "whsec_" in line
        url = line.split()[3].rstrip(";")
        response = requests.post(
            f"{url}/send",
            json=message(),
            timeout=5,
            headers={"Authorization": "Bearer sandbox-key"},
        )
        assert response.status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_command_line_never_echoes_a_key_or_secret_it_was_given():
    given_secret = "whsec_" + "A" * 32
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django_cloudmails.sandbox",
            "--port",
            "0",
            "--api-key",
            "my-own-key",
            "--webhook-signing-secret",
            given_secret,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "CloudMails sandbox at http://127.0.0.1:" in line
        assert "my-own-key" not in line
        assert given_secret not in line
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()
