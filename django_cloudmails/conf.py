"""django-cloudmails settings, read lazily from ``settings.CLOUDMAILS``.

One object, typed properties, defaults inline. Nothing is read at import time and nothing
is written back into ``django.conf.settings``. Keyword arguments given to a backend (from
``get_connection(api_key=...)`` or a Django 6.1 ``MAILERS`` entry's ``OPTIONS``) override
the dict for that backend only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .client import DEFAULT_API_URL, DEFAULT_TIMEOUT, CloudMailsClient
from .exceptions import CloudMailsConfigurationError
from .lifecycle import COMPLAINED, HARD_BOUNCE, UNSUBSCRIBED
from .limits import MAX_BATCH_MESSAGES
from .retry import RetryPolicy


@dataclass(frozen=True)
class Option:
    """One ``CLOUDMAILS`` key: its default, the backend option that overrides it (if any)
    and, for numbers, the range the system checks enforce."""

    key: str
    default: Any
    #: The backend keyword argument / ``MAILERS`` OPTIONS name overriding it per alias.
    backend_option: str | None = None
    #: For numeric settings: the lowest and highest value allowed (None: no bound).
    lowest: float | None = None
    highest: float | None = None
    #: Numeric settings that may also be None (off).
    nullable: bool = False

    @property
    def numeric(self) -> bool:
        return self.lowest is not None


#: Every key ``CLOUDMAILS`` may hold, declared once. Unknown keys fail a system check.
OPTIONS: tuple[Option, ...] = (
    Option("API_KEY", "", "api_key"),
    Option("API_URL", DEFAULT_API_URL, "api_url"),
    Option("TIMEOUT", DEFAULT_TIMEOUT, "timeout", lowest=0.0),
    Option("RETRY_ATTEMPTS", 3, "retry_attempts", lowest=1),
    Option("RETRY_BACKOFF", 0.5, "retry_backoff", lowest=0.0),
    Option("RETRY_MAX_BACKOFF", 30.0, "retry_max_backoff", lowest=0.0),
    Option("BATCH_SIZE", MAX_BATCH_MESSAGES, "batch_size", lowest=1, highest=MAX_BATCH_MESSAGES),
    Option("IGNORE_UNSUPPORTED_FEATURES", False, "ignore_unsupported_features"),
    Option("BODY_RETENTION_DAYS", None),
    Option("WEBHOOK_SECRET", None),
    Option("WEBHOOK_SIGNING_SECRET", None),
    Option("WEBHOOK_TOLERANCE", 300, lowest=1),
    Option("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024, lowest=1),
    Option("SUPPRESS_ON", (HARD_BOUNCE, COMPLAINED, UNSUBSCRIBED)),
    Option("SUPPRESSED_RECIPIENTS", "fail"),
    # Converging: status polling and recovery of rows whose send outcome is unknown.
    Option("POLL_MAX_AGE", 3 * 24 * 3600, lowest=0),
    Option("POLL_ENGAGEMENT_FOR", 0, lowest=0),
    Option("POLL_CONCURRENCY", 8, lowest=1, highest=64),
    Option("RECOVER_AFTER", 900, lowest=0),
    # Seconds between a row's status polls: the first after sending, then each next;
    # the last repeats until POLL_MAX_AGE.
    Option("POLL_SCHEDULE", (60, 300, 1800, 7200, 43200)),
    # Recovery tries per row before it is left unknown for a person to look at.
    Option("RECOVER_ATTEMPTS", 5, lowest=1),
    # Background sending: messages per second across every worker (None: no limit).
    Option("RATE_LIMIT", None, lowest=0.001, nullable=True),
    # The delivery dashboard warns above these rates (0.05 = 5%).
    Option("BOUNCE_RATE_WARNING", 0.05, lowest=0.0, highest=1.0),
    Option("COMPLAINT_RATE_WARNING", 0.001, lowest=0.0, highest=1.0),
)

DEFAULTS: dict[str, Any] = {option.key: option.default for option in OPTIONS}
#: Backend keyword arguments (and ``MAILERS`` OPTIONS) and the key each overrides.
OPTION_KEYS: dict[str, str] = {
    option.backend_option: option.key for option in OPTIONS if option.backend_option
}
BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}

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
        """Ours when given; else django-anymail's, so an anymail project keeps its choice."""
        key = "IGNORE_UNSUPPORTED_FEATURES"
        if key in self._overrides or key in self.user_settings:
            return bool(self.get(key))
        anymail = getattr(settings, "ANYMAIL", None)
        if isinstance(anymail, Mapping) and key in anymail:
            return bool(anymail[key])
        return bool(getattr(settings, f"ANYMAIL_{key}", False))

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

    @property
    def poll_max_age(self) -> float:
        """Seconds after sending during which a row is still polled for its status."""
        return float(self.get("POLL_MAX_AGE"))

    @property
    def poll_engagement_for(self) -> float:
        """Seconds after sending during which delivered rows are polled for opens and
        clicks (0: never)."""
        return float(self.get("POLL_ENGAGEMENT_FOR"))

    @property
    def poll_concurrency(self) -> int:
        return int(self.get("POLL_CONCURRENCY"))

    @property
    def poll_schedule(self) -> tuple[float, ...]:
        """Seconds before each poll of a row: after sending, then after each poll."""
        return tuple(float(delay) for delay in self.get("POLL_SCHEDULE"))

    @property
    def recover_attempts(self) -> int:
        return int(self.get("RECOVER_ATTEMPTS"))

    def check(self) -> None:
        """Raise :class:`CloudMailsConfigurationError` unless these settings can send.

        Called before anything is written or claimed (the backends, the workers), so a
        broken configuration leaves nothing behind; ``manage.py check`` names the
        setting too (see :mod:`~.checks`).
        """
        if not self.api_key:
            raise CloudMailsConfigurationError(
                'No CloudMails API key: set CLOUDMAILS["API_KEY"], the CLOUDMAILS_API_KEY '
                'environment variable or the backend\'s "api_key" option.'
            )
        try:
            self.timeout, self.retry_policy  # noqa: B018 - read to check them
            batch_size = self.batch_size
        except (TypeError, ValueError) as err:
            raise CloudMailsConfigurationError(
                f"A CLOUDMAILS setting or backend option has a wrong value ({err}); "
                "`manage.py check` names it."
            ) from err
        if not 1 <= batch_size <= MAX_BATCH_MESSAGES:
            raise CloudMailsConfigurationError(
                f'CLOUDMAILS["BATCH_SIZE"] (or the "batch_size" option) must be between 1 '
                f"and {MAX_BATCH_MESSAGES}, not {batch_size}."
            )

    def client(self, retry: RetryPolicy | None = None) -> CloudMailsClient:
        """A client with this API key, URL and timeout, once :meth:`check` passed;
        ``retry`` defaults to one try (a caller that wants the settings' retries passes
        :attr:`retry_policy`)."""
        self.check()
        return CloudMailsClient(
            self.api_key, api_url=self.api_url, timeout=self.timeout, retry=retry
        )

    @property
    def recover_after(self) -> float:
        """Seconds a row's send outcome may stay unknown before recovery settles it."""
        return float(self.get("RECOVER_AFTER"))

    @property
    def rate_limit(self) -> float | None:
        """Messages per second across every worker; None for no limit."""
        value = self.get("RATE_LIMIT")
        return None if value is None else float(value)

    @property
    def bounce_rate_warning(self) -> float:
        return float(self.get("BOUNCE_RATE_WARNING"))

    @property
    def complaint_rate_warning(self) -> float:
        return float(self.get("COMPLAINT_RATE_WARNING"))


#: The project-wide settings, without backend overrides.
app_settings = CloudMailsSettings()


def alias_options(alias: str) -> dict[str, Any]:
    """Our backend options configured for ``alias``: its ``MAILERS`` OPTIONS on Django
    6.1 (empty where there are none)."""
    mailers = getattr(settings, "MAILERS", None)
    config = mailers.get(alias) if isinstance(mailers, Mapping) else None
    options = config.get("OPTIONS") if isinstance(config, Mapping) else None
    if not isinstance(options, Mapping):
        return {}
    return {name: value for name, value in options.items() if name in OPTION_KEYS}


def mailer_settings(alias: str) -> CloudMailsSettings:
    """The settings a mailer alias sends with: its ``MAILERS`` OPTIONS (Django 6.1+) over
    ``CLOUDMAILS``. Rows remember their alias: workers, polling and recovery read the
    alias's settings here, so no secret ever travels through a broker."""
    options = alias_options(alias)
    return CloudMailsSettings(options) if options else app_settings
