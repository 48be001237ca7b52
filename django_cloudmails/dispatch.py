"""Sending Delivery rows that are already written, and storing what the API answered.

Engine-free: the plain backend calls it right after writing its rows, and background
workers (Celery tasks, recovery) call it with rows they claimed. Rows go out grouped as
their requests (:func:`requests_of`): a request keyed for ``/send`` carries one row, a
batch key ``/send/batch`` one chunk. Nothing needs per-message handling on the batch
path: a batch carries each message whole (attachments included) and reports each one's
fate, so one request per chunk is always the better choice. ``/send`` is used only for a
single row because its answer is synchronous (status ``sent`` at once) and keyed by the
row's own id.

Outcomes are honest: a request any attempt of which may have reached the API, with none
succeeding, leaves its rows ``unknown``, never ``failed``; only a definite refusal of
every attempt fails them (see :mod:`~.outbox`).

Batch requests run in a worker thread, so that each chunk's outcome is stored while the
next chunk is on the wire; the database is only ever used from the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import identity, outbox
from .client import BatchResult, CloudMailsClient, iter_batches
from .exceptions import (
    CloudMailsAPIError,
    CloudMailsBadResponse,
    CloudMailsError,
    CloudMailsTimeout,
    CloudMailsUnauthorized,
    error_for_status,
)
from .limits import MAX_REQUEST_BYTES
from .models import Delivery

#: The request body around the messages: '{"messages":[...]}'.
_ENVELOPE_BYTES = len('{"messages":[]}')


def chunks(rows: Sequence[Delivery], size: int) -> list[list[Delivery]]:
    """Chunks of at most ``size`` rows, each small enough for one request body."""
    result: list[list[Delivery]] = []
    for batch in iter_batches(rows, size):
        current: list[Delivery] = []
        total = _ENVELOPE_BYTES
        for row in batch:
            length = len(outbox.payload_json(row).text) + 1  # its JSON (ASCII) and a comma
            if current and total + length > MAX_REQUEST_BYTES:
                result.append(current)
                current, total = [], _ENVELOPE_BYTES
            current.append(row)
            total += length
        if current:
            result.append(current)
    return result


def requests_of(rows: Iterable[Delivery]) -> list[list[Delivery]]:
    """``rows`` grouped as the requests they go out in (by Idempotency-Key), each in
    its order (:func:`identity.in_request_order`), so a resend is the same request."""
    by_key: dict[str, list[Delivery]] = {}
    for row in rows:
        by_key.setdefault(row.idempotency_key or f"row-{row.pk}", []).append(row)
    return [identity.in_request_order(group) for group in by_key.values()]


def by_alias(requests: Iterable[list[Delivery]]) -> dict[str, list[list[Delivery]]]:
    """``requests`` grouped by the mailer alias of their rows (a request has one)."""
    grouped: dict[str, list[list[Delivery]]] = {}
    for request in requests:
        grouped.setdefault(request[0].alias, []).append(request)
    return grouped


def _is_batch(request: Sequence[Delivery]) -> bool:
    key = request[0].idempotency_key
    return identity.is_batch_key(key) if key else len(request) > 1


@dataclass(frozen=True)
class RetryLater:
    """Rows a definite, retryable refusal (429, 5xx, a connection never opened) left as
    they were, handed back to a caller that schedules its own retry."""

    rows: list[Delivery]
    error: CloudMailsError

    @property
    def retry_after(self) -> float | None:
        """Seconds the API asked to wait (429 ``Retry-After``), if it did."""
        value = getattr(self.error, "retry_after", None)
        return None if value is None else float(value)


class Dispatcher:
    """Sends written rows through ``client`` and stores each outcome on them.

    ``link_orphans`` is passed on to :func:`outbox.mark_sent`: False only when the rows
    were committed before the call (every event then finds its row by the Delivery id in
    ``custom_args``). Final errors are collected in ``errors`` (the first one is what
    the backend raises), never raised from here.

    ``retry_later`` is for callers that schedule their own retries (Celery tasks, with a
    client that tries once): a definite retryable refusal leaves the rows' status as it
    is, stops the rest of the call, and is handed back in :attr:`retried` instead of
    failing them. ``resending`` is for rows whose outcome is already unknown (recovery):
    no refusal fails them; they stay ``unknown`` with the error kept.
    """

    def __init__(
        self,
        client: CloudMailsClient,
        *,
        link_orphans: bool = True,
        retry_later: bool = False,
        resending: bool = False,
    ) -> None:
        self.client = client
        self.link_orphans = link_orphans
        self.retry_later = retry_later
        self.resending = resending
        self.errors: list[CloudMailsError] = []
        self.retried: list[RetryLater] = []

    def send(self, requests: Sequence[list[Delivery]]) -> None:
        """Send ``requests`` (rows grouped as they go out, each group under its rows'
        shared Idempotency-Key): single-send keys through ``/send``, the rest batched.
        A 401 (or a refusal handed back) stops the rest, as in :meth:`send_batches`."""
        batches = []
        for position, request in enumerate(requests):
            if _is_batch(request):
                batches.append(request)
                continue
            error = self._send_single(request[0])
            if error is not None and self._stops(error):
                self._stop([*requests[position + 1 :], *batches], error)
                return
        if batches:
            self.send_batches(batches)

    def send_each(
        self,
        requests: Sequence[list[Delivery]],
        *,
        before: Callable[[list[Delivery]], bool] | None = None,
    ) -> int:
        """Send ``requests`` one at a time, in order, in this thread, for callers that act
        between two requests: ``before(request)`` runs first, and False skips it. A 401
        (or a refusal handed back) stops the rest, as in :meth:`send`. Returns how many
        requests went out."""
        sent = 0
        for position, request in enumerate(requests):
            if before is not None and not before(request):
                continue
            sent += 1
            if _is_batch(request):
                outcome = post_batch(self.client, request)
                self.store_batch(request, outcome)
                error = outcome if isinstance(outcome, CloudMailsError) else None
            else:
                error = self._send_single(request[0])
            if error is not None and self._stops(error):
                self._stop(requests[position + 1 :], error)
                break
        return sent

    def _send_single(self, row: Delivery) -> CloudMailsError | None:
        try:
            result = self.client.send(outbox.payload_json(row), idempotency_key=row.idempotency_key)
        except CloudMailsError as error:
            self.store_error([row], error)
            return error
        outbox.mark_sent(
            [(row, result.message_id)], attempts=result.attempts, link_orphans=self.link_orphans
        )
        return None

    def send_batches(self, requests: list[list[Delivery]]) -> None:
        """One request per chunk; each chunk's outcome is stored while the next is sent.

        The requests run in one worker thread (the client needs nothing from Django);
        every database write stays on this thread, and every row was written before any
        request. A chunk is sent only once the previous answer is in, so a 401 (or a
        refusal handed back) stops the rest. If storing an outcome fails, the chunk in
        flight keeps its claim, as after a crash: recovery sends it again under its key.
        """
        client = self.client
        if len(requests) == 1:  # nothing to overlap: no thread
            self.store_batch(requests[0], post_batch(client, requests[0]))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudmails-batch") as worker:
            in_flight = worker.submit(post_batch, client, requests[0])
            for position, chunk in enumerate(requests):
                outcome = in_flight.result()
                stop = self._stops(outcome)
                rest = requests[position + 1 :]
                if rest and not stop:
                    in_flight = worker.submit(post_batch, client, rest[0])
                self.store_batch(chunk, outcome)
                if stop and rest:
                    assert isinstance(outcome, CloudMailsError)
                    self._stop(rest, outcome)
                    return

    def _stops(self, outcome: BatchResult | CloudMailsError) -> bool:
        """Whether no further request should go out after ``outcome``."""
        if not isinstance(outcome, CloudMailsError):
            return False
        # A wrong key refuses every further request the same way.
        if isinstance(outcome, CloudMailsUnauthorized) and not outcome.outcome_unknown:
            return True
        return self._hands_back(outcome)

    def _hands_back(self, error: CloudMailsError) -> bool:
        return (
            self.retry_later
            and not self.resending
            and error.retryable
            and not error.outcome_unknown
        )

    def _stop(self, requests: Sequence[list[Delivery]], error: CloudMailsError) -> None:
        """Requests not sent because of ``error``: handed back, or failed by a 401."""
        unsent = [row for request in requests for row in request]
        if not unsent:
            return
        if self._hands_back(error):
            self.retried.append(RetryLater(unsent, error))
        elif not self.resending:
            outbox.mark_failed(unsent, code=error_code(error), error=str(error), attempts=0)

    def store_batch(self, chunk: list[Delivery], outcome: BatchResult | CloudMailsError) -> None:
        """Store what the API answered for one chunk; collect the errors."""
        if isinstance(outcome, CloudMailsError):
            self.store_error(chunk, outcome)
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
            link_orphans=self.link_orphans,
        )
        for row, item in refused:
            detail = item.error
            code = detail.code if detail else 400
            text = detail.message if detail else "no result for this message"
            message = f"CloudMails refused the message to {row.to_email} ({code}): {text}"
            mark = outbox.mark_unknown if self.resending else outbox.mark_failed
            mark([row], code=str(code), error=message, attempts=outcome.attempts)
            field = detail.field if detail else None
            self.errors.append(error_for_status(code, message, field=field))

    def store_error(self, rows: list[Delivery], error: CloudMailsError) -> bool:
        """Store a request's error on its rows; False when they are handed back.

        Unknown outcome (or a resend): ``unknown``. A retryable refusal with
        ``retry_later``: handed back. Any other definite refusal: ``failed``.
        """
        code, text, attempts = error_code(error), str(error), max(error.attempts, 1)
        if self._hands_back(error):
            outbox.mark_retrying(rows, code=code, error=text, attempts=attempts)
            self.retried.append(RetryLater(rows, error))
            return False
        if error.outcome_unknown or self.resending:
            outbox.mark_unknown(rows, code=code, error=text, attempts=attempts)
        else:
            outbox.mark_failed(rows, code=code, error=text, attempts=attempts)
        self.errors.append(error)
        return True


def error_code(error: CloudMailsError) -> str:
    """What a row's ``error_code`` says about ``error``: the HTTP status of a refusal,
    else how the request failed."""
    if isinstance(error, CloudMailsAPIError) and (error.status_code or 0) >= 400:
        return str(error.status_code)
    if isinstance(error, CloudMailsTimeout):
        return outbox.ERROR_TIMEOUT
    if isinstance(error, CloudMailsBadResponse):
        return outbox.ERROR_BAD_RESPONSE
    return outbox.ERROR_TRANSPORT


def post_batch(client: CloudMailsClient, chunk: list[Delivery]) -> BatchResult | CloudMailsError:
    """Send one chunk; the API's refusal is returned, not raised (this runs in a thread)."""
    try:
        return client.send_batch(
            [outbox.payload_json(row) for row in chunk], idempotency_key=chunk[0].idempotency_key
        )
    except CloudMailsError as error:
        return error
