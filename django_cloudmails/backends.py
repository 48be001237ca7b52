"""Django email backend that sends through the CloudMails API and records every message.

    EMAIL_BACKEND = "django_cloudmails.backends.EmailBackend"        # Django 4.2-6.0
    MAILERS = {"default": {"BACKEND": "django_cloudmails.backends.EmailBackend",
                           "OPTIONS": {"api_key": "..."}}}            # Django 6.1+

``send_messages()`` turns every email into API messages first (refusing what the API
cannot carry before anything is written or sent), writes one Delivery row per API message,
then sends: a lone API message through ``/send``, several through ``/send/batch`` in
chunks of ``BATCH_SIZE``. Nothing needs per-message handling on the batch path: a batch
carries each message whole (attachments included) and reports each one's fate, so one
request per chunk is always the better choice. ``/send`` is used only for a single message
because its answer is synchronous (status ``sent`` at once) and keyed by the row's own id.
Batch requests run in a worker thread, so that each chunk's outcome is stored while the
next chunk is on the wire; the database is only ever used from the calling thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from typing import Any

import django
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from . import lifecycle, outbox
from .client import BatchResult, CloudMailsClient, iter_batches
from .conf import CloudMailsSettings
from .exceptions import (
    CloudMailsAPIError,
    CloudMailsConfigurationError,
    CloudMailsError,
    CloudMailsInvalidMessage,
    CloudMailsSuppressed,
    CloudMailsTimeout,
    CloudMailsUnauthorized,
    CloudMailsUnsupportedFeature,
    error_for_status,
)
from .limits import MAX_BATCH_MESSAGES, MAX_REQUEST_BYTES
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
        self._link_orphans = True

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
            chunks = _chunks(pending, self.settings.batch_size)
            outbox.assign_idempotency_keys(chunks, batch=len(pending) > 1)
            # Rows committed before the call cannot have orphaned events (see outbox).
            self._link_orphans = not outbox.insert(rows)
            for email, group in zip(emails, rows_by_email, strict=True):
                email.cloudmails_deliveries = group  # type: ignore[attr-defined]
            if len(pending) == 1:
                self._send_one(pending[0], errors)
            elif pending:
                self._send_batches(chunks, errors)
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

    def _send_one(self, row: Delivery, errors: list[CloudMailsError]) -> None:
        assert self.client is not None
        try:
            result = self.client.send(outbox.payload_json(row), idempotency_key=row.idempotency_key)
        except CloudMailsError as error:
            _record_error([row], error)
            errors.append(error)
            return
        outbox.mark_sent(
            [(row, result.message_id)], attempts=result.attempts, link_orphans=self._link_orphans
        )

    def _send_batches(self, chunks: list[list[Delivery]], errors: list[CloudMailsError]) -> None:
        """One request per chunk; each chunk's outcome is stored while the next is sent.

        The requests run in one worker thread (the client needs nothing from Django);
        every database write stays on this thread, and every row was written before any
        request. A chunk is sent only once the previous answer is in, so a 401 stops the
        rest. If storing an outcome fails, the chunk in flight stays ``queued``, as after
        a crash: sending it again with the same Idempotency-Key is safe.
        """
        client = self.client
        assert client is not None
        if len(chunks) == 1:  # nothing to overlap: no thread
            self._store_batch(chunks[0], _post_batch(client, chunks[0]), errors)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudmails-batch") as worker:
            in_flight = worker.submit(_post_batch, client, chunks[0])
            for position, chunk in enumerate(chunks):
                outcome = in_flight.result()
                unauthorized = isinstance(outcome, CloudMailsUnauthorized)
                rest = chunks[position + 1 :]
                if rest and not unauthorized:
                    in_flight = worker.submit(_post_batch, client, rest[0])
                self._store_batch(chunk, outcome, errors)
                if unauthorized:
                    # The key is wrong: every further request would be refused the same way.
                    unsent = [row for later in rest for row in later]
                    outbox.mark_failed(unsent, code="401", error=str(outcome), attempts=0)
                    return

    def _store_batch(
        self,
        chunk: list[Delivery],
        outcome: BatchResult | CloudMailsError,
        errors: list[CloudMailsError],
    ) -> None:
        """Store what the API answered for one chunk; collect the errors."""
        if isinstance(outcome, CloudMailsError):
            _record_error(chunk, outcome)
            errors.append(outcome)
            return
        accepted, refused = [], []
        for item in outcome.items:
            row = chunk[item.index]
            if item.message_id:
                accepted.append((row, item.message_id))
            else:
                refused.append((row, item))
        outbox.mark_sent(
            accepted,
            attempts=outcome.attempts,
            batch_id=outcome.batch_id,
            link_orphans=self._link_orphans,
        )
        for row, item in refused:
            detail = item.error
            code = detail.code if detail else 400
            text = detail.message if detail else "no result for this message"
            message = f"CloudMails refused the message to {row.to_email} ({code}): {text}"
            outbox.mark_failed([row], code=str(code), error=message, attempts=outcome.attempts)
            field = detail.field if detail else None
            errors.append(error_for_status(code, message, field=field))


def _post_batch(client: CloudMailsClient, chunk: list[Delivery]) -> BatchResult | CloudMailsError:
    """Send one chunk; the API's refusal is returned, not raised (this runs in a thread)."""
    try:
        return client.send_batch(
            [outbox.payload_json(row) for row in chunk], idempotency_key=chunk[0].idempotency_key
        )
    except CloudMailsError as error:
        return error


def _record_error(rows: list[Delivery], error: CloudMailsError) -> None:
    attempts = max(error.attempts, 1)
    if isinstance(error, CloudMailsAPIError) and (error.status_code or 0) >= 400:
        outbox.mark_failed(rows, code=str(error.status_code), error=str(error), attempts=attempts)
    else:
        code = (
            outbox.ERROR_TIMEOUT if isinstance(error, CloudMailsTimeout) else outbox.ERROR_TRANSPORT
        )
        outbox.mark_unanswered(rows, code=code, error=str(error), attempts=attempts)


#: The request body around the messages: '{"messages":[...]}'.
_ENVELOPE_BYTES = len('{"messages":[]}')


def _chunks(rows: list[Delivery], size: int) -> list[list[Delivery]]:
    """Chunks of at most ``size`` rows, each small enough for one request body."""
    chunks: list[list[Delivery]] = []
    for batch in iter_batches(rows, size):
        current: list[Delivery] = []
        total = _ENVELOPE_BYTES
        for row in batch:
            length = len(outbox.payload_json(row).text) + 1  # its JSON (ASCII) and a comma
            if current and total + length > MAX_REQUEST_BYTES:
                chunks.append(current)
                current, total = [], _ENVELOPE_BYTES
            current.append(row)
            total += length
        if current:
            chunks.append(current)
    return chunks
