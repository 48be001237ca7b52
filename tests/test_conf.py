"""CloudMailsSettings: defaults, the environment fallback and per-backend overrides."""

from __future__ import annotations

from typing import Any

import pytest

from django_cloudmails.conf import DEFAULTS, CloudMailsSettings


def test_defaults_apply_when_a_key_is_absent(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "k"}
    conf = CloudMailsSettings()

    assert conf.api_url == "https://api.cloudmails.eu/v1"
    assert conf.timeout == DEFAULTS["TIMEOUT"]
    assert conf.batch_size == 1000
    assert conf.webhook_secrets == ()


def test_settings_are_read_lazily_on_each_access(settings: Any) -> None:
    conf = CloudMailsSettings()
    settings.CLOUDMAILS = {"API_KEY": "first"}
    assert conf.api_key == "first"

    settings.CLOUDMAILS = {"API_KEY": "second"}
    assert conf.api_key == "second"


def test_api_key_falls_back_to_the_environment(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CLOUDMAILS = {}
    monkeypatch.setenv("CLOUDMAILS_API_KEY", "from-env")

    assert CloudMailsSettings().api_key == "from-env"


def test_setting_wins_over_the_environment(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CLOUDMAILS = {"API_KEY": "from-settings"}
    monkeypatch.setenv("CLOUDMAILS_API_KEY", "from-env")

    assert CloudMailsSettings().api_key == "from-settings"


def test_backend_options_override_the_dict(settings: Any) -> None:
    settings.CLOUDMAILS = {"API_KEY": "global", "TIMEOUT": 10}
    conf = CloudMailsSettings({"api_key": "alias-key", "timeout": 3})

    assert (conf.api_key, conf.timeout) == ("alias-key", 3.0)


def test_a_single_webhook_secret_becomes_a_tuple(settings: Any) -> None:
    settings.CLOUDMAILS = {"WEBHOOK_SECRET": "hook:pw"}

    assert CloudMailsSettings().webhook_secrets == ("hook:pw",)


def test_a_list_of_webhook_secrets_allows_rotation(settings: Any) -> None:
    settings.CLOUDMAILS = {"WEBHOOK_SECRET": ["hook:new", "hook:old"]}

    assert CloudMailsSettings().webhook_secrets == ("hook:new", "hook:old")


def test_retry_policy_is_built_from_the_settings(settings: Any) -> None:
    settings.CLOUDMAILS = {"RETRY_ATTEMPTS": 5, "RETRY_BACKOFF": 2, "RETRY_MAX_BACKOFF": 9}
    policy = CloudMailsSettings().retry_policy

    assert (policy.attempts, policy.backoff, policy.max_backoff) == (5, 2.0, 9.0)


def test_a_missing_cloudmails_setting_means_all_defaults(settings: Any) -> None:
    del settings.CLOUDMAILS

    assert CloudMailsSettings().suppressed_recipients == "fail"
