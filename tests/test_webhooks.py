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
    MAX_EVENT_LENGTH,
    MAX_KEY_LENGTH,
    MAX_MESSAGE_ID_LENGTH,
    MAX_RECIPIENT_LENGTH,
    ParsedBody,
    ParsedEvent,
    WebhookError,
    check_basic_auth,
    check_signature,
    content_key,
    parse_body,
    parse_event,
)
from tests.factories import basic_auth, event_body, without

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


@pytest.mark.parametrize("pair", [":", "hook:", ":pw"])
def test_empty_credentials_never_authenticate_even_when_configured(pair: str) -> None:
    assert refused(check_basic_auth, basic_auth(pair), (pair, "hook:s3cret")).status == 401


@pytest.mark.parametrize("pair", [":", "hook:", ":pw", "nocolon"])
def test_a_configured_secret_with_an_empty_half_is_ignored(pair: str) -> None:
    secrets = (pair, "hook:s3cret")
    check_basic_auth(basic_auth("hook:s3cret"), secrets)
    assert refused(check_basic_auth, basic_auth(pair), secrets).status == 401


def test_a_configured_secret_that_is_not_text_is_ignored() -> None:
    secrets: Any = (None, 7, "hook:\ud800", "hook:s3cret")
    check_basic_auth(basic_auth("hook:s3cret"), secrets)
    assert refused(check_basic_auth, basic_auth("None:"), secrets).status == 401


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


def svix_headers(body: bytes, *, msg_id: str = "msg_svix_1") -> dict[str, str]:
    """Headers as Svix names them, signed by the svix package."""
    from svix.webhooks import Webhook as SvixWebhook

    stamp = datetime.now(timezone.utc)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(stamp.timestamp())),
        "svix-signature": SvixWebhook(SIGNING).sign(msg_id, stamp, body.decode()),
    }


def test_svix_headers_signed_by_the_svix_package_are_accepted() -> None:
    body = encoded(event_body())
    check_signature(svix_headers(body), body, [SIGNING], tolerance=300)


def test_svix_headers_over_another_body_are_refused() -> None:
    headers = svix_headers(encoded(event_body()))
    error = refused(
        check_signature, headers, encoded(event_body("opened")), [SIGNING], tolerance=300
    )
    assert error.status == 403


def test_our_signature_verifies_with_the_svix_package_under_svix_names() -> None:
    from svix.webhooks import Webhook as SvixWebhook

    body = encoded(event_body())
    headers = {k.replace("webhook-", "svix-"): v for k, v in signed_headers(body).items()}
    SvixWebhook(SIGNING).verify(body, headers)
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


# Reading the reference's own events.

DOCUMENTED = ("delivered", "bounced", "opened", "clicked", "unsubscribed", "complained")
RECEIVED = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def one(payload: Any, webhook_id: str | None = "evt_1", **kwargs: Any) -> ParsedEvent:
    body = payload if isinstance(payload, bytes) else encoded(payload)
    (event,) = parse_body(body, webhook_id, **kwargs).events
    return event


@pytest.mark.parametrize("name", DOCUMENTED)
def test_each_documented_event_in_the_minimal_shape_is_read(name: str) -> None:
    event = one(event_body(name))
    assert (event.event, event.message_id, event.recipient) == (
        name,
        "msg_1",
        "someone@example.com",
    )
    assert event.occurred_at == datetime(2026, 5, 19, 14, 30, 0, 123456, tzinfo=timezone.utc)
    assert event.known


def test_bounced_without_bounce_type_is_a_hard_bounce_without_reason() -> None:
    event = one(event_body("bounced"))
    assert (event.bounce_type, event.bounce_reason) == ("hard", "")


