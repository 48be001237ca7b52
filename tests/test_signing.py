"""Standard Webhooks signatures, and interoperability with the reference package."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from django_cloudmails.signing import (
    SignatureError,
    generate_secret,
    is_valid_secret,
    sign,
    verify,
)

BODY = b'{"event":"delivered","message_id":"msg_1"}'


def headers(secret: str, *, msg_id: str = "evt_1", at: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, BODY),
    }


def test_own_signature_verifies() -> None:
    secret = generate_secret()

    verify([secret], headers(secret), BODY)


def test_signature_verifies_with_the_standardwebhooks_package() -> None:
    secret = generate_secret()

    Webhook(secret).verify(BODY, headers(secret))


def test_standardwebhooks_signature_verifies_with_ours() -> None:
    secret = generate_secret()
    stamp = int(time.time())
    signature = Webhook(secret).sign(
        "evt_9", datetime.fromtimestamp(stamp, tz=timezone.utc), BODY.decode()
    )
    verify(
        [secret],
        {"webhook-id": "evt_9", "webhook-timestamp": str(stamp), "webhook-signature": signature},
        BODY,
    )


def test_any_of_several_secrets_verifies_for_rotation() -> None:
    old, new = generate_secret(), generate_secret()

    verify([new, old], headers(old), BODY)


def test_tampered_body_is_refused() -> None:
    secret = generate_secret()
    with pytest.raises(SignatureError, match="matches"):
        verify([secret], headers(secret), BODY + b" ")


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureError):
        verify([generate_secret()], headers(generate_secret()), BODY)


def test_stale_timestamp_is_refused_even_with_a_valid_signature() -> None:
    secret = generate_secret()
    old = int(time.time()) - 301
    with pytest.raises(SignatureError, match="300 seconds"):
        verify([secret], headers(secret, at=old), BODY)


def test_missing_headers_are_refused() -> None:
    with pytest.raises(SignatureError, match="Missing"):
        verify([generate_secret()], {}, BODY)


def test_non_integer_timestamp_is_refused() -> None:
    secret = generate_secret()
    bad = {**headers(secret), "webhook-timestamp": "soon"}
    with pytest.raises(SignatureError, match="Unix time"):
        verify([secret], bad, BODY)


def test_absurdly_long_timestamp_is_refused() -> None:
    secret = generate_secret()
    bad = {**headers(secret), "webhook-timestamp": "9" * 400}
    with pytest.raises(SignatureError, match="Unix time"):
        verify([secret], bad, BODY)


def test_non_ascii_signature_is_refused_not_crashed_on() -> None:
    secret = generate_secret()
    bad = {**headers(secret), "webhook-signature": "v1,\xe9\xe9"}
    with pytest.raises(SignatureError, match="matches"):
        verify([secret], bad, BODY)


def test_a_valid_signature_among_odd_ones_still_verifies() -> None:
    secret = generate_secret()
    good = headers(secret)
    mixed = {**good, "webhook-signature": "v1,\xe9 v2,xyz " + good["webhook-signature"]}

    verify([secret], mixed, BODY)


# Secrets are decoded exactly as the standardwebhooks package decodes them.

KEY = b"\x01\x02 a key of twenty-two b"  # 24 bytes would need no padding; this needs "=="
SECRETS_AS_WRITTEN = {
    "padded": "whsec_" + base64.b64encode(KEY[:22]).decode(),
    "unpadded": "whsec_" + base64.b64encode(KEY[:22]).decode().rstrip("="),
    "one pad missing": "whsec_" + base64.b64encode(KEY[:23]).decode().rstrip("="),
    "no padding needed": "whsec_" + base64.b64encode(KEY[:21]).decode(),
    "without the prefix": base64.b64encode(KEY[:22]).decode(),
}


@pytest.mark.parametrize("secret", SECRETS_AS_WRITTEN.values(), ids=SECRETS_AS_WRITTEN.keys())
def test_secret_forms_verify_both_ways_with_standardwebhooks(secret: str) -> None:
    verify([secret], headers(secret), BODY)
    Webhook(secret).verify(BODY, headers(secret))
    stamp = datetime.now(timezone.utc)
    theirs = Webhook(secret).sign("evt_9", stamp, BODY.decode())
    verify(
        [secret],
        {
            "webhook-id": "evt_9",
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": theirs,
        },
        BODY,
    )


@pytest.mark.parametrize("secret", SECRETS_AS_WRITTEN.values(), ids=SECRETS_AS_WRITTEN.keys())
def test_secret_forms_with_the_prefix_pass_the_check(secret: str) -> None:
    assert is_valid_secret(secret) == secret.startswith("whsec_")


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!!", "whsec_a", "whsec_abcde"])
def test_secrets_standardwebhooks_cannot_decode_fail_the_check(secret: str) -> None:
    assert not is_valid_secret(secret)
    with pytest.raises(Exception):  # noqa: B017, PT011 (its own errors, whatever they are)
        Webhook(secret)


def test_a_malformed_secret_among_good_ones_is_skipped() -> None:
    secret = generate_secret()

    verify(["whsec_!!!!", 42, secret], headers(secret), BODY)  # type: ignore[list-item]


def test_only_malformed_secrets_match_nothing() -> None:
    secret = generate_secret()
    with pytest.raises(SignatureError, match="matches"):
        verify(["whsec_!!!!"], headers(secret), BODY)
