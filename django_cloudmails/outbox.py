"""The database side of sending: Delivery rows written before the API call, results after.

Rows are written ``queued`` before any request (:func:`insert`), with their UUID made
here and the Idempotency-Key of their request stored, so the id can travel in
``custom_args`` and the key in the header: a crash or a lost response never loses a
message, and sending it again under its key cannot send it twice where the API honours
the key. A row that is about to go out has ``attempt_started_at`` set (the plain backend
writes it so; a worker's claim sets it), so a killed process leaves rows that say so.

Outcomes, each a :mod:`~.lifecycle` effect applied through :mod:`~.updates`, and why:

- accepted (:func:`mark_sent`): ``message_id``, ``sent_at``, ``attempts`` stored; the
  status moves to ``sent`` only from a status below it (a webhook matched through
  ``custom_args`` may already have moved the row further).
- refused, every attempt definitely (:func:`mark_failed`): ``failed``, with
  ``error_code`` (the HTTP status, or ``transport`` for a connection that never opened)
  and ``last_error``.
- an attempt may have reached the API and none succeeded (:func:`mark_unknown`): the
  outcome is unknown: ``unknown`` with the error kept, never ``failed``, whatever the
  later attempts answered. Evidence, a poll or recovery settles it.
- a retryable refusal handed back to a caller that schedules its own retry
  (:func:`mark_retrying`): the status stays, the error and attempts are recorded.

Each payload is encoded to JSON once (:func:`payload_json`): the same text is written
to the row and sent in the request body. Message ids of a batch are stored with one
``UPDATE ... FROM (VALUES ...)`` per chunk (:func:`updates.update_rows`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

from django.db import connections, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils import timezone
from django.utils.encoding import force_str

from . import identity, insert_sql, lifecycle, orphans, updates
from .client import RawJSON
from .limits import ROWS_PER_STATEMENT
from .models import Delivery, delivery_database
from .payloads import ApiMessage, with_delivery_id

ERROR_INVALID = "invalid"
ERROR_UNSUPPORTED = "unsupported"
ERROR_SUPPRESSED = "suppressed"
ERROR_TRANSPORT = "transport"
ERROR_TIMEOUT = "timeout"
ERROR_BAD_RESPONSE = "bad_response"

#: Sent by ``Model.__init__``; a receiver of either for Delivery makes new_delivery use it.
_INIT_SIGNALS = (pre_init, post_init)
#: Where new_delivery keeps the encoded payload on the instance (not a model field).
_PAYLOAD_JSON = "_cloudmails_payload_json"


def assign_idempotency_keys(requests: Sequence[list[Delivery]], *, batch: bool) -> None:
    """Put each request's rows in the order they go out in, and give each row the
    Idempotency-Key of its request.

    Called before the rows are written, so the key is stored with them. A single send is
    keyed by its row's id; a batch request by the ids of its rows, in order: the order of
    their ids (:func:`identity.in_request_order`), which recovery can rebuild.
    """
    for rows in requests:
        rows[:] = identity.in_request_order(rows)
        key = identity.request_key([row.id for row in rows], batch=batch)
        for row in rows:
            row.idempotency_key = key


def new_delivery(api_message: ApiMessage, *, alias: str) -> Delivery:
    """A ``queued`` row for one API message; its payload now carries the row's id.

    Built from a copy of the default values (see :func:`_instance`): keyword
    construction of a 36-field model costs as much as the rest of preparing a batch
    message, and even positional construction a tenth of it.
    """
    delivery_id = uuid.uuid4()
    payload = with_delivery_id(api_message, str(delivery_id))
    template, fresh = _row_template()
    attrs = dict(template)
    for field in fresh:
        attrs[field.attname] = field.get_default()
    attrs["id"] = delivery_id
    attrs["alias"] = alias
    attrs["status"] = lifecycle.QUEUED
    attrs["to_email"] = api_message.to_email
    attrs["from_email"] = payload["from"]
    attrs["subject"] = payload["subject"]
    attrs["payload"] = payload
    attrs["metadata"] = api_message.metadata
    attrs["tags"] = api_message.tags
    attrs[_PAYLOAD_JSON] = RawJSON.encode(payload)
    return _instance(attrs)


def _instance(attrs: dict[str, Any]) -> Delivery:
    """A Delivery with the attribute values ``attrs``, as ``Delivery(**attrs)`` would be.

    Django's ``__init__`` sets each field's value with ``setattr`` and sends
    ``pre_init``/``post_init``; with no receiver of those, the same instance is its
    ``__dict__`` and a fresh ``ModelState``.
    """
    if any(signal.receivers and signal.has_listeners(Delivery) for signal in _INIT_SIGNALS):
        payload_text = attrs.pop(_PAYLOAD_JSON)
        delivery = Delivery(**attrs)
        setattr(delivery, _PAYLOAD_JSON, payload_text)
        return delivery
    delivery = Delivery.__new__(Delivery)
    attrs["_state"] = ModelState()
    delivery.__dict__ = attrs
    return delivery


def payload_json(delivery: Delivery) -> RawJSON:
    """The row's payload as JSON text: the same text is stored and sent.

    A row from :func:`new_delivery` carries it, encoded once; its payload is final by
    then. Any other row has its payload encoded now.
    """
    encoded: RawJSON | None = delivery.__dict__.get(_PAYLOAD_JSON)
    return RawJSON.encode(delivery.payload) if encoded is None else encoded


#: Fields new_delivery sets itself; the others take their defaults.
_SET_BY_NEW_DELIVERY = frozenset(
    {"id", "alias", "status", "to_email", "from_email", "subject", "payload", "metadata", "tags"}
)
_TEMPLATE: list[Any] = []


def _row_template() -> tuple[dict[str, Any], list[Any]]:
    """Default values by attribute name, and the fields needing a fresh default."""
    if not _TEMPLATE:
        fields = Delivery._meta.concrete_fields
        fresh = [
            f
            for f in fields
            if f.has_default() and callable(f.default) and f.attname not in _SET_BY_NEW_DELIVERY
        ]
        template = {f.attname: None if f in fresh else f.get_default() for f in fields}
        _TEMPLATE[:] = [template, fresh]
    return _TEMPLATE[0], _TEMPLATE[1]


def refuse(delivery: Delivery, code: str, error: str) -> Delivery:
    """Turn a row not yet written into a ``failed`` one (suppressed, invalid)."""
    delivery.status = lifecycle.FAILED
    delivery.error_code = code
    delivery.last_error = error
    delivery.failed_at = timezone.now()
    return delivery


def invalid_delivery(message: Any, error: Exception, *, alias: str, code: str) -> Delivery:
    """A ``failed`` row for an email that could not become an API message at all.

    Only written with ``fail_silently``; otherwise the error is raised and nothing is
    written.
    """
    to = [force_str(value) for value in getattr(message, "to", ()) if value]
    return refuse(
        Delivery(
            id=uuid.uuid4(),
            alias=alias,
            to_email=(to[0] if to else "")[:320],
            from_email=force_str(getattr(message, "from_email", "") or "")[:320],
            subject=force_str(getattr(message, "subject", "") or ""),
            payload={},
        ),
        code,
        str(error),
    )


def insert(rows: Sequence[Delivery], *, attempt_started: bool = False) -> bool:
    """Write new rows; return whether they are committed already (autocommit).

    ``attempt_started`` writes the ``queued`` rows with ``attempt_started_at`` set to the
    statement's timestamp: for a caller that sends them right away (a killed process
    then leaves rows that say an attempt started).

    On SQLite and PostgreSQL this is a prepared INSERT run with ``executemany``
    (:mod:`~.insert_sql`; the columns a new row leaves at their default are literals in
    it): ``bulk_create`` compiles its SQL anew for every call, which costs more than the
    API round trip it precedes when a single email is sent. ``auto_now``/``auto_now_add``
    fields get one timestamp for the whole statement; the payload is written as
    :func:`payload_json`.
    """
    using = delivery_database()
    connection = connections[using]
    committed = connection.get_autocommit() and not connection.in_atomic_block
    if not rows:
        return committed
    now = timezone.now()
    if connection.vendor not in ("sqlite", "postgresql"):
        for row in rows:
            if attempt_started and row.status == lifecycle.QUEUED:
                row.attempt_started_at = now
        Delivery.objects.using(using).bulk_create(rows, batch_size=ROWS_PER_STATEMENT)
        return committed
    statements = insert_sql.plan(connection)
    stamp = (now, statements.stamped[0].get_db_prep_save(now, connection))
    lean, full = _stamped(rows, statements, now, attempt_started)
    with _transaction(using, len(rows)), connection.cursor() as cursor:
        for statement, group in ((statements.lean, lean), (statements.full, full)):
            params = (
                insert_sql.params(statement, row, connection, stamp, _payload_text) for row in group
            )
            if len(group) == 1:
                cursor.execute(statement.sql, next(params))
            elif group:
                # (On PostgreSQL psycopg pipelines executemany; a multi-row VALUES
                # measured slower, as client-side binding quotes every value in Python.)
                # The parameters are streamed, not held in a list beside the rows.
                cursor.executemany(statement.sql, params)
    for row in rows:
        row._state.adding = False
        row._state.db = using
    return committed


def _stamped(
    rows: Sequence[Delivery], statements: insert_sql.InsertPlan, now: Any, started: bool
) -> tuple[list[Delivery], list[Delivery]]:
    """Give ``rows`` the statement's timestamps; split them into those that fit the lean
    INSERT and the others."""
    lean: list[Delivery] = []
    full: list[Delivery] = []
    fits = statements.fits
    stamps = {field.attname: now for field in statements.stamped}
    for row in rows:
        attrs = row.__dict__
        attrs.update(stamps)
        if started and attrs["status"] == lifecycle.QUEUED:
            attrs["attempt_started_at"] = now
        (lean if fits(attrs) else full).append(row)
    return lean, full


def _transaction(using: str, count: int) -> Any:
    """One transaction for several rows: in autocommit mode every ``executemany`` row
    would commit alone."""
    if count == 1:
        return nullcontext()
    return transaction.atomic(using=using, savepoint=False)


def _payload_text(row: Delivery) -> str:
    return payload_json(row).text


def mark_sent(
    accepted: Sequence[tuple[Delivery, str]],
    *,
    attempts: int,
    batch_id: str = "",
    link_orphans: bool = True,
) -> None:
    """Store the message ids the API returned and move the rows to ``sent``.

    ``link_orphans=False`` skips :func:`~django_cloudmails.orphans.apply_orphan_events`;
    pass it only when the rows were committed before the API call: every event then
    finds its row by the Delivery id in ``custom_args``, so no event can be orphaned.
    """
    if not accepted:
        return
    now = timezone.now()
    using = delivery_database()
    updates.update_rows(
        lifecycle.ACCEPTED,
        [(delivery.pk, {"message_id": message_id}) for delivery, message_id in accepted],
        using=using,
        batch_id=batch_id,
        attempts=attempts,
        now=now,
    )
    for delivery, message_id in accepted:
        delivery.message_id = message_id
        delivery.batch_id = batch_id
        delivery.status = lifecycle.advance(delivery.status, lifecycle.SENT)
        delivery.attempts += attempts
        delivery.sent_at = now
    if link_orphans:
        message_ids = [message_id for _, message_id in accepted]
        if connections[using].in_atomic_block:
            # Events that came while the rows were invisible are stored as orphans
            # until the caller's transaction commits; link them then.
            transaction.on_commit(
                lambda: orphans.apply_orphan_events(message_ids, using=using), using=using
            )
        else:
            orphans.apply_orphan_events(message_ids, using=using)


def mark_failed(rows: Iterable[Delivery], *, code: str, error: str, attempts: int) -> None:
    """Record a definite refusal: rows still ``queued`` become ``failed``, error kept."""
    rows = [row for row in rows if row.status in lifecycle.REFUSABLE]
    _record(rows, lifecycle.REFUSED, code, error, attempts, only=lifecycle.REFUSABLE)
    for row in rows:
        row.status, row.failed_at = lifecycle.FAILED, row.updated_at


def mark_unknown(rows: Iterable[Delivery], *, code: str, error: str, attempts: int) -> None:
    """Record that the outcome is unknown: the rows become ``unknown``, error kept."""
    rows = list(rows)
    _record(rows, lifecycle.UNANSWERED, code, error, attempts)
    for row in rows:
        row.status = lifecycle.advance(row.status, lifecycle.UNKNOWN)


def mark_retrying(rows: Iterable[Delivery], *, code: str, error: str, attempts: int) -> None:
    """Record a retryable refusal the caller retries itself: the status stays."""
    _record(list(rows), lifecycle.RETRYING, code, error, attempts)


def _record(
    rows: list[Delivery],
    effect: lifecycle.Effect,
    code: str,
    error: str,
    attempts: int,
    *,
    only: tuple[str, ...] | None = None,
) -> None:
    """Apply an outcome ``effect`` to ``rows`` (those in a status of ``only``)."""
    if not rows:
        return
    now = timezone.now()
    values = updates.orm_values(
        effect, error_code=code, last_error=error, attempts=attempts, now=now
    )
    pks = [row.pk for row in rows]
    for start in range(0, len(pks), ROWS_PER_STATEMENT):
        matching = Delivery.objects.using(delivery_database()).filter(
            pk__in=pks[start : start + ROWS_PER_STATEMENT]
        )
        if only is not None:
            matching = matching.filter(status__in=only)
        matching.update(**values)
    for row in rows:
        row.error_code, row.last_error, row.updated_at = code, error, now
        row.attempts += attempts
