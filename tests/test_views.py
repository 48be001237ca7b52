"""The webhook view through Django's test client."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_cloudmails import signing
from django_cloudmails.models import Delivery, DeliveryEvent
from tests.factories import basic_auth, event_body

pytestmark = pytest.mark.django_db

AUTH = basic_auth("hook:s3cret")


def post(client: Client, body: Any, *, auth: str | None = AUTH, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if auth is not None:
        headers["Authorization"] = auth
    return client.post(
        reverse("cloudmails:webhook"), data, content_type="application/json", headers=headers
    )


@pytest.fixture
def delivery() -> Delivery:
    return Delivery.objects.create(
        message_id="msg_1", status="sent", to_email="someone@example.com", from_email="a@b.c"
    )


def test_get_is_405_with_allow_header(client: Client) -> None:
    response = client.get(reverse("cloudmails:webhook"))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "error" in response.json()


def test_missing_credentials_are_401_with_a_basic_challenge(client: Client) -> None:
    response = post(client, event_body("opened"), auth=None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="cloudmails"'


def test_wrong_password_is_401_and_records_nothing(client: Client, delivery: Delivery) -> None:
    wrong = "Basic " + base64.b64encode(b"hook:nope").decode()
    assert post(client, event_body("opened"), auth=wrong).status_code == 401
    assert not DeliveryEvent.objects.exists()


def test_unauthenticated_malformed_body_is_401_not_400(client: Client) -> None:
    assert post(client, b"{nope", auth=None).status_code == 401


def test_rotation_list_accepts_the_new_pair(client: Client, settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "WEBHOOK_SECRET": ["hook:old", "hook:new"]}
    new = "Basic " + base64.b64encode(b"hook:new").decode()
    assert post(client, {"event": "ping"}, auth=new).status_code == 200


def test_ping_is_200_and_changes_nothing(client: Client) -> None:
    response = post(client, {"event": "ping", "timestamp": "2026-05-19T14:30:00Z"})
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert not DeliveryEvent.objects.exists()


def test_event_is_recorded_and_counted(client: Client, delivery: Delivery) -> None:
    response = post(client, event_body("opened"), **{"webhook-id": "evt_1"})
    assert (response.status_code, response.json()) == (
        200,
        {"received": 1, "new": 1, "invalid": []},
    )
    delivery.refresh_from_db()
    assert delivery.opens == 1


def test_redelivered_event_is_200_with_nothing_new(client: Client, delivery: Delivery) -> None:
    post(client, event_body("opened"), **{"webhook-id": "evt_1"})
    response = post(client, event_body("opened"), **{"webhook-id": "evt_1"})
    assert response.json() == {"received": 1, "new": 0, "invalid": []}


def test_list_of_every_event_type_is_recorded(client: Client, delivery: Delivery) -> None:
    names = ["delivered", "opened", "clicked", "unsubscribed", "complained", "bounced"]
    response = post(client, [event_body(name) for name in names], **{"webhook-id": "evt_list"})
    assert response.json() == {"received": 6, "new": 6, "invalid": []}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.opens, delivery.clicks) == ("bounced", 1, 1)


def test_unreadable_lone_event_is_400_json_and_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="django_cloudmails"):
        response = post(client, event_body(message_id=""))
    assert response.status_code == 400
    assert response.json() == {"error": "'message_id' must not be empty."}
    assert "'message_id' must not be empty" in caplog.text
    assert not DeliveryEvent.objects.exists()


def test_unreadable_item_of_a_list_is_reported_and_logged_the_rest_recorded(
    client: Client, delivery: Delivery, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="django_cloudmails"):
        response = post(client, [event_body("opened"), {"event": "opened"}])
    assert (response.status_code, response.json()) == (
        200,
        {"received": 1, "new": 1, "invalid": [{"index": 1, "error": "missing 'message_id'."}]},
    )
    assert "events[1]: missing 'message_id'" in caplog.text
    assert list(DeliveryEvent.objects.values_list("event", flat=True)) == ["opened"]


def test_list_of_which_nothing_can_be_read_is_400_naming_each_item(client: Client) -> None:
    response = post(client, [{"event": "opened"}, 3])
    assert response.status_code == 400
    assert response.json()["invalid"] == [
        {"index": 0, "error": "missing 'message_id'."},
        {"index": 1, "error": "an event must be a JSON object."},
    ]
    assert not DeliveryEvent.objects.exists()


def test_oversized_body_is_413(client: Client, settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "WEBHOOK_MAX_BODY_BYTES": 100}
    response = post(client, event_body(padding="x" * 200))
    assert response.status_code == 413
    assert "error" in response.json()


def chunked_request(body: bytes, *, terminated: bool) -> Any:
    """A request as a WSGI server hands over a chunked body: no Content-Length."""
    from django.test import RequestFactory

    request = RequestFactory().post("/", b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
    request.META["wsgi.input"] = io.BytesIO(body)
    if terminated:
        request.META["wsgi.input_terminated"] = True
    return request


def test_chunked_body_is_read_from_a_server_that_terminates_its_input() -> None:
    from django_cloudmails.views import read_body

    body = json.dumps([event_body()] * 50).encode()
    assert read_body(chunked_request(body, terminated=True), 10_000) == body


def test_chunked_body_past_the_limit_is_413_after_a_bounded_read() -> None:
    from django_cloudmails.views import read_body
    from django_cloudmails.webhooks import WebhookError

    request = chunked_request(b"x" * 10_000, terminated=True)
    with pytest.raises(WebhookError) as info:
        read_body(request, 100)
    assert info.value.status == 413
    assert request.META["wsgi.input"].tell() <= 101


def test_chunked_body_on_a_server_that_cannot_give_it_is_411_saying_why() -> None:
    from django_cloudmails.views import read_body
    from django_cloudmails.webhooks import WebhookError

    with pytest.raises(WebhookError) as info:
        read_body(chunked_request(b"{}", terminated=False), 100)
    assert info.value.status == 411
    assert "Content-Length" in info.value.reason


def test_secrets_and_authorization_are_never_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Basic " + base64.b64encode(b"hook:wrong-pass").decode()
    with caplog.at_level(logging.DEBUG):
        post(client, event_body("opened"), auth=wrong)
        post(client, b"{bad")
    assert "s3cret" not in caplog.text
    assert "wrong-pass" not in caplog.text
    assert wrong.split()[1] not in caplog.text


def test_database_failure_is_503_so_the_sender_retries(
    client: Client, delivery: Delivery, settings: Any
) -> None:
    settings.ADMINS = []  # Django mails 5xx responses to ADMINS; not this test's concern
    with mock.patch(
        "django_cloudmails.views.record_events", side_effect=OperationalError("db down")
    ):
        response = post(client, event_body("opened"))
    assert response.status_code == 503
    assert "error" in response.json()


# Signatures through the view.


@pytest.fixture
def signing_secret(settings: Any) -> str:
    secret = signing.generate_secret()
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "WEBHOOK_SIGNING_SECRET": secret}
    return secret


def signed(secret: str, body: bytes, stamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    return {
        "webhook-id": "evt_signed",
        "webhook-timestamp": str(stamp),
        "webhook-signature": signing.sign(secret, "evt_signed", stamp, body),
    }


def test_signed_event_is_accepted(client: Client, signing_secret: str, delivery: Delivery) -> None:
    body = json.dumps(event_body("opened")).encode()
    assert post(client, body, **signed(signing_secret, body)).status_code == 200


def test_unsigned_event_is_403_when_signing_is_required(
    client: Client, signing_secret: str
) -> None:
    assert post(client, event_body("opened")).status_code == 403


def test_replayed_signature_past_the_tolerance_is_403(client: Client, signing_secret: str) -> None:
    body = json.dumps(event_body("opened")).encode()
    headers = signed(signing_secret, body, stamp=int(time.time()) - 600)
    response = post(client, body, **headers)
    assert response.status_code == 403
    assert "seconds" in response.json()["error"]


# No body ever yields a 500.

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_event_like = st.fixed_dictionaries(
    {
        "event": st.one_of(
            st.sampled_from(
                ["delivered", "Bounced", "opened", "clicked", "ping", "test", "x", "", "deferred"]
            ),
            _json_values,
        ),
        "message_id": st.one_of(st.text(max_size=200), _json_values),
        "timestamp": st.one_of(
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.text(max_size=40),
            st.integers(),
            st.floats(),
            st.integers(min_value=0, max_value=10**15).map(str),
            _json_values,
        ),
        "recipient": st.one_of(st.text(max_size=400), _json_values),
    },
    optional={
        "custom_args": _json_values,
        "bounce_type": st.one_of(st.sampled_from(["hard", "SOFT", "permanent", ""]), _json_values),
        "bounce_reason": _json_values,
        "reason": _json_values,
        "url": _json_values,
        "type": _json_values,
    },
)
_bodies = st.one_of(
    st.binary(max_size=300),
    _json_values.map(lambda v: json.dumps(v).encode()),
    _event_like.map(lambda v: json.dumps(v).encode()),
    st.lists(st.one_of(_event_like, _json_values), max_size=4).map(
        lambda v: json.dumps(v).encode()
    ),
    st.integers(min_value=60, max_value=2000).map(lambda n: b"[" * n + b"]" * n),
)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_bodies)
def test_no_request_body_yields_a_500(client: Client, delivery: Delivery, body: bytes) -> None:
    response = post(client, body)
    assert response.status_code in (200, 400), response.content
    assert isinstance(response.json(), dict)


# Nor do any signature headers.

_header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=500)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    webhook_id=_header_text,
    stamp=st.one_of(
        _header_text,
        st.integers().map(str),
        st.text(alphabet="0123456789", min_size=300, max_size=400),
        st.builds(lambda: str(int(time.time()))),
    ),
    signature=st.one_of(_header_text, _header_text.map(lambda v: f"v1,{v}")),
)
def test_no_signature_headers_yield_a_500(
    client: Client, signing_secret: str, webhook_id: str, stamp: str, signature: str
) -> None:
    headers = {"webhook-id": webhook_id, "webhook-timestamp": stamp, "webhook-signature": signature}
    response = post(client, event_body("opened"), **headers)
    assert response.status_code == 403, response.content
    assert "signature" in response.json()["error"]
