"""Django email backend that sends through the CloudMails API and records every message.

    EMAIL_BACKEND = "django_cloudmails.backends.EmailBackend"        # Django 4.2-6.0
    MAILERS = {"default": {"BACKEND": "django_cloudmails.backends.EmailBackend",
                           "OPTIONS": {"api_key": "..."}}}            # Django 6.1+

``send_messages()`` turns every email into API messages first (refusing what the API
cannot carry before anything is written or sent), writes one Delivery row per API message,
then hands them to :mod:`~.dispatch`, which sends them (a lone API message through
``/send``, several through ``/send/batch`` in chunks of ``BATCH_SIZE``) and stores each
outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import django
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from . import dispatch, lifecycle, outbox
from .client import CloudMailsClient
from .conf import CloudMailsSettings
from .exceptions import (
    CloudMailsConfigurationError,
    CloudMailsError,
    CloudMailsInvalidMessage,
    CloudMailsSuppressed,
    CloudMailsUnsupportedFeature,
)
from .limits import MAX_BATCH_MESSAGES
from .models import Delivery
from .payloads import build_api_messages
from .suppression import normalize_address, suppressed

_MAILERS = django.VERSION >= (6, 1)
DEFAULT_ALIAS = "default"
_MESSAGE_ID = attrgetter("message_id")


class EmailBackend(BaseEmailBackend):
    """Sends Django email through CloudMails; one Delivery row per API message.

    Keyword arguments (``get_connection(api_key=...)`` or ``MAILERS`` ``OPTIONS``)
    override the ``CLOUDMAILS`` setting for this backend only. After sending, each
    EmailMessage has ``cloudmails_deliveries``: its Delivery rows, in ``to`` order.
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        alias: str | None = None,
        api_key: str | None = None,
        api_url: str | None = None,
        timeout: float | None = None,
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
        retry_max_backoff: float | None = None,
        batch_size: int | None = None,
        ignore_unsupported_features: bool | None = None,
        **kwargs: Any,
    ) -> None:
        given = {
            "api_key": api_key,
            "api_url": api_url,
            "timeout": timeout,
            "retry_attempts": retry_attempts,
            "retry_backoff": retry_backoff,
            "retry_max_backoff": retry_max_backoff,
            "batch_size": batch_size,
            "ignore_unsupported_features": ignore_unsupported_features,
        }
        if _MAILERS:
            # Django 6.1 warns when fail_silently reaches BaseEmailBackend, and raises
            # InvalidMailer for unknown OPTIONS: keep the former, pass the rest on.
            super().__init__(alias=alias, **kwargs)
        else:
            super().__init__(fail_silently=fail_silently, **kwargs)
        self.fail_silently = fail_silently
        self.alias = alias
        self.settings = CloudMailsSettings({k: v for k, v in given.items() if v is not None})
        self.client: CloudMailsClient | None = None

    def open(self) -> bool:
        """Open the API session; True when this call opened it (and must close it)."""
        if self.client is not None:
            return False
        api_key = self.settings.api_key
        if not api_key:
            raise CloudMailsConfigurationError(
                'No CloudMails API key: set CLOUDMAILS["API_KEY"], the CLOUDMAILS_API_KEY '
                'environment variable or the backend\'s "api_key" option.'
            )
        try:
            timeout, retry = self.settings.timeout, self.settings.retry_policy
            batch_size = self.settings.batch_size
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
        self.client = CloudMailsClient(
            api_key, api_url=self.settings.api_url, timeout=timeout, retry=retry
        )
        return True

    def close(self) -> None:
        """Close the API session, if one is open."""
        if self.client is not None:
            client, self.client = self.client, None
            client.close()

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send the emails; return how many were accepted whole by the API."""
        if not email_messages:
            return 0
        try:
            return self._send(list(email_messages))
        except CloudMailsError:
            if self.fail_silently:
                return 0
            raise

    def _send(self, emails: list[EmailMessage]) -> int:
        alias = self.alias or DEFAULT_ALIAS
        ignore = self.settings.ignore_unsupported_features
        rows_by_email: list[list[Delivery]] = []
        for email in emails:
            try:
                api_messages = build_api_messages(email, ignore_unsupported=ignore)
            except CloudMailsInvalidMessage as error:
                if not self.fail_silently:
                    raise
                code = (
                    outbox.ERROR_UNSUPPORTED
                    if isinstance(error, CloudMailsUnsupportedFeature)
                    else outbox.ERROR_INVALID
                )
                rows_by_email.append(
                    [outbox.invalid_delivery(email, error, alias=alias, code=code)]
                )
                continue
            rows_by_email.append([outbox.new_delivery(m, alias=alias) for m in api_messages])

        rows = [row for group in rows_by_email for row in group]
        pending = self._apply_suppressions([row for row in rows if row.status == lifecycle.QUEUED])
        # Opened before anything is written: a broken configuration leaves no row behind.
        opened = self.open() if pending else False
        errors: list[CloudMailsError] = []
        try:
            requests = dispatch.chunks(pending, self.settings.batch_size)
            outbox.assign_idempotency_keys(requests, batch=len(pending) > 1)
            # Rows committed before the call cannot have orphaned events (see outbox).
            link_orphans = not outbox.insert(rows, attempt_started=True)
            for email, group in zip(emails, rows_by_email, strict=True):
                email.cloudmails_deliveries = group  # type: ignore[attr-defined]
            if pending:
                assert self.client is not None
                dispatcher = dispatch.Dispatcher(self.client, link_orphans=link_orphans)
                dispatcher.send(requests)
                errors = dispatcher.errors
        finally:
            if opened:
                self.close()
        if errors and not self.fail_silently:
            raise errors[0]
        return sum(all(map(_MESSAGE_ID, group)) for group in rows_by_email)

    def _apply_suppressions(self, rows: list[Delivery]) -> list[Delivery]:
        """Fail (or raise for) rows whose recipient is suppressed; return the others."""
        reasons = suppressed(row.to_email for row in rows)
        if not reasons:
            return rows
        pending = []
        for row in rows:
            reason = reasons.get(normalize_address(row.to_email))
            if reason is None:
                pending.append(row)
                continue
            message = f"{row.to_email} is on the suppression list ({reason}); not sent."
            if self.settings.suppressed_recipients == "raise" and not self.fail_silently:
                raise CloudMailsSuppressed(message, address=row.to_email, reason=reason)
            outbox.refuse(row, outbox.ERROR_SUPPRESSED, message)
        return pending
