"""The database UPDATEs derived from the lifecycle's declarations agree with its fold.

Every form the builder produces (ORM values, the compiled SET list with placeholders,
the bulk ``UPDATE ... FROM (VALUES ...)`` and its ``executemany`` fallback) is run on the
database and compared with :func:`lifecycle.apply` over the same reports in the same
order.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_cloudmails import lifecycle, updates
from django_cloudmails.lifecycle import Tracking
from django_cloudmails.models import Delivery

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 19, 14, 30, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=1)
POLL_STATUSES = [*lifecycle.PRECEDENCE, "whatever", None]


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def tracking_of(pk: Any) -> Tracking:
    row = Delivery.objects.get(pk=pk)
    return Tracking(**{f.name: getattr(row, f.name) for f in fields(Tracking)})


def new_row(status: str = "sent") -> Any:
    return Delivery.objects.create(status=status, to_email="a@example.com", from_email="b@c.d").pk


_event = st.tuples(
    st.just("event"),
    st.sampled_from(lifecycle.EVENT_TYPES),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(["hard", "soft"]),
)
_poll = st.tuples(
    st.just("poll"),
    st.sampled_from(POLL_STATUSES),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
)


def answer(status: str | None, opens: int | None = None) -> dict[str, Any]:
    """A poll answer's inputs: ``status`` and counters, no dates."""
    return {
        "status": status,
        "delivered_at": None,
        "failed_at": None,
        "opens": opens,
        "clicks": opens,
    }


def effect_and_inputs(report: tuple[Any, ...]) -> tuple[lifecycle.Effect, dict[str, Any]]:
    if report[0] == "event":
        _, name, ms, kind = report
        effect = lifecycle.effect_of(name, bounce_reason=f"reason {ms}", bounce_type=kind)
        return effect, {"at": at(ms)}
    _, status, delivered, count = report
    return lifecycle.POLLED, {
        "status": status,
        "delivered_at": None if delivered is None else at(delivered),
        "failed_at": NOW if status == "failed" else None,
        "opens": count,
        "clicks": count,
    }


def fold(start: str, reports: list[tuple[Any, ...]]) -> Tracking:
    state = Tracking(status=start)
    for report in reports:
        effect, inputs = effect_and_inputs(report)
        state = lifecycle.apply(state, effect, **inputs)
    return state


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    reports=st.lists(st.one_of(_event, _poll), max_size=8),
    start=st.sampled_from(lifecycle.PRECEDENCE),
    bulk=st.booleans(),
)
def test_the_database_applies_reports_as_the_lifecycle_folds_them(
    reports: list[tuple[Any, ...]], start: str, bulk: bool
) -> None:
    pk, other = new_row(start), new_row(start)
    for report in reports:
        effect, inputs = effect_and_inputs(report)
        if report[0] == "poll" and bulk:
            # Two rows, so the statement is the VALUES form; the other gets the same.
            updates.update_rows(effect, [(pk, inputs), (other, inputs)], using="default", now=NOW)
        else:
            updates.apply(pk, effect, using="default", now=NOW, **inputs)
    assert tracking_of(pk) == fold(start, reports)


def test_the_old_sqlite_fallback_writes_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite version matters only on SQLite")
    inputs = {"status": "delivered", "delivered_at": at(5), "failed_at": None}
    first, second = new_row(), new_row("bounced")
    rows = [
        (first, {**inputs, "opens": 3, "clicks": 1}),
        (second, {**inputs, "opens": 0, "clicks": 2}),
    ]
    monkeypatch.setattr(connection.Database, "sqlite_version_info", (3, 31, 1))

    updates.update_rows(lifecycle.POLLED, rows, using="default", now=NOW)

    assert (tracking_of(first).status, tracking_of(first).opens) == ("delivered", 3)
    assert (tracking_of(second).status, tracking_of(second).clicks) == ("bounced", 2)


def test_a_status_the_lifecycle_does_not_know_changes_nothing() -> None:
    pk = new_row("deferred")

    updates.update_rows(
        lifecycle.POLLED,
        [(pk, answer("archived"))],
        using="default",
        now=NOW,
    )

    assert tracking_of(pk).status == "deferred"


def test_a_set_list_is_compiled_once_per_effect_and_database() -> None:
    first = updates.compiled_set(lifecycle.EFFECTS["opened"], connection)

    assert updates.compiled_set(lifecycle.EFFECTS["opened"], connection) is first
    assert updates.compiled_set(lifecycle.EFFECTS["clicked"], connection) is not first


def test_named_placeholders_keep_literal_percent_signs() -> None:
    compiled = updates.Compiled(
        "a = %s, b = '%%', c = %s", (updates.Slot("at", Delivery._meta.get_field("sent_at")), 7)
    )

    sql, constants = updates.named(compiled, "c_")

    assert (sql, constants) == ("a = %(at)s, b = '%%', c = %(c_0)s", {"c_0": 7})


def test_only_move_forward_in_sql_matches_advance_for_every_pair() -> None:
    pairs = [(current, proposed) for current in lifecycle.PRECEDENCE for proposed in POLL_STATUSES]
    rows = []
    for current, proposed in pairs:
        pk = new_row(current)
        rows.append((pk, current, proposed))
        updates.update_rows(
            lifecycle.POLLED,
            [(pk, answer(proposed))],
            using="default",
            now=NOW,
        )
    for pk, current, proposed in rows:
        assert Delivery.objects.get(pk=pk).status == lifecycle.advance(current, proposed)