def test_bounced_keeps_its_type_and_reason() -> None:
    event = one(event_body("bounced", bounce_type="soft", bounce_reason="452 mailbox full"))
    assert (event.bounce_type, event.bounce_reason) == ("soft", "452 mailbox full")


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("HARD", "hard"),
        (" Soft ", "soft"),
        ("Permanent", "hard"),
        ("transient", "soft"),
        ("temporary", "soft"),
        ("undetermined", "hard"),
        ("", "hard"),
        (None, "hard"),
        (5, "hard"),
    ],
)
def test_bounce_type_is_read_case_insensitively_and_defaults_to_hard(
    given: object, read: str
) -> None:
    assert one(event_body("bounced", bounce_type=given)).bounce_type == read


def test_bounce_reason_may_come_as_reason() -> None:
    assert one(event_body("bounced", reason="550 no such user")).bounce_reason == (
        "550 no such user"
    )


def test_bounce_reason_wins_over_reason() -> None:
    event = one(event_body("bounced", bounce_reason="first", reason="second"))
    assert event.bounce_reason == "first"


def test_bounce_reason_that_is_not_text_is_empty_and_kept_in_the_payload() -> None:
    event = one(event_body("bounced", bounce_reason={"code": 550}))
    assert event.bounce_reason == ""
    assert event.raw["bounce_reason"] == {"code": 550}


def test_clicked_without_url_is_still_a_click() -> None:
    event = one(event_body("clicked"))
    assert (event.event, event.url) == ("clicked", "")


def test_clicked_keeps_its_url() -> None:
    assert one(event_body("clicked", rich=True)).url == "https://example.com/"


@pytest.mark.parametrize("written", ["Delivered", "DELIVERED", " delivered "])
def test_event_type_is_read_case_insensitively(written: str) -> None:
    event = one(event_body(written))
    assert (event.event, event.known) == ("delivered", True)


@pytest.mark.parametrize("name", ["dropped", "processed", "spam_report", "x" * 64])
def test_unknown_event_type_is_read_not_refused(name: str) -> None:
    event = one(event_body(name))
    assert (event.event, event.known) == (name, False)


def test_deferred_and_failed_are_known_event_types() -> None:
    assert one(event_body("deferred")).known
    assert one(event_body("failed")).known


# Optional fields: what missing or unreadable means.


def test_missing_timestamp_means_the_time_received() -> None:
    event = one(without(event_body(), "timestamp"), received_at=RECEIVED)
    assert event.occurred_at == RECEIVED


@pytest.mark.parametrize("value", ["yesterday", "", None, [1], {"at": 1}, True, -1])
def test_unreadable_timestamp_means_the_time_received(value: object) -> None:
    assert one(event_body(timestamp=value), received_at=RECEIVED).occurred_at == RECEIVED


def test_without_a_received_time_the_time_is_now() -> None:
    before = datetime.now(timezone.utc)
    event = one(without(event_body(), "timestamp"))
    assert before <= event.occurred_at <= datetime.now(timezone.utc)


@pytest.mark.parametrize(
    "value",
    ["2026-05-19T16:30:00+02:00", "2026-05-19T14:30:00", 1779201000, "1779201000000"],
    ids=["offset", "naive", "epoch seconds", "epoch milliseconds as digits"],
)
def test_timestamp_in_other_common_forms_is_read(value: object) -> None:
    assert one(event_body(timestamp=value)).occurred_at == datetime(
        2026, 5, 19, 14, 30, tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    "recipient", [None, 42, ["a@example.com"], "a" * 321], ids=["null", "number", "list", "long"]
)
def test_unusable_recipient_is_empty_and_kept_in_the_payload(recipient: object) -> None:
    event = one(event_body(recipient=recipient))
    assert event.recipient == ""
    assert event.raw["recipient"] == recipient


def test_missing_recipient_is_empty() -> None:
    assert one(without(event_body(), "recipient")).recipient == ""


@pytest.mark.parametrize("custom_args", [None, [1], "x"])
def test_custom_args_that_is_not_an_object_is_empty_and_kept(custom_args: object) -> None:
    event = one(event_body(custom_args=custom_args))
    assert (event.custom_args, event.delivery_ref) == ({}, None)
    assert event.raw["custom_args"] == custom_args


