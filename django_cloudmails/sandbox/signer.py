"""The sandbox's own Standard Webhooks signer, written apart from the package's.

The sandbox plays CloudMails: were it to sign with the package's code, a mistake there
would sign and verify the same wrong way and no test could catch it. Secrets are read
the way the ``standardwebhooks`` reference package reads them (``whsec_`` optional,
base64 with or without padding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret; ValueError when it has none."""
    encoded = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise ValueError("The webhook signing secret must be 'whsec_' and base64.") from None
    if not key:
        raise ValueError("The webhook signing secret is empty.")
    return key


def new_secret() -> str:
    """A fresh random secret in the ``whsec_`` form, as CloudMails would show it."""
    return PREFIX + base64.b64encode(os.urandom(24)).decode()


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of
    ``id.timestamp.body``."""
    mac = hmac.new(key, b"%s.%d.%s" % (webhook_id.encode(), timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()
