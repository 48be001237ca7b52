"""System checks: one test per id, plus the check framework end to end."""

from __future__ import annotations

from typing import Any

import django
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_cloudmails.checks import check_settings

OURS = "django_cloudmails.backends.EmailBackend"


@pytest.fixture(autouse=True)
def configured(settings: Any, monkeypatch: Any) -> Any:
    """Our backend configured the way this Django version expects, with a valid setup."""
    monkeypatch.delenv("CLOUDMAILS_API_KEY", raising=False)
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": OURS}}
    else:
        settings.EMAIL_BACKEND = OURS
    settings.CLOUDMAILS = {"API_KEY": "k", "WEBHOOK_SECRET": "hook:s3cret"}
    return settings


def ids(settings: Any = None) -> list[str]:
    return [message.id for message in check_settings()]


def test_valid_settings_pass() -> None:
    assert ids() == []


def test_e001_missing_api_key(settings: Any) -> None:
    settings.CLOUDMAILS = {"WEBHOOK_SECRET": "hook:s3cret"}

    assert ids() == ["cloudmails.E001"]


def test_e001_not_raised_when_the_environment_has_the_key(settings: Any, monkeypatch: Any) -> None:
    settings.CLOUDMAILS = {"WEBHOOK_SECRET": "hook:s3cret"}
    monkeypatch.setenv("CLOUDMAILS_API_KEY", "from-env")

    assert ids() == []


def test_e001_not_raised_when_our_backend_is_not_used(settings: Any) -> None:
    settings.CLOUDMAILS = {"WEBHOOK_SECRET": "hook:s3cret"}
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    else:
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    assert ids() == []


def test_e002_api_url_that_is_not_http(settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "API_URL": "api.cloudmails.eu/v1"}

    assert ids() == ["cloudmails.E002"]


def test_e003_webhook_routed_without_secret(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k"}

    assert ids() == ["cloudmails.E003"]


def test_e004_unknown_key_suggests_the_close_one(settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "API_KYE": "k"}

    (error,) = check_settings()
    assert error.id == "cloudmails.E004"
    assert "API_KEY" in error.hint


def test_e005_value_out_of_range(settings: Any) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": 5000}

    assert ids() == ["cloudmails.E005"]


def test_e005_cloudmails_not_a_dict(settings: Any) -> None:
    settings.CLOUDMAILS = "k"

    assert ids() == ["cloudmails.E005"]


def test_e006_malformed_webhook_secret(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k", "WEBHOOK_SECRET": "no-colon"}

    assert ids() == ["cloudmails.E006"]


@pytest.mark.parametrize("pair", [":", "hook:", ":pw"])
def test_e006_webhook_secret_with_an_empty_half_says_it_is_ignored(
    settings: Any, pair: str
) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k", "WEBHOOK_SECRET": ["hook:s3cret", pair]}

    (error,) = check_settings()
    assert error.id == "cloudmails.E006"
    assert "neither half empty" in error.msg
    assert "ignores" in error.msg


def test_unpadded_signing_secret_passes_the_checks(settings: Any) -> None:
    settings.CLOUDMAILS = {
        "API_KEY": "k",
        "WEBHOOK_SECRET": "hook:s3cret",
        "WEBHOOK_SIGNING_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa",
    }

    assert ids() == []


def test_e006_signing_secret_that_is_not_base64(settings: Any) -> None:
    settings.CLOUDMAILS = {
        "API_KEY": "k",
        "WEBHOOK_SECRET": "hook:s3cret",
        "WEBHOOK_SIGNING_SECRET": "whsec_!!!",
    }

    assert ids() == ["cloudmails.E006"]


def test_e006_webhook_secret_list_with_a_non_string(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k", "WEBHOOK_SECRET": ["hook:s3cret", 42]}

    assert ids() == ["cloudmails.E006"]


@pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is Django 6.1+")
def test_e005_names_the_mailers_option_out_of_range(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k", "WEBHOOK_SECRET": "hook:s3cret"}
    settings.MAILERS = {
        "default": {"BACKEND": OURS},
        "bulk": {"BACKEND": OURS, "OPTIONS": {"batch_size": 5000, "timeout": "30s"}},
    }

    errors = check_settings()
    assert [error.id for error in errors] == ["cloudmails.E005", "cloudmails.E005"]
    assert 'MAILERS["bulk"]["OPTIONS"]["batch_size"]' in errors[0].msg + errors[1].msg
    assert 'MAILERS["bulk"]["OPTIONS"]["timeout"]' in errors[0].msg + errors[1].msg


@pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is Django 6.1+")
def test_e001_names_the_mailers_alias_without_a_key(settings: Any) -> None:
    settings.CLOUDMAILS = {"WEBHOOK_SECRET": "hook:s3cret"}
    settings.MAILERS = {
        "default": {"BACKEND": OURS, "OPTIONS": {"api_key": "a"}},
        "bulk": {"BACKEND": OURS},
    }

    (error,) = check_settings()
    assert error.id == "cloudmails.E001"
    assert 'MAILERS["bulk"]' in error.msg


@pytest.mark.parametrize(
    "schedule", [[], [60, 0], ["60"], 60, [True]], ids=["empty", "zero", "text", "number", "bool"]
)
def test_e005_poll_schedule_that_is_not_a_list_of_positive_seconds(
    settings: Any, schedule: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "POLL_SCHEDULE": schedule}

    assert ids() == ["cloudmails.E005"]


class SplitRouter:
    """Writes webhook events to another database than the rest of the app."""

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "events" if model.__name__ == "DeliveryEvent" else None


class AppRouter:
    """Routes the whole app to one database: allowed."""

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "mail" if model._meta.app_label == "cloudmails" else None


def test_e007_routers_that_split_the_app_across_databases(settings: Any) -> None:
    settings.DATABASE_ROUTERS = [SplitRouter()]

    (message,) = check_settings()
    assert message.id == "cloudmails.E007"
    assert 'DeliveryEvent to "events"' in message.msg
    assert "app_label" in (message.hint or "")


def test_e007_not_raised_when_the_app_is_routed_together(settings: Any) -> None:
    settings.DATABASE_ROUTERS = [AppRouter()]

    assert ids() == []


@pytest.mark.django_db  # Django 6.1's checks query the database
def test_check_command_reports_our_errors(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k", "WEBHOOK_SECRET": "hook:s3cret", "TIMEOUT": -1}

    with pytest.raises(SystemCheckError, match=r"cloudmails\.E005"):
        call_command("check")


@pytest.mark.django_db
def test_check_command_passes_with_valid_settings(capsys: Any) -> None:
    call_command("check")

    assert "no issues" in capsys.readouterr().out
