"""The lifecycle's effects as database UPDATEs, derived from :mod:`~.lifecycle`.

One builder (:func:`set_values`) turns an :class:`~.lifecycle.Effect` into ORM UPDATE
values; every SET expression reads the row as it is when the UPDATE takes its row lock,
so concurrent reports neither lose increments nor overwrite each other's timestamps.
The builder takes the effect's inputs in one of three forms:

- ``Value(...)``: :func:`orm_values`, for ``QuerySet.update()``;
- a placeholder: :func:`compiled_set` compiles the values once per effect with Django's
  own SQL compiler and caches the SQL and the order of its parameters; :func:`bind`
  fills them per call. The PostgreSQL webhook statement (:mod:`~.pg_ingest`) and
  single-row updates use it: no SQL text of ours restates a rule;
- a column of a ``VALUES`` table: :func:`update_rows` writes a different input per row
  for a whole chunk in one ``UPDATE ... FROM (VALUES ...)`` (the outbox's message ids,
  the polls' answers). ``QuerySet.bulk_update`` writes one CASE WHEN per row and costs
  ~165 us a row; this costs a few.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Case, Expression, F, Field, IntegerField, Q, Value, When
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, GreaterThan, IsNull
from django.db.models.sql import UpdateQuery

from . import lifecycle
from .lifecycle import Effect, Rule
from .limits import ROWS_PER_STATEMENT
from .models import Delivery


@dataclass(frozen=True)
class Slot:
    """A parameter filled per call: the effect input ``name``, stored into ``field``."""

    name: str
    field: Field[Any, Any]


class Input(Expression):
    """An effect input in compiled SQL: a placeholder, or a column of the table ``table``."""

    def __init__(self, name: str, output_field: Field[Any, Any], table: str | None = None):
        super().__init__(output_field=output_field)
        self.name = name
        self.table = table

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        if self.table is not None:
            quote = connection.ops.quote_name
            return f"{quote(self.table)}.{quote(self.name)}", []
        return "%s", [Slot(self.name, self.output_field)]


def _field(name: str) -> Field[Any, Any]:
    field = Delivery._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def input_field(effect: Effect, name: str) -> Field[Any, Any]:
    """The Delivery field the input ``name`` of ``effect`` is written to."""
    if name == "now":
        return _field("updated_at")
    for rule in effect.rules:
        if rule.source == name:
            return _field(rule.field)
        if name in rule.companions:
            return _field(name)
    raise KeyError(f"The effect takes no input named {name!r}.")


def _rank(status: Any) -> Case:
    whens = [When(Exact(status, Value(s)), then=Value(r)) for s, r in lifecycle.RANK.items()]
    return Case(*whens, default=Value(-1), output_field=IntegerField())


def advanced(target: str | Expression) -> Case:
    """The status after ``target`` is reported: "only move forward" in SQL.

    A constant target replaces only the statuses below it; a target given per row (a
    poll's answer) is compared by its rank in :data:`~.lifecycle.PRECEDENCE`, and one the
    lifecycle does not know (or NULL) changes nothing, as :func:`lifecycle.advance`.
    """
    current = F("status")
    if isinstance(target, str):
        below = lifecycle.statuses_below(target)
        return Case(When(status__in=below, then=Value(target)), default=current)
    return Case(
        When(GreaterThan(_rank(target), _rank(current)), then=target),
        default=current,
        output_field=_field("status"),
    )


def _pick(name: str, condition: Any, value: Any) -> Case:
    return Case(When(condition, then=value), default=F(name), output_field=_field(name))


def set_values(effect: Effect, value: Callable[[str], Any]) -> dict[str, Any]:
    """The UPDATE values of ``effect``; ``value(name)`` gives the expression of an input."""
    values: dict[str, Any] = {}
    for rule in effect.rules:
        values.update(_rule_values(rule, value))
    values["updated_at"] = value("now")
    return values


def _rule_values(rule: Rule, value: Callable[[str], Any]) -> dict[str, Any]:
    name, kind = rule.field, rule.kind
    if kind == lifecycle.ADVANCE:
        return {name: advanced(rule.target or value(rule.source or "status"))}
    if kind == lifecycle.INCREMENT:
        return {name: F(name) + 1}
    assert rule.source is not None
    new = value(rule.source)
    values: dict[str, Any] = {}
    if kind in (lifecycle.EARLIEST, lifecycle.LATEST):
        beyond = "gt" if kind == lifecycle.EARLIEST else "lt"
        condition = Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__{beyond}": new})
        if rule.companions:  # with no input, nothing is written (as lifecycle.apply)
            condition = Q(IsNull(new, False)) & condition
        values[name] = _pick(name, condition, new)
        for companion in rule.companions:
            values[companion] = _pick(companion, condition, value(companion))
    elif kind == lifecycle.ADD:
        values[name] = F(name) + new
    elif kind == lifecycle.GREATEST:
        values[name] = _pick(name, Q(**{f"{name}__lt": new}), new)
    elif kind == lifecycle.GIVEN:
        values[name] = Coalesce(new, F(name), output_field=_field(name))
    elif kind == lifecycle.SET:
        values[name] = new
    else:
        raise ValueError(f"Unknown rule kind {kind!r}.")
    return values


def orm_values(effect: Effect, **inputs: Any) -> dict[str, Any]:
    """``QuerySet.update()`` keyword arguments applying ``effect`` with ``inputs``."""
    given = {**effect.inputs, **inputs}
    return set_values(
        effect, lambda name: Value(given[name], output_field=input_field(effect, name))
    )


# Compiled once, bound per call.


@dataclass(frozen=True)
class Compiled:
    """A SET list (``"col" = ..., ...``) and its parameters: constants and :class:`Slot`;
    ``by_pk``, the UPDATE of one row by its primary key with it."""

    sql: str
    params: tuple[Any, ...]
    by_pk: str = ""


#: Keyed by the identity of the effect's rules (the tuple is kept in the entry, so its id
#: cannot be reused): hashing the rules on every call would cost more than binding.
_COMPILED: dict[tuple[Any, ...], tuple[tuple[Rule, ...], Compiled]] = {}


def compiled_set(
    effect: Effect, connection: Any, *, per_row: Sequence[str] = (), table: str = "v"
) -> Compiled:
    """``effect``'s SET list for ``connection``'s database, compiled once and cached.

    Inputs named in ``per_row`` are read from the columns of the table ``table`` (the
    ``VALUES`` of :func:`update_rows`); the others are placeholders.
    """
    key = (id(effect.rules), connection.vendor, tuple(per_row), table)
    entry = _COMPILED.get(key)
    if entry is None:
        entry = _COMPILED[key] = (effect.rules, _compile(effect, connection, set(per_row), table))
    return entry[1]


def _compile(effect: Effect, connection: Any, per_row: set[str], table: str) -> Compiled:
    def value(name: str) -> Input:
        return Input(name, input_field(effect, name), table if name in per_row else None)

    query = UpdateQuery(Delivery)
    compiler = query.get_compiler(connection=connection)
    quote = connection.ops.quote_name
    parts, params = [], []
    for name, expression in set_values(effect, value).items():
        resolved = expression.resolve_expression(query, allow_joins=False, for_save=True)
        sql, sql_params = compiler.compile(resolved)
        parts.append(f"{quote(_field(name).column)} = {sql}")
        params.extend(sql_params)
    set_sql = ", ".join(parts)
    pk = Delivery._meta.pk
    assert pk is not None
    table_name = quote(Delivery._meta.db_table)
    by_pk = f"UPDATE {table_name} SET {set_sql} WHERE {quote(pk.column)} = %s"  # noqa: S608
    return Compiled(set_sql, tuple(params), by_pk)


_PLAIN = frozenset({str, int, bool, type(None)})


def prepare(field: Field[Any, Any], value: Any, connection: Any) -> Any:
    """``value`` as the database driver takes it for ``field``."""
    if type(value) in _PLAIN:
        return value
    return field.get_db_prep_value(value, connection)


def bind(compiled: Compiled, inputs: Mapping[str, Any], connection: Any) -> list[Any]:
    """The parameters of ``compiled`` with its slots filled from ``inputs``; an input
    used several times (``now``, ``at``) is prepared once."""
    prepared: dict[str, Any] = {}
    params = []
    for param in compiled.params:
        if not isinstance(param, Slot):
            params.append(param)
            continue
        name = param.name
        if name not in prepared:
            value = inputs[name]
            prepared[name] = (
                value if type(value) in _PLAIN else prepare(param.field, value, connection)
            )
        params.append(prepared[name])
    return params


_PLACEHOLDER = re.compile(r"%%|%s")


def named(compiled: Compiled, prefix: str) -> tuple[str, dict[str, Any]]:
    """``compiled`` with ``%(name)s`` placeholders (a slot's input name; ``prefix`` + a
    number for each constant) and the constants by name, for a statement with named
    parameters."""
    params = iter(compiled.params)
    constants: dict[str, Any] = {}

    def replace(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%%"
        param = next(params)
        if isinstance(param, Slot):
            return f"%({param.name})s"
        name = f"{prefix}{len(constants)}"
        constants[name] = param
        return f"%({name})s"

    return _PLACEHOLDER.sub(replace, compiled.sql), constants


# Applying.


def update_rows(
    effect: Effect,
    rows: Sequence[tuple[Any, Mapping[str, Any]]],
    *,
    using: str,
    **shared: Any,
) -> None:
    """Apply ``effect`` to each ``(pk, inputs)`` of ``rows``, ``shared`` inputs to all.

    One ``UPDATE ... FROM (VALUES ...)`` per chunk of rows where the database runs it
    (PostgreSQL; SQLite from 3.33), else one prepared UPDATE run with ``executemany``.
    """
    if not rows:
        return
    connection = connections[using]
    given = {**effect.inputs, **shared}
    pk = Delivery._meta.pk
    assert pk is not None
    if len(rows) == 1 or not updates_from_values(connection):
        compiled = compiled_set(effect, connection)
        params = [
            [
                *bind(compiled, {**given, **inputs}, connection),
                pk.get_db_prep_value(key, connection),
            ]
            for key, inputs in rows
        ]
        with connection.cursor() as cursor:
            if len(params) == 1:
                cursor.execute(compiled.by_pk, params[0])
            else:
                cursor.executemany(compiled.by_pk, params)
        return
    quote = connection.ops.quote_name
    table = quote(Delivery._meta.db_table)
    names = sorted(rows[0][1])
    compiled = compiled_set(effect, connection, per_row=names)
    shared_params = bind(compiled, given, connection)
    fields = [input_field(effect, name) for name in names]
    if connection.vendor == "postgresql":
        casts = [f"CAST(%s AS {f.db_type(connection)})" for f in (pk, *fields)]
        row_sql = "({})".format(", ".join(casts))
    else:
        row_sql = "({})".format(", ".join(["%s"] * (len(fields) + 1)))
    columns = ", ".join(quote(name) for name in ["id", *names])
    columns_of = list(zip(fields, names, strict=True))
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        params = []
        for key, inputs in chunk:
            params.append(pk.get_db_prep_value(key, connection))
            for field, name in columns_of:
                value = inputs[name]
                params.append(value if type(value) in _PLAIN else prepare(field, value, connection))
        # Only quoted names and placeholders are interpolated; every value is a parameter.
        sql = (
            f"WITH v ({columns}) AS (VALUES {', '.join([row_sql] * len(chunk))}) "  # noqa: S608
            f"UPDATE {table} SET {compiled.sql} FROM v WHERE {table}.{quote(pk.column)} = v.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params + shared_params)


def updates_from_values(connection: Any) -> bool:
    """Whether the database runs ``UPDATE ... FROM``: PostgreSQL, and SQLite from 3.33
    (Django 4.2 and 5.2 still support older SQLite)."""
    if connection.vendor == "postgresql":
        return True
    return bool(
        connection.vendor == "sqlite" and connection.Database.sqlite_version_info >= (3, 33)
    )


def apply(pk: Any, effect: Effect, *, using: str, detect: bool = False, **inputs: Any) -> bool:
    """Apply ``effect`` to one Delivery with ``inputs`` through the ORM.

    With ``detect``, returns whether this UPDATE moved the row into the effect's status
    (it runs as two conditional UPDATEs; each reads the row under its lock, so of two
    concurrent reports exactly one is told so). Otherwise returns False.
    """
    rows = Delivery.objects.using(using).filter(pk=pk)
    values = orm_values(effect, **inputs)
    target = effect.status
    if detect and target is not None:
        below = lifecycle.statuses_below(target)
        if rows.filter(status__in=below).update(**values):
            return True
    rows.update(**values)
    return False
