"""Limits of the CloudMails API, shared by the client, the backend and the sandbox, and
the one size of our own multi-row SQL statements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Most messages one ``POST /send/batch`` request may carry.
MAX_BATCH_MESSAGES = 1000

#: Largest JSON size of one message, base64 attachments included.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024

#: Largest request body the API reads.
MAX_REQUEST_BYTES = 50 * 1024 * 1024

#: Domain of the simulator addresses whose local part decides a message's fate.
SIMULATOR_DOMAIN = "simulator.cloudmails.test"

#: Rows (or values of an IN list) per SQL statement, well under every database's limit
#: of parameters: the outbox's and the polls' bulk UPDATEs, suppression lookups, orphan
#: linking.
ROWS_PER_STATEMENT = 500


def statement_chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most :data:`ROWS_PER_STATEMENT`, in order."""
    for start in range(0, len(values), ROWS_PER_STATEMENT):
        yield values[start : start + ROWS_PER_STATEMENT]
