"""Django 6.1 MAILERS aliases (DEP 18), and EMAIL_BACKEND on earlier versions."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage

from django_cloudmails.backends import EmailBackend
from django_cloudmails.models import Delivery

OURS = "django_cloudmails.backends.EmailBackend"
needs_mailers = pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is Django 6.1+")
before_mailers = pytest.mark.skipif(
    django.VERSION >= (6, 1), reason="EMAIL_BACKEND is deprecated on Django 6.1+"
)
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_key_sandbox() -> Iterator[Any]:
    from django_cloudmails.sandbox import Sandbox

    with Sandbox(api_key=["key-a", "key-b"], verified_senders=["@shop.example"]) as sb:
        yield sb


@pytest.fixture
def mailers(settings: Any, two_key_sandbox: Any) -> dict[str, Any]:
    """Two aliases with their own keys; CLOUDMAILS points at a dead URL on purpose."""
    settings.CLOUDMAILS = {
        "API_KEY": "unused",
        "API_URL": "http://127.0.0.1:9/v1",
        "RETRY_BACKOFF": 0.0,
    }
    settings.MAILERS = {
        "default": {
            "BACKEND": OURS,
            "OPTIONS": {"api_key": "key-a", "api_url": two_key_sandbox.url},
        },
        "bulk": {
            "BACKEND": OURS,
            "OPTIONS": {"api_key": "key-b", "api_url": two_key_sandbox.url, "batch_size": 2},
        },
    }
    return settings.MAILERS  # type: ignore[no-any-return]


def authorization(record: Any) -> str:
    return next(v for k, v in record.headers.items() if k.lower() == "authorization")


@needs_mailers
def test_each_alias_sends_with_its_own_api_key(mailers: Any, two_key_sandbox: Any) -> None:
    mail.send_mail("A", "Body", None, ["ann@example.com"])
    mail.send_mail("B", "Body", None, ["bob@example.com"], using="bulk")

    assert [authorization(r) for r in two_key_sandbox.requests] == [
        "Bearer key-a",
        "Bearer key-b",
    ]


@needs_mailers
def test_each_delivery_records_its_alias(mailers: Any, two_key_sandbox: Any) -> None:
    mail.send_mail("A", "Body", None, ["ann@example.com"])
    EmailMessage("B", "Body", None, ["bob@example.com"]).send(using="bulk")

    assert dict(Delivery.objects.values_list("subject", "alias")) == {"A": "default", "B": "bulk"}


@needs_mailers
def test_options_override_the_cloudmails_setting(mailers: Any, two_key_sandbox: Any) -> None:
    messages = [EmailMessage("Hi", "Body", None, [f"u{i}@example.com"]) for i in range(3)]

    assert mail.mailers["bulk"].send_messages(messages) == 3
    batches = [r for r in two_key_sandbox.requests if r.path.endswith("/send/batch")]
    assert [len(r.json["messages"]) for r in batches] == [2, 1]


@needs_mailers
def test_unknown_option_raises_invalid_mailer(settings: Any) -> None:
    settings.MAILERS = {"default": {"BACKEND": OURS, "OPTIONS": {"api_kye": "k"}}}

    with pytest.raises(mail.InvalidMailer, match="api_kye"):
        mail.mailers["default"]


@needs_mailers
def test_building_and_sending_raises_no_deprecation_warning(
    mailers: Any, two_key_sandbox: Any
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = mail.mailers["bulk"]
        backend.send_messages([EmailMessage("Hi", "Body", None, ["ann@example.com"])])
        EmailBackend(fail_silently=True, alias="bulk").send_messages([])

    assert [str(w.message) for w in caught] == []


@needs_mailers
def test_fail_silently_is_our_own_attribute(mailers: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = EmailBackend(fail_silently=True, alias="default", api_key="wrong")
        assert backend.fail_silently is True

    assert caught == []


@needs_mailers
def test_fail_silently_from_the_deprecated_get_connection_is_honoured(
    mailers: Any, two_key_sandbox: Any
) -> None:
    from django.utils.deprecation import RemovedInDjango2028Warning

    # Django itself warns about get_connection(); our backend must accept the kwarg.
    with pytest.warns(RemovedInDjango2028Warning, match="get_connection"):
        backend = mail.get_connection(fail_silently=True)

    assert backend.fail_silently is True
    assert backend.alias == "default"


@before_mailers
def test_email_backend_setting_and_cloudmails_dict_are_used(
    settings: Any, cloudmails_settings: dict[str, Any], sandbox: Any
) -> None:
    settings.EMAIL_BACKEND = OURS

    assert mail.send_mail("Hi", "Body", None, ["ann@example.com"]) == 1
    assert Delivery.objects.get().alias == "default"
    assert authorization(sandbox.requests[0]) == f"Bearer {cloudmails_settings['API_KEY']}"


@before_mailers
def test_alias_defaults_to_none_before_mailers() -> None:
    assert EmailBackend().alias is None