def test_event_with_only_event_and_message_id_is_read() -> None:
    event = one({"event": "opened", "message_id": "msg_7"}, received_at=RECEIVED)
    assert (event.event, event.message_id, event.recipient, event.occurred_at) == (
        "opened",
        "msg_7",
        "",
        RECEIVED,
    )


def test_unknown_extra_fields_are_kept_not_refused() -> None:
    event = one(event_body(ip="192.0.2.1", user_agent={"name": "x"}))
    assert (event.raw["ip"], event.raw["user_agent"]) == ("192.0.2.1", {"name": "x"})


def test_delivery_ref_comes_from_custom_args() -> None:
    ref = uuid.uuid4()
    raw = event_body(custom_args={"cloudmails_delivery_id": str(ref), "order": 7})
    parsed = parse_event(raw, None)
    assert parsed.delivery_ref == ref
    assert parsed.custom_args["order"] == 7


def test_malformed_delivery_ref_is_ignored() -> None:
    parsed = parse_event(event_body(custom_args={"cloudmails_delivery_id": "nope"}), None)
    assert parsed.delivery_ref is None


def test_strings_no_database_can_store_are_replaced_not_refused() -> None:
    body = b'{"event": "opened", "message_id": "msg_1", "recipient": "a\\u0000@b", "x": "\\ud800"}'
    event = one(body)
    assert event.recipient == "a\ufffd@b"
    assert event.raw["x"] == "\ufffd"


# Required fields: a lone event without them is a 400.

UNREADABLE_EVENTS: dict[str, dict[str, Any]] = {
    "missing event": without(event_body(), "event"),
    "event not a string": event_body(event=3),
    "empty event": event_body(event=" "),
    "event longer than its column": event_body(event="e" * 65),
    "missing message_id": without(event_body(), "message_id"),
    "message_id not a string": event_body(message_id=12),
    "empty message_id": event_body(message_id=""),
    "message_id longer than its column": event_body(message_id="m" * 129),
}


@pytest.mark.parametrize("raw", UNREADABLE_EVENTS.values(), ids=UNREADABLE_EVENTS.keys())
def test_lone_event_without_usable_event_or_message_id_is_a_400(raw: dict[str, Any]) -> None:
    error = refused(parse_body, encoded(raw), "evt_1")
    assert error.status == 400
    assert ("'event'" in error.reason) or ("'message_id'" in error.reason)


def test_column_sizes_match_the_model() -> None:
    from django_cloudmails.models import DeliveryEvent

    sizes = {
        name: DeliveryEvent._meta.get_field(name).max_length
        for name in ("event", "message_id", "recipient", "dedupe_key")
    }
    assert sizes == {
        "event": MAX_EVENT_LENGTH,
        "message_id": MAX_MESSAGE_ID_LENGTH,
        "recipient": MAX_RECIPIENT_LENGTH,
        "dedupe_key": MAX_KEY_LENGTH,
    }


# Pings.

PINGS = {
    "event ping": {"event": "ping"},
    "event ping with a timestamp": {"event": "ping", "timestamp": "2026-05-19T14:30:00Z"},
    "event test": {"event": "test"},
    "upper-case": {"event": "PING"},
    "type ping": {"type": "ping"},
    "type test with a message id": {"type": "test", "message_id": "msg_test"},
    "ping with a message id": {"event": "ping", "message_id": "msg_test"},
    "no message id and an unknown type": {"event": "webhook.verify"},
    "no message id and no type": {"hello": "world"},
    "empty object": {},
}


@pytest.mark.parametrize("body", PINGS.values(), ids=PINGS.keys())
def test_ping_shapes_are_pings(body: dict[str, Any]) -> None:
    parsed = parse_body(encoded(body), "evt_1")
    assert (parsed.ping, parsed.events) == (True, ())


def test_documented_event_without_message_id_is_not_a_ping() -> None:
    assert refused(parse_body, encoded({"event": "delivered"}), None).status == 400


