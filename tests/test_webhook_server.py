"""The webhook view under a real WSGI server (gunicorn): chunked bodies, which Django's
own request stream reads as empty, and bodies nested too deep for Python's parser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import GunicornServer
from tests.factories import basic_auth, event_body

PATH = "/cloudmails/webhook/"
HEADERS = {"Authorization": basic_auth("hook:s3cret"), "Content-Type": "application/json"}
LIMIT = 64 * 1024  # the server's WEBHOOK_MAX_BODY_BYTES
EVENTS = "cloudmails_deliveryevent"


@pytest.fixture
def server(gunicorn_server: GunicornServer) -> GunicornServer:
    """The module's gunicorn, with no event stored."""
    gunicorn_server.query(f"DELETE FROM {EVENTS}")  # noqa: S608
    return gunicorn_server


def chunks(body: bytes, size: int) -> Iterator[bytes]:
    """``body`` in pieces of ``size`` bytes: http.client sends them chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def stored(server: GunicornServer) -> list[tuple[Any, ...]]:
    return server.query(f"SELECT event, message_id FROM {EVENTS} ORDER BY message_id")  # noqa: S608


def test_chunked_event_is_read_and_recorded(server: GunicornServer) -> None:
    body = json.dumps(event_body("delivered", message_id="msg_chunked")).encode()
    status, answer = server.post(PATH, chunks(body, 7), HEADERS)
    assert (status, answer) == (200, {"received": 1, "new": 1, "invalid": []})
    assert stored(server) == [("delivered", "msg_chunked")]


def test_chunked_list_is_read_whole(server: GunicornServer) -> None:
    events = [event_body("opened", message_id=f"msg_{n:03}") for n in range(150)]
    body = json.dumps(events).encode()
    assert len(body) > 16 * 1024  # several reads of the server's input
    status, answer = server.post(PATH, chunks(body, 1000), HEADERS)
    assert (status, answer["received"], answer["new"]) == (200, 150, 150)
    assert len(stored(server)) == 150


def test_chunked_body_over_the_limit_is_413_and_records_nothing(server: GunicornServer) -> None:
    events = [event_body("opened", message_id=f"msg_{n:04}") for n in range(1000)]
    body = json.dumps(events).encode()
    assert len(body) > LIMIT
    status, answer = server.post(PATH, chunks(body, 4096), HEADERS)
    assert status == 413
    assert str(LIMIT) in answer["error"]
    assert stored(server) == []


def test_content_length_body_still_works(server: GunicornServer) -> None:
    body = json.dumps(event_body("delivered", message_id="msg_plain")).encode()
    status, _ = server.post(PATH, body, HEADERS)
    assert status == 200
    assert stored(server) == [("delivered", "msg_plain")]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_nested_past_the_recursion_limit_is_400_not_500(
    server: GunicornServer, chunked: bool
) -> None:
    body = b"[" * 20_000 + b"]" * 20_000
    status, answer = server.post(PATH, chunks(body, 4096) if chunked else body, HEADERS)
    assert (status, answer) == (400, {"error": "The body is nested more than 64 levels deep."})
    assert stored(server) == []


def test_event_nested_past_the_bound_is_400(server: GunicornServer) -> None:
    deep: Any = "leaf"
    for _ in range(70):
        deep = {"k": deep}
    body = json.dumps(event_body("delivered", custom_args=deep)).encode()
    status, answer = server.post(PATH, body, HEADERS)
    assert status == 400
    assert "nested more than 64" in answer["error"]
