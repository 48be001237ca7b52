"""The dashboard's counts, exact at any table size: a rollup kept by database triggers.

Counting a million Delivery rows takes a quarter of a second per chart even from an
index, so on PostgreSQL the dashboard reads per-slot counts instead. A slot is 15
minutes of ``created_at`` (UTC): the hours and days of every time zone are whole slots.

Why the counts stay exact, whoever writes the rows (the backend, webhooks, polling,
recovery, raw SQL, the admin's delete):

- Slots below the watermark W are in the rollup tables; slots from W on are counted
  from Delivery itself when read. One statement reads both parts (one snapshot).
- :func:`materialize` moves W forward: in one transaction, under ``LOCK TABLE ... IN
  SHARE MODE`` (it waits for every transaction writing Delivery and holds new writers
  back), it counts the slots ``[W, W')`` from the table and stores W'. No row of those
  slots can change in between.
- Afterwards every change to a row of a slot below W (insert, update, delete) runs a
  trigger, in the writer's transaction, that subtracts the row's old contribution and
  adds its new one (:mod:`.rollup_trigger`). Concurrent writers add to one of a few rows
  per slot (by backend pid), so a burst of late events does not queue on one row lock.
- W stays :data:`LAG_SECONDS` behind the database clock, so each trigger's WHEN clause
  skips, before any function runs, every change to a row younger than that: sending and
  a message's first events pay for one comparison per row.

Writers must run in READ COMMITTED (Django's default): a trigger must see the W
committed last. A migration that renames a watched column must call
:func:`.rollup_trigger.install` again. A TRUNCATE of Delivery empties the rollups.

SQLite and other databases have no rollup: the same reads count the table live (on
SQLite any trigger makes every INSERT keep a statement journal, which measured about
4% of the batch sending path; an SQLite site is small enough to count).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.db import DatabaseError, connections, router, transaction

from . import lifecycle
from .models import BounceRollup, Delivery, DeliveryRollup, RollupState

SLOT_SECONDS = 900
#: How far the watermark stays behind the database clock (see the module docstring).
LAG_SECONDS = 900
#: Characters of a bounce reason kept as its key.
REASON_LENGTH = 200
#: Slots per materializing transaction: the lock is held while one chunk is counted.
CHUNK_SLOTS = 16


@dataclass(frozen=True)
class Counter:
    """One per-slot count: rows whose ``column`` passes ``test``."""

    name: str
    column: str
    test: str


#: Every count the rollup keeps, declared once: the trigger, the materializing query
#: and the live part of every read are generated from it.
COUNTERS: tuple[Counter, ...] = (
    Counter("total", "created_at", "IS NOT NULL"),
    Counter("sent", "sent_at", "IS NOT NULL"),
    Counter("delivered", "status", f"= '{lifecycle.DELIVERED}'"),
    Counter("bounced", "status", f"= '{lifecycle.BOUNCED}'"),
    Counter("failed", "status", f"= '{lifecycle.FAILED}'"),
    Counter("unknown", "status", f"= '{lifecycle.UNKNOWN}'"),
    Counter("complained", "complained_at", "IS NOT NULL"),
    Counter("opened", "first_opened_at", "IS NOT NULL"),
    Counter("clicked", "first_clicked_at", "IS NOT NULL"),
    Counter("unsubscribed", "unsubscribed_at", "IS NOT NULL"),
)
COUNTER_NAMES = tuple(counter.name for counter in COUNTERS)
#: The Delivery columns a row's contribution depends on.
WATCHED = tuple(
    dict.fromkeys(
        ["created_at", "alias", "to_email", "bounce_reason"] + [c.column for c in COUNTERS]
    )
)
BOUNCE_KEYS = ("domain", "reason")


@dataclass(frozen=True)
class Dialect:
    """What the reads need from each database, as SQL templates over ``{row}``."""

    slot: str
    #: A moment comparable with ``created_at``, from a slot number ``{slot}``.
    slot_start: str
    domain: str


DIALECTS = {
    "postgresql": Dialect(
        slot=f"floor(extract(epoch FROM {{row}}.{{created_at}}) / {SLOT_SECONDS})::bigint",
        slot_start=f"to_timestamp(({{slot}}) * {SLOT_SECONDS})",
        domain="lower(substr({row}.{to_email}, strpos({row}.{to_email}, '@') + 1))",
    ),
    "sqlite": Dialect(
        slot=f"(CAST(strftime('%s', {{row}}.{{created_at}}) AS INTEGER) / {SLOT_SECONDS})",
        slot_start=f"strftime('%Y-%m-%d %H:%M:%S', ({{slot}}) * {SLOT_SECONDS}, 'unixepoch')",
        domain="lower(substr({row}.{to_email}, instr({row}.{to_email}, '@') + 1))",
    ),
}


def kept(connection: Any) -> bool:
    """Whether the rollup is kept on ``connection`` (PostgreSQL)."""
    return bool(connection.vendor == "postgresql")


class Fragments:
    """SQL fragments for one connection: quoted names and the dialect's expressions.

    With ``params`` the fragments are for a query with parameters (a literal % is
    written %%); without, for DDL run as it is.
    """

    def __init__(self, connection: Any, *, params: bool = True) -> None:
        self.connection = connection
        self.dialect = DIALECTS[connection.vendor]
        self.params = params
        quote = connection.ops.quote_name
        self.quote = quote
        self.delivery = quote(Delivery._meta.db_table)
        self.rollup = quote(DeliveryRollup._meta.db_table)
        self.bounces = quote(BounceRollup._meta.db_table)
        self.state = quote(RollupState._meta.db_table)
        self.columns = {
            name: quote(Delivery._meta.get_field(name).column)  # type: ignore[union-attr]
            for name in WATCHED
        }
        self.alias = quote("alias")

    def _template(self, template: str) -> str:
        return template.replace("%", "%%") if self.params else template

    def slot(self, row: str) -> str:
        return self._template(self.dialect.slot).format(row=row, **self.columns)

    def slot_start(self, slot: str) -> str:
        """A moment comparable with ``created_at``; ``slot`` may be a placeholder."""
        return self._template(self.dialect.slot_start).format(slot=slot)

    def ones(self, row: str, sign: str = "") -> list[str]:
        """Each counter's contribution of ``row``: ``CASE WHEN ... THEN 1 ELSE 0 END``."""
        return [
            f"{sign}(CASE WHEN {row}.{self.columns[c.column]} {c.test} THEN 1 ELSE 0 END)"
            for c in COUNTERS
        ]

    def bounced(self, row: str) -> str:
        return f"{row}.{self.columns['status']} = '{lifecycle.BOUNCED}'"

    def bounce_key(self, key: str, row: str) -> str:
        if key == "domain":
            return self._template(self.dialect.domain).format(row=row, **self.columns)
        return f"substr({row}.{self.columns['bounce_reason']}, 1, {REASON_LENGTH})"

    def watermark(self) -> str:
        return f"(SELECT watermark FROM {self.state} WHERE id = 1)"

    def counter_list(self) -> str:
        return ", ".join(self.quote(name) for name in COUNTER_NAMES)

    def adapt(self, moment: datetime) -> Any:
        return self.connection.ops.adapt_datetimefield_value(moment)


