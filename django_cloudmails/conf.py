"""django-cloudmails settings, read lazily from ``settings.CLOUDMAILS``.

One object, typed properties, defaults inline. Nothing is read at import time and nothing
is written back into ``django.conf.settings``. Keyword arguments given to a backend (from
``get_connection(api_key=...)`` or a Django 6.1 ``MAILERS`` entry's ``OPTIONS``) override
the dict for that backend only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from .client import DEFAULT_API_URL, DEFAULT_TIMEOUT
from .limits import MAX_BATCH_MESSAGES
from .retry import RetryPolicy

#: Every key ``CLOUDMAILS`` may hold, with its default. Unknown keys fail a system check.
DEFAULTS: dict[str, Any] = {
    "API_KEY": "",
    "API_URL": DEFAULT_API_URL,
    "TIMEOUT": DEFAULT_TIMEOUT,
    "RETRY_ATTEMPTS": 3,
    "RETRY_BACKOFF": 0.5,
    "RETRY_MAX_BACKOFF": 30.0,
    "BATCH_SIZE": MAX_BATCH_MESSAGES,
    "IGNORE_UNSUPPORTED_FEATURES": False,
    "BODY_RETENTION_DAYS": None,
    "WEBHOOK_SECRET": None,
    "WEBHOOK_SIGNING_SECRET": None,
    "WEBHOOK_TOLERANCE": 300,
    "WEBHOOK_MAX_BODY_BYTES": 1024 * 1024,
    "SUPPRESS_ON": ("hard_bounce", "complained", "unsubscribed"),
    "SUPPRESSED_RECIPIENTS": "fail",
}

#: Backend keyword arguments (and ``MAILERS`` OPTIONS) and the key each overrides.
OPTION_KEYS = {
    "api_key": "API_KEY",
    "api_url": "API_URL",
    "timeout": "TIMEOUT",
    "retry_attempts": "RETRY_ATTEMPTS",
    "retry_backoff": "RETRY_BACKOFF",
    "retry_max_backoff": "RETRY_MAX_BACKOFF",
    "batch_size": "BATCH_SIZE",
    "ignore_unsupported_features": "IGNORE_UNSUPPORTED_FEATURES",
}

SUPPRESSION_REASONS = ("hard_bounce", "soft_bounce", "complained", "unsubscribed")
SUPPRESSED_RECIPIENT_ACTIONS = ("fail", "raise")


def _as_tuple(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class CloudMailsSettings:
    """Typed access to ``settings.CLOUDMAILS``, with per-backend overrides."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self._overrides = {OPTION_KEYS.get(k, k): v for k, v in (overrides or {}).items()}

    @property
    def user_settings(self) -> Mapping[str, Any]:
        value = getattr(settings, "CLOUDMAILS", None)
        return value if isinstance(value, Mapping) else {}

    def get(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return self.user_settings.get(name, DEFAULTS[name])

    @property
    def api_key(self) -> str:
        return str(self.get("API_KEY") or os.environ.get("CLOUDMAILS_API_KEY", ""))

    @property
    def api_url(self) -> str:
        return str(self.get("API_URL"))

    @property
    def timeout(self) -> float:
        return float(self.get("TIMEOUT"))

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=int(self.get("RETRY_ATTEMPTS")),
            backoff=float(self.get("RETRY_BACKOFF")),
            max_backoff=float(self.get("RETRY_MAX_BACKOFF")),
        )

    @property
    def batch_size(self) -> int:
        return int(self.get("BATCH_SIZE"))

    @property
    def ignore_unsupported_features(self) -> bool:
        return bool(self.get("IGNORE_UNSUPPORTED_FEATURES"))

    @property
    def body_retention_days(self) -> int | None:
        value = self.get("BODY_RETENTION_DAYS")
        return None if value is None else int(value)

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Accepted "user:password" pairs; several allow rotation."""
        return _as_tuple(self.get("WEBHOOK_SECRET"))

    @property
    def webhook_signing_secrets(self) -> tuple[str, ...]:
        """Standard Webhooks secrets; when set, every webhook must be signed."""
        return _as_tuple(self.get("WEBHOOK_SIGNING_SECRET"))

    @property
    def webhook_tolerance(self) -> int:
        return int(self.get("WEBHOOK_TOLERANCE"))

    @property
    def webhook_max_body_bytes(self) -> int:
        return int(self.get("WEBHOOK_MAX_BODY_BYTES"))

    @property
    def suppress_on(self) -> frozenset[str]:
        return frozenset(_as_tuple(self.get("SUPPRESS_ON")))

    @property
    def suppressed_recipients(self) -> str:
        return str(self.get("SUPPRESSED_RECIPIENTS"))


#: The project-wide settings, without backend overrides.
app_settings = CloudMailsSettings()
