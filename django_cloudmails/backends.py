"""Django email backends that send through the CloudMails API and record every message.

    EMAIL_BACKEND = "django_cloudmails.backends.EmailBackend"        # Django 4.2-6.0
    MAILERS = {"default": {"BACKEND": "django_cloudmails.backends.EmailBackend",
                           "OPTIONS": {"api_key": "..."}}}            # Django 6.1+

Both backends turn every email into API messages first (refusing what the API cannot
carry before anything is written or sent) and write one Delivery row per API message.
:class:`EmailBackend` then hands the rows to :mod:`~.dispatch`, which sends them (a lone
API message through ``/send``, several through ``/send/batch`` in chunks of
``BATCH_SIZE``) and stores each outcome. :class:`CeleryEmailBackend` writes the rows in
the caller's transaction and, once it commits, gives their ids to a Celery worker
(:mod:`django_cloudmails.tasks`), which sends them the same way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import partial
from operator import attrgetter
from typing import Any

import django
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import router, transaction

from . import dispatch, lifecycle, outbox, pacing
from .anymail_compat import set_anymail_status
from .client import CloudMailsClient
from .conf import BY_KEY, CloudMailsSettings, mailer_settings
from .exceptions import (
    CloudMailsConfigurationError,
    CloudMailsError,
    CloudMailsInvalidMessage,
    CloudMailsSuppressed,
    CloudMailsUnsupportedFeature,
)
from .models import Delivery
from .payloads import build_api_messages
from .suppression import normalize_address, suppressed

_MAILERS = django.VERSION >= (6, 1)
DEFAULT_ALIAS = "default"
_MESSAGE_ID = attrgetter("message_id")
#: The settings only the worker uses (CeleryEmailBackend): it reads them for the row's
#: alias, from CLOUDMAILS or the alias's MAILERS OPTIONS.
WORKER_SETTINGS = (
    "API_KEY",
    "API_URL",
    "TIMEOUT",
    "RETRY_ATTEMPTS",
    "RETRY_BACKOFF",
    "RETRY_MAX_BACKOFF",
)


class _CloudMailsBackend(BaseEmailBackend):
    """What both backends share: their options, building the rows, suppression."""

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
        self._check_options()

    def _check_options(self) -> None:
        """Refuse options this backend cannot honour (a configuration error)."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send the emails; return how many were sent (see each backend)."""
        if not email_messages:
            return 0
        try:
            return self._send(list(email_messages))
        except CloudMailsError:
            if self.fail_silently:
                return 0
            raise

    def _send(self, emails: list[EmailMessage]) -> int:
        raise NotImplementedError

    def _prepare(self, emails: list[EmailMessage]) -> tuple[list[list[Delivery]], list[Delivery]]:
        """Each email's rows (unsaved) and the rows to send.

        An email that cannot become API messages raises, or with ``fail_silently`` gets
        one ``failed`` row; a suppressed recipient's row is ``failed`` (or raises).
        """
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
        queued = [row for group in rows_by_email for row in group if row.status == lifecycle.QUEUED]
        return rows_by_email, self._apply_suppressions(queued)

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

    @staticmethod
    def _write(
        emails: list[EmailMessage],
        rows_by_email: list[list[Delivery]],
        requests: list[list[Delivery]],
        *,
        batch: bool,
        attempt_started: bool,
    ) -> bool:
        """Key and insert every row; return whether they are committed already.

        ``attempt_started``: the rows go out right away (see :func:`outbox.insert`).
        """
        for rows in requests:
            outbox.assign_idempotency_keys([rows], batch=batch or len(rows) > 1)
        committed = outbox.insert(
            [row for group in rows_by_email for row in group], attempt_started=attempt_started
        )
        for email, group in zip(emails, rows_by_email, strict=True):
            email.cloudmails_deliveries = group  # type: ignore[attr-defined]
        return committed