# Moving the watermark.


def materialize(
    *, budget: float | None = None, lock_timeout: float = 0.25, using: str | None = None
) -> int | None:
    """Roll the closed slots up to the watermark's target, a chunk per transaction.

    Stops after ``budget`` seconds (None: when caught up), or when the lock is not had
    within ``lock_timeout`` seconds (the slots not rolled up are then counted live,
    still exactly). Returns the watermark; None where no rollup is kept.
    """
    using = using or router.db_for_write(Delivery)
    connection = connections[using]
    if not kept(connection):
        return None
    sql = Fragments(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT watermark, {_target_sql()} FROM {sql.state} WHERE id = 1", [])
        row = cursor.fetchone()
    if row is not None and row[0] is not None and row[0] >= row[1]:
        return int(row[0])  # caught up: no lock, no write
    started = time.monotonic()
    while True:
        try:
            mark, done = _materialize_chunk(connection, using, lock_timeout)
        except DatabaseError:
            return current_watermark(using=using)
        if done or (budget is not None and time.monotonic() - started >= budget):
            return mark


def current_watermark(*, using: str | None = None) -> int | None:
    state = RollupState.objects.using(using or router.db_for_read(Delivery)).first()
    return None if state is None else state.watermark


def _target_sql() -> str:
    """The slot the watermark may reach now: the last one closed :data:`LAG_SECONDS` ago."""
    return (
        f"floor((extract(epoch FROM statement_timestamp()) - {LAG_SECONDS}) "
        f"/ {SLOT_SECONDS})::bigint"
    )


def _materialize_chunk(connection: Any, using: str, lock_timeout: float) -> tuple[int, bool]:
    """One transaction: count ``[W, W + CHUNK_SLOTS)`` (at most up to the target)."""
    sql = Fragments(connection)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout * 1000)}", [])
        cursor.execute(
            f"INSERT INTO {sql.state} (id, watermark) VALUES (1, NULL) ON CONFLICT DO NOTHING",
            [],
        )
        cursor.execute(f"SELECT watermark FROM {sql.state} WHERE id = 1 FOR UPDATE", [])
        (mark,) = cursor.fetchone()
        cursor.execute(f"LOCK TABLE {sql.delivery} IN SHARE MODE", [])
        cursor.execute(f"SELECT {_target_sql()}", [])
        target = int(cursor.fetchone()[0])
        if mark is None:
            created = sql.columns["created_at"]
            cursor.execute(
                f"SELECT {sql.slot('d')} FROM {sql.delivery} d ORDER BY d.{created} LIMIT 1", []
            )
            first = cursor.fetchone()
            mark = target if first is None else min(int(first[0]), target)
        end = min(target, mark + CHUNK_SLOTS)
        if end > mark:
            for statement in _rollup_statements(sql):
                cursor.execute(statement, [mark, end])
        cursor.execute(f"UPDATE {sql.state} SET watermark = %s WHERE id = 1", [end])
    return end, end >= target


