"""System checks: a broken configuration fails at start-up, not at the first send.

Ids are stable and never reused: E001 missing API key, E002 malformed API_URL, E003
webhook URL routed without WEBHOOK_SECRET, E004 unknown CLOUDMAILS key, E005 a value of
the wrong type or range, E006 a malformed WEBHOOK_SECRET or WEBHOOK_SIGNING_SECRET, E007
database routers that write Delivery, DeliveryEvent and Suppression to different
databases.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.db import router
from django.urls import NoReverseMatch, reverse

from . import signing
from .conf import (
    BY_KEY,
    DEFAULTS,
    OPTION_KEYS,
    SUPPRESSED_RECIPIENT_ACTIONS,
    CloudMailsSettings,
    app_settings,
)
from .lifecycle import SUPPRESSION_REASONS

BACKEND_PREFIX = "django_cloudmails.backends."


def _our_mailer_options() -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, OPTIONS) for every configured backend of ours."""
    mailers = getattr(settings, "MAILERS", None)
    if isinstance(mailers, Mapping):
        for alias, config in mailers.items():
            if str(config.get("BACKEND", "")).startswith(BACKEND_PREFIX):
                yield f'MAILERS["{alias}"]', config.get("OPTIONS", {})
    elif str(getattr(settings, "EMAIL_BACKEND", "")).startswith(BACKEND_PREFIX):
        yield "EMAIL_BACKEND", {}


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """Check ``CLOUDMAILS`` and every backend of ours that is configured."""
    errors: list[CheckMessage] = []
    user = getattr(settings, "CLOUDMAILS", {})
    if not isinstance(user, Mapping):
        return [
            Error(
                "CLOUDMAILS must be a dict.",
                hint='Set CLOUDMAILS = {"API_KEY": "..."} in your settings.',
                id="cloudmails.E005",
            )
        ]
    errors.extend(_unknown_keys(user))
    for where, options in _our_mailer_options():
        conf = CloudMailsSettings(options)
        errors.extend(_check_backend(where, conf))
        names = {
            OPTION_KEYS[option]: f'{where}["OPTIONS"]["{option}"]'
            for option in options
            if option in OPTION_KEYS
        }
        errors.extend(_check_numbers(conf, names))
    errors.extend(_check_values(app_settings))
    errors.extend(_check_webhook(app_settings))
    errors.extend(_check_routing())
    return errors


def _check_routing() -> Iterator[CheckMessage]:
    """The three models reference one another and are written in one transaction (a
    webhook event, its Delivery, the suppression it adds): one database for all."""
    from .models import Delivery, DeliveryEvent, Suppression

    models = (Delivery, DeliveryEvent, Suppression)
    aliases = {model.__name__: router.db_for_write(model) for model in models}
    if len(set(aliases.values())) > 1:
        where = ", ".join(f'{name} to "{alias}"' for name, alias in aliases.items())
        yield Error(
            f"Your DATABASE_ROUTERS write the cloudmails models to different databases ({where}).",
            hint='Route every model of the "cloudmails" app to one database, e.g. by '
            'model._meta.app_label == "cloudmails" in db_for_read and db_for_write.',
            id="cloudmails.E007",
        )


def _unknown_keys(user: Mapping[str, Any]) -> Iterator[CheckMessage]:
    for key in user:
        if key in DEFAULTS:
            continue
        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        hint = f'Did you mean "{close[0]}"?' if close else "Known keys: " + ", ".join(DEFAULTS)
        yield Error(f'CLOUDMAILS has an unknown key "{key}".', hint=hint, id="cloudmails.E004")


