"""Webhook signatures in the Standard Webhooks scheme.

The webhook view checks with :func:`verify`; :func:`sign` is its counterpart, for users'
own tests. Pure standard library. The sandbox signs with its own code (it must be able to
catch a mistake here), and the test suite checks both against the ``standardwebhooks`` and
``svix`` packages. Secrets are decoded exactly as ``standardwebhooks`` decodes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as token_source
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
DEFAULT_TOLERANCE = 300
#: Seconds since 1970 fit in 11 digits until the year 5138; longer is not a timestamp.
MAX_TIMESTAMP_DIGITS = 11


class SignatureError(Exception):
    """A webhook's signature headers are missing, malformed, stale or do not match."""


def _key(secret: str) -> bytes:
    """The HMAC key of ``secret``, decoded exactly as the ``standardwebhooks`` package
    decodes it (``whsec_`` optional, padding added, so unpadded base64 works too, and
    characters outside the base64 alphabet skipped), so that a secret it accepts works
    here too."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw + "==")
    except ValueError as err:
        raise ValueError("A webhook signing secret must be 'whsec_' followed by base64.") from err
    if not key:
        raise ValueError("A webhook signing secret must not be empty.")
    return key


def is_valid_secret(secret: str) -> bool:
    """Whether ``secret`` is ``whsec_`` followed by base64 of a non-empty key."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        return bool(_key(secret))
    except ValueError:
        return False


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value for one delivery attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secrets: Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a request's Standard Webhooks headers against any of ``secrets``.

    Several secrets allow rotation. The timestamp must be within ``tolerance`` seconds of
    ``now``, so that a captured request cannot be replayed later. Raises
    :class:`SignatureError` naming what is wrong; returns ``None`` when the signature holds.
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    header = headers.get("webhook-signature")
    if not msg_id or not stamp or not header:
        raise SignatureError("Missing webhook-id, webhook-timestamp or webhook-signature header.")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_TIMESTAMP_DIGITS):
        raise SignatureError("webhook-timestamp is not a Unix time in seconds.")
    timestamp = int(stamp)
    current = int(time.time() if now is None else now)
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"webhook-timestamp is more than {tolerance} seconds away from now.")
    # Only ASCII can match a base64 digest; anything else would make compare_digest raise.
    offered = [
        part.split(",", 1)[1]
        for part in header.split()
        if part.startswith("v1,") and part.isascii()
    ]
    for secret in secrets:
        # A malformed secret (system check cloudmails.E006) matches nothing.
        try:
            expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
        except (ValueError, TypeError, AttributeError):
            continue
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise SignatureError("No webhook-signature matches a configured signing secret.")


def generate_secret() -> str:
    """Return a new random signing secret in the ``whsec_`` form."""
    return SECRET_PREFIX + base64.b64encode(token_source.token_bytes(24)).decode()