# Lists.


def test_list_of_several_events_reads_each() -> None:
    body = encoded([event_body("delivered"), event_body("opened"), event_body("clicked")])
    parsed = parse_body(body, "evt_1")
    assert [e.event for e in parsed.events] == ["delivered", "opened", "clicked"]
    assert parsed.invalid == ()


def test_list_keeps_the_readable_events_and_reports_the_others() -> None:
    body = encoded(
        [event_body("delivered"), {"event": "opened"}, "junk", event_body("exploded"), None]
    )
    parsed = parse_body(body, None)
    assert [e.event for e in parsed.events] == ["delivered", "exploded"]
    assert [(item.index, item.error) for item in parsed.invalid] == [
        (1, "missing 'message_id'."),
        (2, "an event must be a JSON object."),
        (4, "an event must be a JSON object."),
    ]


def test_list_of_which_nothing_can_be_read_is_a_400_naming_each_item() -> None:
    error = refused(parse_body, encoded([{"event": "opened"}, 7]), None)
    assert error.status == 400
    assert [item.as_dict() for item in error.invalid] == [
        {"index": 0, "error": "missing 'message_id'."},
        {"index": 1, "error": "an event must be a JSON object."},
    ]


def test_pings_inside_a_list_are_skipped() -> None:
    parsed = parse_body(encoded([{"event": "ping"}, event_body("opened")]), None)
    assert (parsed.ping, [e.event for e in parsed.events], parsed.invalid) == (
        False,
        ["opened"],
        (),
    )


def test_list_of_pings_is_a_ping() -> None:
    assert parse_body(encoded([{"event": "ping"}, {"type": "test"}]), None).ping


def test_empty_list_is_read_as_no_events() -> None:
    assert parse_body(b"[]", None) == ParsedBody(ping=False)


def test_list_items_without_message_id_are_invalid_not_pings() -> None:
    parsed = parse_body(encoded([event_body("opened"), {"hello": "world"}]), None)
    assert [item.index for item in parsed.invalid] == [1]


# Dedupe keys.


def test_single_event_key_is_the_webhook_id() -> None:
    assert one(event_body(), "evt_abc").dedupe_key == "evt_abc"


def test_event_without_webhook_id_is_keyed_by_content() -> None:
    assert one(event_body(), None).dedupe_key == content_key(event_body())


@pytest.mark.parametrize("webhook_id", ["e" * 129, "évt_1", "evt\x001"])
def test_webhook_id_that_does_not_fit_is_keyed_by_its_digest(webhook_id: str) -> None:
    key = one(event_body(), webhook_id).dedupe_key
    assert key.startswith("webhook-id-sha256:")
    assert len(key) <= MAX_KEY_LENGTH
    assert key == one(event_body("opened"), webhook_id).dedupe_key  # the id decides


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


# Bodies that cannot be read at all: each a 400 with a reason.

MALFORMED: dict[str, bytes] = {
    "not json": b"{not json",
    "not utf-8": b'{"event": "\xff"}',
    "empty": b"",
    "scalar": b"42",
    "string": b'"delivered"',
    "NaN": b'{"event": "delivered", "x": NaN}',
    "huge float": b'{"event": "delivered", "x": 1e999}',
    "nested 65 deep": encoded(event_body(custom_args=json.loads("[" * 64 + "]" * 64))),
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep unclosed nesting": b"[" * 100_000,
    "too many events": encoded([event_body()] * 1001),
    "one unreadable event": encoded(event_body(message_id="")),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_is_a_400_with_a_reason(body: bytes) -> None:
    error = refused(parse_body, body, "evt_1")
    assert error.status == 400
    assert error.reason


def test_nesting_at_the_bound_is_read() -> None:
    nested = json.loads("[" * 62 + "]" * 62)  # object > custom_args > 62 lists: 64 deep
    assert one(event_body(custom_args={"x": nested})).raw["custom_args"]["x"] == nested