class EmailBackend(_CloudMailsBackend):
    """Sends Django email through CloudMails; one Delivery row per API message.

    Keyword arguments (``get_connection(api_key=...)`` or ``MAILERS`` ``OPTIONS``)
    override the ``CLOUDMAILS`` setting for this backend only. After sending, each
    EmailMessage has ``cloudmails_deliveries``: its Delivery rows, in ``to`` order.
    ``send_messages`` returns how many emails the API accepted whole.
    """

    client: CloudMailsClient | None = None

    def open(self) -> bool:
        """Open the API session; True when this call opened it (and must close it)."""
        if self.client is not None:
            return False
        self.client = self.settings.client(self.settings.retry_policy)
        return True

    def close(self) -> None:
        """Close the API session, if one is open."""
        if self.client is not None:
            client, self.client = self.client, None
            client.close()

    def _send(self, emails: list[EmailMessage]) -> int:
        rows_by_email, pending = self._prepare(emails)
        # Opened before anything is written: a broken configuration leaves no row behind.
        opened = self.open() if pending else False
        errors: list[CloudMailsError] = []
        try:
            requests = dispatch.chunks(pending, self.settings.batch_size)
            # Rows committed before the call cannot have orphaned events (see outbox).
            committed = self._write(
                emails, rows_by_email, requests, batch=len(pending) > 1, attempt_started=True
            )
            if pending:
                assert self.client is not None
                dispatcher = dispatch.Dispatcher(self.client, link_orphans=not committed)
                dispatcher.send(requests)
                errors = dispatcher.errors
        finally:
            if opened:
                self.close()
        for email, group in zip(emails, rows_by_email, strict=True):
            set_anymail_status(email, group)
        if errors and not self.fail_silently:
            raise errors[0]
        return sum(all(map(_MESSAGE_ID, group)) for group in rows_by_email)


class CeleryEmailBackend(_CloudMailsBackend):
    """Writes the rows in the caller's transaction; a Celery worker sends them.

    ``send_messages`` makes no HTTP request and returns at once. Every email is built and
    checked here (a bad one raises before anything is stored); its rows are written
    ``queued``, unclaimed (``attempt_started_at`` empty), in the caller's transaction;
    once that commits, :func:`django_cloudmails.tasks.send_deliveries` is enqueued with
    their ids (only ids go through the broker). A rollback leaves no row and enqueues
    nothing. Returns how many emails had every row queued.

    Rows are grouped into API requests here, each with its Idempotency-Key, so whichever
    worker sends them, and however often, a request is always the same. The worker reads
    the connection settings (:data:`WORKER_SETTINGS`) for the row's alias itself, from
    ``CLOUDMAILS`` or the alias's ``MAILERS`` OPTIONS: they cannot be given to
    ``get_connection()`` (a secret has no business in a broker message).
    """

    def _check_options(self) -> None:
        if importlib.util.find_spec("celery") is None:
            raise CloudMailsConfigurationError(
                "CeleryEmailBackend needs Celery: pip install 'django-cloudmails[celery]'."
            )
        worker = mailer_settings(self.alias or DEFAULT_ALIAS)
        ignored = [
            f'"{BY_KEY[key].backend_option}"'
            for key in WORKER_SETTINGS
            if self.settings.get(key) != worker.get(key)
        ]
        if ignored:
            raise CloudMailsConfigurationError(
                f"CeleryEmailBackend was given {', '.join(ignored)}, which the worker would "
                'not see: it reads them from CLOUDMAILS (or, on Django 6.1, the "OPTIONS" '
                "of the MAILERS alias). Set them there."
            )

    def _send(self, emails: list[EmailMessage]) -> int:
        rows_by_email, pending = self._prepare(emails)
        if pending:
            self.settings.check()
        requests = dispatch.chunks(pending, pacing.request_size(self.settings))
        self._write(emails, rows_by_email, requests, batch=False, attempt_started=False)
        for email, group in zip(emails, rows_by_email, strict=True):
            set_anymail_status(email, group)
        if pending:
            from .sending import task_ids

            transaction.on_commit(
                partial(_enqueue, task_ids(requests, self.settings.batch_size)),
                using=router.db_for_write(Delivery),
            )
        return sum(all(row.status == lifecycle.QUEUED for row in group) for group in rows_by_email)


def _enqueue(tasks: list[list[str]]) -> None:
    from .tasks import enqueue_sends

    enqueue_sends(tasks)
