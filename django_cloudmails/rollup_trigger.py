"""The rollup's trigger on PostgreSQL: every change to a row of a slot below the
watermark moves that slot's counts, in the writer's transaction (see :mod:`.rollup` for
why the counts stay exact). Installed by a migration, which calls :func:`install` again
whenever a watched column changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .rollup import BOUNCE_KEYS, COUNTER_NAMES, LAG_SECONDS, Fragments, kept

#: Concurrent writers add to one of this many rows per slot (by backend pid), so that a
#: burst of late events does not queue on one row lock.
SHARDS = 8
_PREFIX = "cloudmails_rollup"
_OPERATIONS = ("insert", "update", "delete", "truncate")


def install(schema_editor: Any) -> None:
    """Create (or replace) the trigger where the rollup is kept, and empty the rollups:
    they are rebuilt from the table as the dashboard is read."""
    connection = schema_editor.connection
    if not kept(connection):
        return
    uninstall(schema_editor)
    sql = Fragments(connection, params=False)
    for statement in _trigger_sql(sql):
        schema_editor.execute(statement, params=None)
    for table in (sql.rollup, sql.bounces, sql.state):
        schema_editor.execute(f"DELETE FROM {table}", params=None)


def uninstall(schema_editor: Any) -> None:
    connection = schema_editor.connection
    if not kept(connection):
        return
    delivery = Fragments(connection, params=False).delivery
    for operation in _OPERATIONS:
        schema_editor.execute(
            f"DROP TRIGGER IF EXISTS {_PREFIX}_{operation} ON {delivery}", params=None
        )
    for function in ("apply", "reset"):
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {_PREFIX}_{function}()", params=None)


def _add_counts(sql: Fragments, slot: str, alias: str, values: Sequence[str]) -> str:
    """An upsert adding ``values`` (one SQL expression per counter) to a slot's row."""
    added = ", ".join(
        f"{sql.quote(n)} = {sql.rollup}.{sql.quote(n)} + excluded.{sql.quote(n)}"
        for n in COUNTER_NAMES
    )
    return (
        f"INSERT INTO {sql.rollup} (slot, alias, shard, {sql.counter_list()}) "
        f"VALUES ({slot}, {alias}, part, {', '.join(values)}) "
        f"ON CONFLICT (slot, alias, shard) DO UPDATE SET {added}"
    )


def _add_row(sql: Fragments, row: str, sign: str) -> str:
    return _add_counts(sql, f"{row.lower()}_slot", f"{row}.{sql.alias}", sql.ones(row, sign))


def _add_bounce(sql: Fragments, row: str, sign: str) -> str:
    keys = ", ".join(sql.bounce_key(key, row) for key in BOUNCE_KEYS)
    return (
        f"INSERT INTO {sql.bounces} (slot, alias, shard, domain, reason, count) "
        f"VALUES ({row.lower()}_slot, {row}.{sql.alias}, part, {keys}, {sign}1) "
        "ON CONFLICT (slot, alias, shard, domain, reason) "
        f"DO UPDATE SET count = {sql.bounces}.count + excluded.count"
    )


def _trigger_sql(sql: Fragments) -> list[str]:
    net = [f"{new} - {old}" for new, old in zip(sql.ones("NEW"), sql.ones("OLD"), strict=True)]
    apply = f"""
CREATE FUNCTION {_PREFIX}_apply() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    mark bigint;
    part smallint := pg_backend_pid() % {SHARDS};
    old_slot bigint;
    new_slot bigint;
BEGIN
    SELECT watermark INTO mark FROM {sql.state} WHERE id = 1;
    IF mark IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_slot := {sql.slot("OLD")};
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_slot := {sql.slot("NEW")};
    END IF;
    IF TG_OP = 'UPDATE' AND old_slot = new_slot AND OLD.{sql.alias} = NEW.{sql.alias} THEN
        IF new_slot < mark THEN
            {_add_counts(sql, "new_slot", f"NEW.{sql.alias}", net)};
        END IF;
    ELSE
        IF old_slot < mark THEN
            {_add_row(sql, "OLD", "-")};
        END IF;
        IF new_slot < mark THEN
            {_add_row(sql, "NEW", "")};
        END IF;
    END IF;
    IF old_slot < mark AND {sql.bounced("OLD")} THEN
        {_add_bounce(sql, "OLD", "-")};
    END IF;
    IF new_slot < mark AND {sql.bounced("NEW")} THEN
        {_add_bounce(sql, "NEW", "")};
    END IF;
    RETURN NULL;
END
$body$"""
    reset = f"""
CREATE FUNCTION {_PREFIX}_reset() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    DELETE FROM {sql.rollup};
    DELETE FROM {sql.bounces};
    UPDATE {sql.state} SET watermark = NULL;
    RETURN NULL;
END
$body$"""
    created = sql.columns["created_at"]
    lag = f"statement_timestamp() - interval '{LAG_SECONDS} seconds'"
    watched = ", ".join(sql.columns.values())
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in sql.columns.values())
    run = f"EXECUTE FUNCTION {_PREFIX}_apply()"
    return [
        apply,
        reset,
        f"CREATE TRIGGER {_PREFIX}_insert AFTER INSERT ON {sql.delivery} "
        f"FOR EACH ROW WHEN (NEW.{created} < {lag}) {run}",
        f"CREATE TRIGGER {_PREFIX}_update AFTER UPDATE OF {watched} ON {sql.delivery} "
        f"FOR EACH ROW WHEN ((OLD.{created} < {lag} OR NEW.{created} < {lag}) "
        f"AND ({changed})) {run}",
        f"CREATE TRIGGER {_PREFIX}_delete AFTER DELETE ON {sql.delivery} "
        f"FOR EACH ROW WHEN (OLD.{created} < {lag}) {run}",
        f"CREATE TRIGGER {_PREFIX}_truncate AFTER TRUNCATE ON {sql.delivery} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {_PREFIX}_reset()",
    ]
