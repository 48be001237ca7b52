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

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone
from django.utils.encoding import force_str

from . import identity, lifecycle, orphans, updates
from .client import RawJSON
from .limits import ROWS_PER_STATEMENT
from .models import Delivery
from .payloads import ApiMessage, with_delivery_id

_INSERT_SQL: dict[str, tuple[str, list[Any]]] = {}
#: Values every database driver takes as they are (str, int, bool: no conversion).
#: UUIDs and datetimes still go through their field.
_PLAIN_TYPES = frozenset({str, int, bool})
#: Values of Delivery's JSON fields (none has a custom encoder): written as JSON text,
#: which SQLite stores as it is and PostgreSQL parses into the jsonb column.
_JSON_TYPES = frozenset({dict, list})

ERROR_INVALID = "invalid"
ERROR_UNSUPPORTED = "unsupported"
ERROR_SUPPRESSED = "suppressed"
ERROR_TRANSPORT = "transport"
ERROR_TIMEOUT = "timeout"
ERROR_BAD_RESPONSE = "bad_response"

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

    Built positionally (the way Django's ``from_db`` does): keyword construction of a
    31-field model costs as much as the rest of preparing a batch message.
    """
    delivery_id = uuid.uuid4()
    payload = with_delivery_id(api_message, str(delivery_id))
    template, positions, fresh = _row_template()
    values = list(template)
    for index in fresh:
        values[index] = Delivery._meta.concrete_fields[index].get_default()
    values[positions["id"]] = delivery_id
    values[positions["alias"]] = alias
    values[positions["status"]] = lifecycle.QUEUED
    values[positions["to_email"]] = api_message.to_email
    values[positions["from_email"]] = payload["from"]
    values[positions["subject"]] = payload["subject"]
    values[positions["payload"]] = payload
    values[positions["metadata"]] = api_message.metadata
    values[positions["tags"]] = api_message.tags
    delivery = Delivery(*values)  # type: ignore[misc]  # positional, like Model.from_db
    setattr(delivery, _PAYLOAD_JSON, RawJSON.encode(payload))
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


def _row_template() -> tuple[list[Any], dict[str, int], list[int]]:
    """Default values in field order, field positions, and fields needing fresh defaults."""
    if not _TEMPLATE:
        fields = Delivery._meta.concrete_fields
        positions = {f.attname: i for i, f in enumerate(fields)}
        fresh = [
            i
            for i, f in enumerate(fields)
            if f.has_default() and callable(f.default) and f.attname not in _SET_BY_NEW_DELIVERY
        ]
        template = [None if i in fresh else f.get_default() for i, f in enumerate(fields)]
        _TEMPLATE[:] = [template, positions, fresh]
    return _TEMPLATE[0], _TEMPLATE[1], _TEMPLATE[2]


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

    On SQLite and PostgreSQL this is one prepared INSERT run with ``executemany``:
    ``bulk_create`` compiles its SQL anew for every call, which costs more than the
    API round trip it precedes when a single email is sent. Values go through each
    field's own ``get_db_prep_save``, as with ``bulk_create``, except where that costs
    more than building the row: ``auto_now``/``auto_now_add`` fields get one timestamp for
    the whole statement, adapted once, and JSON fields are written as JSON text, the
    payload as :func:`payload_json`.
    """
    using = _db()
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
    sql, fields = _insert_statement(connection)
    params = _insert_params(rows, fields, connection, now, attempt_started)
    if len(rows) == 1:
        with connection.cursor() as cursor:
            cursor.execute(sql, next(params))
    else:
        # One transaction: in autocommit mode every executemany row would commit alone.
        # (On PostgreSQL psycopg pipelines executemany; a multi-row VALUES measured
        # slower, as client-side binding quotes every value in Python.) The parameters
        # are streamed, not held in a list beside the rows.
        with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
            cursor.executemany(sql, params)
    for row in rows:
        row._state.adding = False
        row._state.db = using
    return committed


def _insert_params(
    rows: Sequence[Delivery], fields: list[Any], connection: Any, now: Any, started: bool
) -> Iterator[list[Any]]:
    """Each row's INSERT parameters, in field order (see :func:`insert`)."""
    plain = _PLAIN_TYPES
    queued = lifecycle.QUEUED
    auto = [f for f in fields if _is_auto_timestamp(f)]
    stamps = {f.attname: now for f in auto}
    stamp = auto[0].get_db_prep_save(now, connection)
    payload_field = Delivery._meta.get_field("payload")
    for row in rows:
        attrs = row.__dict__
        attrs.update(stamps)
        if started and attrs["status"] == queued:
            attrs["attempt_started_at"] = now
        values = []
        for field in fields:
            value = attrs[field.attname]
            if value is not None and type(value) not in plain:
                if value is now:
                    value = stamp
                elif field is payload_field:
                    value = payload_json(row).text
                elif type(value) in _JSON_TYPES:
                    value = json.dumps(value)
                else:
                    value = field.get_db_prep_save(value, connection)
            values.append(value)
        yield values


def _is_auto_timestamp(field: Any) -> bool:
    return bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))


def _insert_statement(connection: Any) -> tuple[str, list[Any]]:
    """The INSERT of one Delivery row on ``connection``, and its fields in order."""
    cached = _INSERT_SQL.get(connection.vendor)
    if cached is None:
        cached = _INSERT_SQL[connection.vendor] = _build_insert(connection)
    return cached


def _build_insert(connection: Any) -> tuple[str, list[Any]]:
    fields = [f for f in Delivery._meta.concrete_fields if f.column]
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 - names from the model
        quote(Delivery._meta.db_table),
        ", ".join(quote(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    return sql, fields


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
    using = _db()
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
        matching = Delivery.objects.using(_db()).filter(
            pk__in=pks[start : start + ROWS_PER_STATEMENT]
        )
        if only is not None:
            matching = matching.filter(status__in=only)
        matching.update(**values)
    for row in rows:
        row.error_code, row.last_error, row.updated_at = code, error, now
        row.attempts += attempts


def _db() -> str:
    return router.db_for_write(Delivery)
