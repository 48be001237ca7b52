"""resending.resend(): new rows sent the backend's way, refusals said, errors kept."""

from __future__ import annotations

from typing import Any

import django
import pytest

from django_cloudmails import resending
from django_cloudmails.models import Delivery

pytestmark = pytest.mark.django_db


def test_several_rows_go_out_in_one_batch_request(
    make_delivery: Any, sandbox: Any, use_backend: Any
) -> None:
    rows = [make_delivery(to_email=f"r{i}@example.com") for i in range(3)]

    report = resending.resend(rows)

    assert [original for original, _new in report.resent] == rows
    assert [r.path for r in sandbox.requests if r.method == "POST"] == ["/v1/send/batch"]
    news = [new for _original, new in report.resent]
    assert len({new.idempotency_key for new in news}) == 1
    assert all(new.batch_id and new.status == "sent" for new in news)


def test_the_new_row_is_claimed_before_it_is_sent(
    make_delivery: Any, sandbox: Any, use_backend: Any
) -> None:
    ((_original, new),) = resending.resend([make_delivery()]).resent

    assert Delivery.objects.get(pk=new.pk).attempt_started_at is not None


def test_a_refusal_by_the_api_fails_the_new_row_and_is_reported(
    make_delivery: Any, sandbox: Any, use_backend: Any
) -> None:
    payload = {**make_delivery().payload, "from": "someone@unverified.example"}

    report = resending.resend([make_delivery(payload=payload)])

    ((_original, new),) = report.resent
    assert Delivery.objects.get(pk=new.pk).status == "failed"
    assert report.errors
    assert report.errors[0].status_code == 403


def test_an_alias_without_a_backend_is_refused(make_delivery: Any, use_backend: Any) -> None:
    original = make_delivery(alias="marketing")

    report = resending.resend([original])

    ((refused, why),) = report.refused
    assert refused == original
    assert "marketing" in why
    expected = "MAILERS" if django.VERSION >= (6, 1) else "aliases need Django 6.1+"
    assert expected in why
    assert not Delivery.objects.filter(resent_from=original).exists()
