"""Authentication and parsing of webhook requests (no database)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from django_cloudmails import signing
from django_cloudmails.webhooks import (
    WebhookError,
    check_basic_auth,
    check_signature,
    content_key,
    parse_body,
    parse_event,
)
from tests.factories import basic_auth, event_body

SECRETS = ("hook:s3cret",)
SIGNING = signing.generate_secret()


def encoded(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def signed_headers(body: bytes, *, msg_id: str = "evt_1", stamp: int | None = None) -> dict:
    stamp = int(time.time()) if stamp is None else stamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signing.sign(SIGNING, msg_id, stamp, body),
    }


def refused(call: Any, *args: Any, **kwargs: Any) -> WebhookError:
    with pytest.raises(WebhookError) as info:
        call(*args, **kwargs)
    return info.value


# Basic auth.


def test_basic_auth_accepts_the_configured_pair() -> None:
    check_basic_auth(basic_auth("hook:s3cret"), SECRETS)


def test_basic_auth_refuses_a_missing_header() -> None:
    assert refused(check_basic_auth, None, SECRETS).status == 401


def test_basic_auth_refuses_a_wrong_user() -> None:
    assert refused(check_basic_auth, basic_auth("other:s3cret"), SECRETS).status == 401


def test_basic_auth_refuses_a_wrong_password() -> None:
    assert refused(check_basic_auth, basic_auth("hook:wrong"), SECRETS).status == 401


def test_basic_auth_refuses_another_scheme() -> None:
    assert refused(check_basic_auth, "Bearer hook:s3cret", SECRETS).status == 401


def test_basic_auth_refuses_undecodable_credentials() -> None:
    assert refused(check_basic_auth, "Basic !!!not-base64", SECRETS).status == 401


def test_basic_auth_refuses_everything_without_secrets() -> None:
    assert refused(check_basic_auth, basic_auth(":"), ()).status == 401


def test_basic_auth_accepts_any_pair_of_a_rotation_list() -> None:
    rotation = ("hook:old", "hook:new")
    check_basic_auth(basic_auth("hook:old"), rotation)
    check_basic_auth(basic_auth("hook:new"), rotation)


def test_basic_auth_error_does_not_say_which_part_was_wrong() -> None:
    user = refused(check_basic_auth, basic_auth("other:s3cret"), SECRETS)
    password = refused(check_basic_auth, basic_auth("hook:wrong"), SECRETS)
    assert user.reason == password.reason


# Signatures.


def test_signature_valid_is_accepted() -> None:
    body = encoded(event_body())
    check_signature(signed_headers(body), body, [SIGNING], tolerance=300)


def test_signature_made_by_the_standardwebhooks_package_is_accepted() -> None:
    from standardwebhooks import Webhook

    body = encoded(event_body())
    stamp = datetime.now(timezone.utc)
    signature = Webhook(SIGNING).sign("evt_9", stamp, body.decode())
    headers = {
        "webhook-id": "evt_9",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signature,
    }
    check_signature(headers, body, [SIGNING], tolerance=300)


def test_signature_over_another_body_is_refused() -> None:
    headers = signed_headers(encoded(event_body()))
    assert refused(
        check_signature, headers, encoded(event_body("opened")), [SIGNING], tolerance=300
    )


def test_signature_with_another_secret_is_refused() -> None:
    body = encoded(event_body())
    other = signing.generate_secret()
    error = refused(check_signature, signed_headers(body), body, [other], tolerance=300)
    assert error.status == 403


def test_signature_accepts_any_secret_of_a_rotation_list() -> None:
    body = encoded(event_body())
    check_signature(signed_headers(body), body, [signing.generate_secret(), SIGNING], tolerance=60)


def test_stale_signature_is_refused() -> None:
    body = encoded(event_body())
    headers = signed_headers(body, stamp=int(time.time()) - 301)
    assert refused(check_signature, headers, body, [SIGNING], tolerance=300).status == 403


def test_captured_request_replayed_after_the_tolerance_is_refused() -> None:
    body = encoded(event_body())
    stamp = int(time.time())
    headers = signed_headers(body, stamp=stamp)
    check_signature(headers, body, [SIGNING], tolerance=300, now=stamp + 10)
    error = refused(check_signature, headers, body, [SIGNING], tolerance=300, now=stamp + 301)
    assert "seconds" in error.reason


def test_unsigned_request_is_refused_when_signing_is_required() -> None:
    assert (
        refused(check_signature, {}, encoded(event_body()), [SIGNING], tolerance=300).status == 403
    )


# Parsing each event type.


@pytest.mark.parametrize("name", ["delivered", "opened", "unsubscribed", "complained"])
def test_plain_event_types_parse(name: str) -> None:
    parsed = parse_body(encoded(event_body(name)), "evt_1").events[0]
    assert (parsed.event, parsed.message_id, parsed.recipient) == (
        name,
        "msg_1",
        "someone@example.com",
    )
    assert parsed.occurred_at == datetime(2026, 5, 19, 14, 30, 0, 123456, tzinfo=timezone.utc)


def test_bounced_event_parses_type_and_reason() -> None:
    parsed = parse_body(encoded(event_body("bounced")), "evt_1").events[0]
    assert (parsed.bounce_type, parsed.bounce_reason) == ("hard", "550 5.1.1 user unknown")


def test_clicked_event_parses_its_url() -> None:
    assert (
        parse_body(encoded(event_body("clicked")), "evt_1").events[0].url == "https://example.com/"
    )


def test_ping_is_recognised() -> None:
    body = encoded({"event": "ping", "timestamp": "2026-05-19T14:30:00Z"})
    assert parse_body(body, "evt_1").ping


def test_delivery_ref_comes_from_custom_args() -> None:
    ref = uuid.uuid4()
    raw = event_body(custom_args={"cloudmails_delivery_id": str(ref), "order": 7})
    parsed = parse_event(raw, None)
    assert parsed.delivery_ref == ref
    assert parsed.custom_args["order"] == 7


def test_malformed_delivery_ref_is_ignored() -> None:
    parsed = parse_event(event_body(custom_args={"cloudmails_delivery_id": "nope"}), None)
    assert parsed.delivery_ref is None


def test_offset_timestamps_are_converted_to_utc() -> None:
    parsed = parse_event(event_body(timestamp="2026-05-19T16:30:00+02:00"), None)
    assert parsed.occurred_at == datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)


def test_unknown_extra_fields_are_kept_not_refused() -> None:
    parsed = parse_event(event_body(ip="192.0.2.1"), None)
    assert parsed.raw["ip"] == "192.0.2.1"


# Dedupe keys.


def test_single_event_key_is_the_webhook_id() -> None:
    assert parse_body(encoded(event_body()), "evt_abc").events[0].dedupe_key == "evt_abc"


def test_event_without_webhook_id_is_keyed_by_content() -> None:
    assert parse_body(encoded(event_body()), None).events[0].dedupe_key == content_key(event_body())


def test_list_events_are_keyed_by_content_not_the_list_id() -> None:
    body = encoded([event_body("delivered"), event_body("opened")])
    first = parse_body(body, "evt_list_1").events
    again = parse_body(body, "evt_list_2").events
    assert [e.dedupe_key for e in first] == [e.dedupe_key for e in again]
    assert first[0].dedupe_key != first[1].dedupe_key


def test_content_key_ignores_custom_args_and_key_order() -> None:
    reordered = dict(reversed(list(event_body().items())))
    reordered["custom_args"] = {"x": 1}
    assert content_key(reordered) == content_key(event_body())


def test_list_of_several_events_parses_each() -> None:
    body = encoded([event_body("delivered"), event_body("opened"), event_body("clicked")])
    assert [e.event for e in parse_body(body, "evt_1").events] == [
        "delivered",
        "opened",
        "clicked",
    ]


# Malformed bodies: each a 4xx with a reason.

MALFORMED: dict[str, bytes] = {
    "not json": b"{not json",
    "not utf-8": b'{"event": "\xff"}',
    "empty": b"",
    "scalar": b"42",
    "empty list": b"[]",
    "NaN": b'{"event": "delivered", "x": NaN}',
    "huge float": b'{"event": "delivered", "x": 1e999}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "unknown event": encoded(event_body("exploded")),
    "event not a string": encoded(event_body(event=3)),
    "missing message_id": encoded({k: v for k, v in event_body().items() if k != "message_id"}),
    "empty message_id": encoded(event_body(message_id="")),
    "message_id too long": encoded(event_body(message_id="m" * 129)),
    "missing timestamp": encoded({k: v for k, v in event_body().items() if k != "timestamp"}),
    "bad timestamp": encoded(event_body(timestamp="yesterday")),
    "naive timestamp": encoded(event_body(timestamp="2026-05-19T14:30:00")),
    "numeric timestamp": encoded(event_body(timestamp=1_700_000_000)),
    "missing recipient": encoded({k: v for k, v in event_body().items() if k != "recipient"}),
    "recipient not a string": encoded(event_body(recipient=["a@b"])),
    "custom_args not an object": encoded(event_body(custom_args=[1])),
    "bounce without type": encoded({**event_body("bounced"), "bounce_type": None}),
    "bounce with unknown type": encoded(event_body("bounced", bounce_type="medium")),
    "bounce without reason": encoded(
        {k: v for k, v in event_body("bounced").items() if k != "bounce_reason"}
    ),
    "click without url": encoded({k: v for k, v in event_body("clicked").items() if k != "url"}),
    "NUL in a string": encoded(event_body(recipient="a\x00@b")),
    "lone surrogate": b'{"event": "delivered", "recipient": "\\ud800"}',
    "list with a bad item": encoded([event_body(), {"event": "opened"}]),
    "ping inside a list": encoded([{"event": "ping", "timestamp": "2026-05-19T14:30:00Z"}]),
    "too many events": encoded([event_body()] * 1001),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_is_a_400_with_a_reason(body: bytes) -> None:
    error = refused(parse_body, body, "evt_1")
    assert error.status == 400
    assert error.reason


def test_list_errors_name_the_bad_item() -> None:
    error = refused(parse_body, encoded([event_body(), {"event": "opened"}]), None)
    assert error.reason.startswith("events[1]: ")


def test_overlong_webhook_id_is_refused() -> None:
    assert refused(parse_body, encoded(event_body()), "e" * 129).status == 400
