"""Sending Delivery rows that are already written, and storing what the API answered.

Engine-free: the plain backend calls it right after writing its rows, and background
workers (Celery tasks, recovery) call it with rows they claimed. A lone row goes through
``/send``; several through ``/send/batch``, one request per chunk of ``batch_size``.
Nothing needs per-message handling on the batch path: a batch carries each message whole
(attachments included) and reports each one's fate, so one request per chunk is always
the better choice. ``/send`` is used only for a single row because its answer is
synchronous (status ``sent`` at once) and keyed by the row's own id.

Batch requests run in a worker thread, so that each chunk's outcome is stored while the
next chunk is on the wire; the database is only ever used from the calling thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from . import outbox
from .client import BatchResult, CloudMailsClient, iter_batches
from .exceptions import (
    CloudMailsAPIError,
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


class Dispatcher:
    """Sends written rows through ``client`` and stores each outcome on them.

    ``link_orphans`` is passed on to :func:`outbox.mark_sent`: False only when the rows
    were committed before the call (every event then finds its row by the Delivery id in
    ``custom_args``). Errors are collected in ``errors`` (the first one is what the
    backend raises), never raised from here.
    """

    def __init__(self, client: CloudMailsClient, *, link_orphans: bool = True) -> None:
        self.client = client
        self.link_orphans = link_orphans
        self.errors: list[CloudMailsError] = []

    def send(self, requests: list[list[Delivery]]) -> None:
        """Send ``requests`` (rows grouped as they go out, each group under its rows'
        shared Idempotency-Key); a lone row of a lone group goes through ``/send``."""
        if len(requests) == 1 and len(requests[0]) == 1:
            self.send_one(requests[0][0])
        elif requests:
            self.send_batches(requests)

    def send_one(self, row: Delivery) -> None:
        try:
            result = self.client.send(outbox.payload_json(row), idempotency_key=row.idempotency_key)
        except CloudMailsError as error:
            record_error([row], error)
            self.errors.append(error)
            return
        outbox.mark_sent(
            [(row, result.message_id)], attempts=result.attempts, link_orphans=self.link_orphans
        )

    def send_batches(self, requests: list[list[Delivery]]) -> None:
        """One request per chunk; each chunk's outcome is stored while the next is sent.

        The requests run in one worker thread (the client needs nothing from Django);
        every database write stays on this thread, and every row was written before any
        request. A chunk is sent only once the previous answer is in, so a 401 stops the
        rest. If storing an outcome fails, the chunk in flight stays ``queued``, as after
        a crash: sending it again with the same Idempotency-Key is safe.
        """
        client = self.client
        if len(requests) == 1:  # nothing to overlap: no thread
            self.store_batch(requests[0], post_batch(client, requests[0]))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudmails-batch") as worker:
            in_flight = worker.submit(post_batch, client, requests[0])
            for position, chunk in enumerate(requests):
                outcome = in_flight.result()
                unauthorized = isinstance(outcome, CloudMailsUnauthorized)
                rest = requests[position + 1 :]
                if rest and not unauthorized:
                    in_flight = worker.submit(post_batch, client, rest[0])
                self.store_batch(chunk, outcome)
                if unauthorized:
                    # The key is wrong: every further request would be refused the same way.
                    unsent = [row for later in rest for row in later]
                    outbox.mark_failed(unsent, code="401", error=str(outcome), attempts=0)
                    return

    def store_batch(self, chunk: list[Delivery], outcome: BatchResult | CloudMailsError) -> None:
        """Store what the API answered for one chunk; collect the errors."""
        if isinstance(outcome, CloudMailsError):
            record_error(chunk, outcome)
            self.errors.append(outcome)
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
            outbox.mark_failed([row], code=str(code), error=message, attempts=outcome.attempts)
            field = detail.field if detail else None
            self.errors.append(error_for_status(code, message, field=field))


def post_batch(client: CloudMailsClient, chunk: list[Delivery]) -> BatchResult | CloudMailsError:
    """Send one chunk; the API's refusal is returned, not raised (this runs in a thread)."""
    try:
        return client.send_batch(
            [outbox.payload_json(row) for row in chunk], idempotency_key=chunk[0].idempotency_key
        )
    except CloudMailsError as error:
        return error


def record_error(rows: list[Delivery], error: CloudMailsError) -> None:
    """Store a request's error on its rows: a refusal fails them, no answer leaves them
    ``queued`` with the error recorded."""
    attempts = max(error.attempts, 1)
    if isinstance(error, CloudMailsAPIError) and (error.status_code or 0) >= 400:
        outbox.mark_failed(rows, code=str(error.status_code), error=str(error), attempts=attempts)
    else:
        code = (
            outbox.ERROR_TIMEOUT if isinstance(error, CloudMailsTimeout) else outbox.ERROR_TRANSPORT
        )
        outbox.mark_unanswered(rows, code=code, error=str(error), attempts=attempts)