def _rollup_statements(sql: Fragments) -> list[str]:
    """INSERTs counting the slots ``[%s, %s)`` from Delivery into the rollup tables."""
    created = f"d.{sql.columns['created_at']}"
    in_range = f"{created} >= {sql.slot_start('%s')} AND {created} < {sql.slot_start('%s')}"
    sums = ", ".join(f"SUM{one}" for one in sql.ones("d"))
    keys = ", ".join(sql.bounce_key(key, "d") for key in BOUNCE_KEYS)
    slot, alias = sql.slot("d"), f"d.{sql.alias}"
    return [
        f"INSERT INTO {sql.rollup} (slot, alias, shard, {sql.counter_list()}) "
        f"SELECT {slot}, {alias}, 0, {sums} FROM {sql.delivery} d "
        f"WHERE {in_range} GROUP BY 1, 2",
        f"INSERT INTO {sql.bounces} (slot, alias, shard, domain, reason, count) "
        f"SELECT {slot}, {alias}, 0, {keys}, COUNT(*) FROM {sql.delivery} d "
        f"WHERE {sql.bounced('d')} AND {in_range} GROUP BY 1, 2, 4, 5",
    ]


# Reading: the rollup below the watermark, the table from it on, in one statement.


@dataclass(frozen=True)
class Period:
    """``[start, end)`` (aware datetimes, whole slots), for one alias or all."""

    start: datetime
    end: datetime
    alias: str | None = None

    @property
    def slots(self) -> tuple[int, int]:
        first = int(self.start.timestamp()) // SLOT_SECONDS
        last = -(-int(self.end.timestamp()) // SLOT_SECONDS)
        return first, last


def slot_counts(period: Period, *, using: str | None = None) -> list[tuple[int, dict[str, int]]]:
    """``(slot, {counter: count})`` for each slot of ``period`` holding any row."""
    connection = connections[using or router.db_for_read(Delivery)]
    sql = Fragments(connection)
    names = [sql.quote(n) for n in COUNTER_NAMES]
    parts, params = _union(
        sql,
        period,
        names=["slot", *names],
        rollup_exprs=["r.slot", *(f"r.{n}" for n in names)],
        live_exprs=[sql.slot("d"), *sql.ones("d")],
    )
    sums = ", ".join(f"SUM({n})" for n in names)
    query = (
        f"SELECT slot, {sums} FROM {parts} GROUP BY slot "
        f"HAVING SUM({names[0]}) > 0 ORDER BY slot"  # a slot whose rows all moved away
    )
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    return [(int(row[0]), dict(zip(COUNTER_NAMES, map(int, row[1:]), strict=True))) for row in rows]


def top_bounces(
    period: Period, key: str, *, limit: int = 10, using: str | None = None
) -> list[tuple[str, int]]:
    """The ``limit`` most frequent bounce ``key`` values (``"domain"`` or ``"reason"``),
    most frequent first."""
    if key not in BOUNCE_KEYS:
        raise ValueError(f"key must be one of {BOUNCE_KEYS}, not {key!r}")
    connection = connections[using or router.db_for_read(Delivery)]
    sql = Fragments(connection)
    parts, params = _union(
        sql,
        period,
        names=["value", "n"],
        rollup_exprs=[f"r.{key}", "r.count"],
        live_exprs=[sql.bounce_key(key, "d"), "1"],
        rollup=sql.bounces,
        live_where=sql.bounced("d"),
    )
    query = (
        f"SELECT value, SUM(n) FROM {parts} GROUP BY value "
        "HAVING SUM(n) > 0 ORDER BY SUM(n) DESC, value LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [*params, limit])
        return [(str(value), int(count)) for value, count in cursor.fetchall()]


def _union(
    sql: Fragments,
    period: Period,
    *,
    names: Sequence[str],
    rollup_exprs: Sequence[str],
    live_exprs: Sequence[str],
    rollup: str | None = None,
    live_where: str = "",
) -> tuple[str, list[Any]]:
    """``(rollup part UNION ALL live part) AS parts``: the slots of ``period`` below the
    watermark from the rollup, the rows from it on from Delivery. Where no rollup is
    kept, the state table is empty and the live part counts the whole period."""
    first, last = period.slots
    mark = sql.watermark()
    alias_rollup = alias_live = ""
    alias_params: list[Any] = []
    if period.alias is not None:
        alias_rollup = " AND r.alias = %s"
        alias_live = f" AND d.{sql.alias} = %s"
        alias_params = [period.alias]
    named = ", ".join(f"{expr} AS {name}" for expr, name in zip(rollup_exprs, names, strict=True))
    rollup_part = (
        f"SELECT {named} FROM {rollup or sql.rollup} r "
        f"WHERE r.slot >= %s AND r.slot < %s AND r.slot < {mark}{alias_rollup}"
    )
    created = f"d.{sql.columns['created_at']}"
    since = f"COALESCE({sql.slot_start(mark)}, %s)"
    live_part = (
        f"SELECT {', '.join(live_exprs)} FROM {sql.delivery} d "
        f"WHERE {created} >= %s AND {created} < %s AND {created} >= {since}"
        f"{' AND ' + live_where if live_where else ''}{alias_live}"
    )
    start, end = sql.adapt(period.start), sql.adapt(period.end)
    params = [first, last, *alias_params, start, end, start, *alias_params]
    return f"({rollup_part} UNION ALL {live_part}) AS parts", params


def slot_moment(slot: int) -> datetime:
    """The UTC moment a slot starts."""
    return datetime.fromtimestamp(slot * SLOT_SECONDS, tz=timezone.utc)


def totals(rows: Iterable[tuple[int, dict[str, int]]]) -> dict[str, int]:
    """The counters summed over slots."""
    result = dict.fromkeys(COUNTER_NAMES, 0)
    for _, counts in rows:
        for name, value in counts.items():
            result[name] += value
    return result
