"""Rows written through CeleryEmailBackend, and what the sandbox made of them: shared by
the tests of claims, sending, tasks and reliability."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.mail import EmailMessage

from django_cloudmails.backends import CeleryEmailBackend
from django_cloudmails.identity import DELIVERY_ID_ARG
from django_cloudmails.models import Delivery


def write(count: int, *, subject: str = "Hi") -> list[Delivery]:
    """``count`` one-recipient emails written through CeleryEmailBackend (in one call);
    their rows."""
    emails = [EmailMessage(subject, "Body", None, [f"u{i}@example.com"]) for i in range(count)]
    CeleryEmailBackend().send_messages(emails)
    return [row for email in emails for row in email.cloudmails_deliveries]  # type: ignore[attr-defined]


def ids(rows: list[Delivery]) -> list[str]:
    return [str(row.pk) for row in rows]


def send_requests(sandbox: Any) -> list[Any]:
    """The send requests the sandbox received (answered or not)."""
    return [r for r in sandbox.requests if r.method == "POST" and "/send" in r.path]


def accepted_per_delivery(sandbox: Any) -> Counter[str]:
    """How many times the sandbox accepted a message, by the Delivery id it carried."""
    return Counter(m.payload["custom_args"][DELIVERY_ID_ARG] for m in sandbox.messages)


def statuses() -> Counter[str]:
    """How many rows are in each status."""
    return Counter(Delivery.objects.values_list("status", flat=True))
