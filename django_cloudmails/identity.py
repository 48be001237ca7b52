"""How a Delivery is known outside our database: its id in ``custom_args``, and the
Idempotency-Key of the request it goes out in.

Shared by sending (which writes both), receiving (which matches events by the id) and
recovery (which rebuilds a request from its key), so it imports nothing of ours.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Protocol, TypeVar

#: The custom_args key carrying the Delivery id; webhooks match rows by it.
DELIVERY_ID_ARG = "cloudmails_delivery_id"

_SINGLE_PREFIX = "cloudmails-"
_BATCH_PREFIX = "cloudmails-batch-"


def single_key(delivery_id: uuid.UUID) -> str:
    """The Idempotency-Key of a ``POST /send`` carrying one row."""
    return f"{_SINGLE_PREFIX}{delivery_id}"


def batch_key(delivery_ids: Sequence[uuid.UUID]) -> str:
    """The Idempotency-Key of a ``POST /send/batch`` carrying these rows, in this order
    (the order of their ids: see :func:`in_request_order`)."""
    digest = hashlib.sha256("".join(value.hex for value in delivery_ids).encode()).hexdigest()
    return f"{_BATCH_PREFIX}{digest[:40]}"


def is_batch_key(key: str) -> bool:
    return key.startswith(_BATCH_PREFIX)


def request_key(delivery_ids: Sequence[uuid.UUID], *, batch: bool) -> str:
    """The key of a request carrying ``delivery_ids`` in this order."""
    if batch:
        return batch_key(delivery_ids)
    (only,) = delivery_ids
    return single_key(only)


class _HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


Row = TypeVar("Row", bound=_HasId)


def in_request_order(rows: Iterable[Row]) -> list[Row]:
    """The order the rows of one request go out in: by id, so that recovery can rebuild
    the same request (a replayed batch answer is mapped to rows by index)."""
    return sorted(rows, key=_ID)


#: The id as an int: sorting compares ints in C, not UUID objects in Python.
_ID = attrgetter("id.int")