def _check_backend(where: str, conf: CloudMailsSettings) -> Iterator[CheckMessage]:
    if not conf.api_key:
        yield Error(
            f"{where} uses the CloudMails backend, but no API key is set.",
            hint='Set CLOUDMAILS["API_KEY"], the CLOUDMAILS_API_KEY environment '
            'variable, or an "api_key" option.',
            id="cloudmails.E001",
        )
    parts = urlsplit(conf.api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        yield Error(
            f'{where}: API_URL "{conf.api_url}" is not an http(s) URL.',
            hint='Use the base URL of the API, e.g. "https://api.cloudmails.eu/v1".',
            id="cloudmails.E002",
        )


def _check_numbers(conf: CloudMailsSettings, names: Mapping[str, str]) -> Iterator[CheckMessage]:
    """Range checks of the numeric settings in ``names`` (key -> how the user wrote it)."""
    for key, name in names.items():
        option = BY_KEY.get(key)
        if option is None or not option.numeric:
            continue
        value = conf.get(key)
        if value is None and option.nullable:
            continue
        low, high = option.lowest, option.highest
        assert low is not None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            allowed = "None or " if option.nullable else ""
            yield Error(
                f"{name} must be {allowed}a number of at least {low}, not {value!r}.",
                hint=f"Remove it to use the default, {option.default!r}.",
                id="cloudmails.E005",
            )
        elif high is not None and value > high:
            yield Error(
                f"{name} may be at most {high}, not {value!r}.",
                hint=f"Remove it to use the default, {option.default!r}.",
                id="cloudmails.E005",
            )


def _check_values(conf: CloudMailsSettings) -> Iterator[CheckMessage]:
    yield from _check_numbers(conf, {key: f'CLOUDMAILS["{key}"]' for key in DEFAULTS})
    retention = conf.get("BODY_RETENTION_DAYS")
    if retention is not None and (not isinstance(retention, int) or retention < 0):
        yield Error(
            'CLOUDMAILS["BODY_RETENTION_DAYS"] must be None or a whole number of days.',
            hint="None keeps message bodies for ever.",
            id="cloudmails.E005",
        )
    unknown = conf.suppress_on - set(SUPPRESSION_REASONS)
    if unknown:
        yield Error(
            f'CLOUDMAILS["SUPPRESS_ON"] has unknown reasons: {", ".join(sorted(unknown))}.',
            hint="Choose from " + ", ".join(SUPPRESSION_REASONS) + ".",
            id="cloudmails.E005",
        )
    schedule = conf.get("POLL_SCHEDULE")
    if not (
        isinstance(schedule, (list, tuple))
        and schedule
        and all(
            isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay > 0
            for delay in schedule
        )
    ):
        yield Error(
            'CLOUDMAILS["POLL_SCHEDULE"] must be a non-empty list of seconds, each above 0.',
            hint="For example (60, 300, 1800, 7200, 43200): 1 min, 5 min, 30 min, 2 h, 12 h.",
            id="cloudmails.E005",
        )
    if conf.suppressed_recipients not in SUPPRESSED_RECIPIENT_ACTIONS:
        yield Error(
            'CLOUDMAILS["SUPPRESSED_RECIPIENTS"] must be "fail" or "raise".',
            hint='"fail" records a failed Delivery; "raise" raises CloudMailsSuppressed.',
            id="cloudmails.E005",
        )


def _webhook_routed() -> bool:
    try:
        reverse("cloudmails:webhook")
    except NoReverseMatch:
        return False
    return True


def _check_webhook(conf: CloudMailsSettings) -> Iterator[CheckMessage]:
    secrets = conf.webhook_secrets
    for secret in secrets:
        user, sep, password = str(secret).partition(":")
        if not (isinstance(secret, str) and sep and user and password):
            yield Error(
                'CLOUDMAILS["WEBHOOK_SECRET"] must be "user:password" (or a list of them), '
                "neither half empty; the webhook ignores any other entry.",
                hint="Put the same credentials in the webhook URL you give CloudMails: "
                "https://user:password@your.site/cloudmails/webhook/",
                id="cloudmails.E006",
            )
    for secret in conf.webhook_signing_secrets:
        if not (isinstance(secret, str) and signing.is_valid_secret(secret)):
            yield Error(
                'CLOUDMAILS["WEBHOOK_SIGNING_SECRET"] must be "whsec_" followed by base64; '
                "the webhook ignores any other entry.",
                hint="Copy the signing secret exactly as CloudMails shows it.",
                id="cloudmails.E006",
            )
    if not secrets and _webhook_routed():
        yield Error(
            "The CloudMails webhook URL is routed, but WEBHOOK_SECRET is not set, "
            "so it would refuse every event.",
            hint='Set CLOUDMAILS["WEBHOOK_SECRET"] = "user:password" and put those '
            "credentials in the webhook URL configured at CloudMails.",
            id="cloudmails.E003",
        )
