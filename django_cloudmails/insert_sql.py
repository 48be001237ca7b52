"""The prepared INSERT of new Delivery rows (SQLite and PostgreSQL), built once per database.

A new row leaves most of its 36 columns at their default (NULL, ``''`` or 0): the
"lean" statement writes those as SQL literals, so each row binds only the columns
sending sets. Whether a row fits is one tuple comparison (:meth:`InsertPlan.fits`);
any other row (a resend, say) goes through the full statement, every column a
parameter. Values go through each field's ``get_db_prep_save`` as with
``bulk_create``, except plain ``str``/``int``/``bool`` (every driver takes them as they
are), the statement's one timestamp (adapted once) and JSON (written as text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from .models import Delivery

#: Values every database driver takes as they are (no conversion).
_PLAIN_TYPES = frozenset({str, int, bool})
#: Values of Delivery's JSON fields (none has a custom encoder): written as JSON text,
#: which SQLite stores as it is and PostgreSQL parses into the jsonb column.
_JSON_TYPES = frozenset({dict, list})
#: Defaults the lean statement writes as literals, by value.
_LITERALS: dict[Any, str] = {None: "NULL", "": "''", 0: "0"}
#: Columns sending sets on a new row (new_delivery, refusals, keys, the attempt stamp):
#: always parameters.
_PER_ROW = frozenset(
    {
        "id",
        "alias",
        "status",
        "to_email",
        "from_email",
        "subject",
        "payload",
        "metadata",
        "tags",
        "idempotency_key",
        "attempt_started_at",
        "error_code",
        "last_error",
        "failed_at",
    }
)


@dataclass(frozen=True)
class Statement:
    """An INSERT, the fields of its parameters in order, and a getter of their values
    from a row's ``__dict__``."""

    sql: str
    fields: list[Any]
    values_of: Callable[[dict[str, Any]], tuple[Any, ...]]


@dataclass(frozen=True)
class InsertPlan:
    """The full and lean INSERTs of one database, and what makes a row fit the latter."""

    full: Statement
    lean: Statement
    defaults_of: Callable[[dict[str, Any]], tuple[Any, ...]]
    defaults: tuple[Any, ...]
    #: The ``auto_now``/``auto_now_add`` fields: one timestamp per statement.
    stamped: tuple[Any, ...]

    def fits(self, attrs: dict[str, Any]) -> bool:
        """Whether the row (its ``__dict__``) holds the lean statement's literals."""
        return self.defaults_of(attrs) == self.defaults


_PLANS: dict[str, InsertPlan] = {}


def plan(connection: Any) -> InsertPlan:
    """The INSERTs of a Delivery row on ``connection``'s database, built once."""
    cached = _PLANS.get(connection.vendor)
    if cached is None:
        cached = _PLANS[connection.vendor] = _build_plan(connection)
    return cached


def _build_plan(connection: Any) -> InsertPlan:
    fields = [f for f in Delivery._meta.concrete_fields if f.column]
    literal = [f for f in fields if _takes_literal(f)]
    lean = [f for f in fields if f not in literal]
    return InsertPlan(
        full=_statement(connection, fields, []),
        lean=_statement(connection, lean, literal),
        defaults_of=_getter(_names(literal)),
        defaults=tuple(f.get_default() for f in literal),
        stamped=tuple(f for f in fields if is_auto_timestamp(f)),
    )


def _takes_literal(field: Any) -> bool:
    """Whether the lean INSERT writes ``field``'s default as a literal."""
    if field.attname in _PER_ROW or is_auto_timestamp(field):
        return False
    if field.has_default() and callable(field.default):  # NOT_PROVIDED is a class
        return False
    value = field.get_default()
    return type(value) in (type(None), str, int) and value in _LITERALS


def _statement(connection: Any, params: list[Any], literal: list[Any]) -> Statement:
    """The INSERT of every column: ``params`` as placeholders, ``literal`` as defaults."""
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 - names from the model
        quote(Delivery._meta.db_table),
        ", ".join(quote(f.column) for f in [*params, *literal]),
        ", ".join(["%s"] * len(params) + [_LITERALS[f.get_default()] for f in literal]),
    )
    return Statement(sql, params, _getter(_names(params)))


def _names(fields: list[Any]) -> list[str]:
    return [f.attname for f in fields]


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A getter of ``names`` from a dict, always as a tuple (even of one name)."""
    get = itemgetter(*names)
    return get if len(names) > 1 else lambda attrs: (get(attrs),)


def is_auto_timestamp(field: Any) -> bool:
    """Whether ``field`` is ``auto_now``/``auto_now_add``."""
    return bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))


def params(
    statement: Statement,
    row: Delivery,
    connection: Any,
    stamp: tuple[Any, Any],
    payload_text: Callable[[Delivery], str],
) -> list[Any]:
    """``row``'s parameters for ``statement``: ``stamp`` is the statement's timestamp and
    its adapted value; ``payload_text(row)`` the payload's JSON."""
    now, adapted = stamp
    values = list(statement.values_of(row.__dict__))
    for index, value in enumerate(values):
        if value is None or type(value) in _PLAIN_TYPES:
            continue
        field = statement.fields[index]
        if value is now:
            values[index] = adapted
        elif field.attname == "payload":
            values[index] = payload_text(row)
        elif type(value) in _JSON_TYPES:
            values[index] = json.dumps(value) if value else ("{}" if type(value) is dict else "[]")
        else:
            values[index] = field.get_db_prep_save(value, connection)
    return values
