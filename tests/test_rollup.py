"""The dashboard's counts: per slot, per alias, and equal to a count of the table after
any sequence of writes, materializations and concurrent writers (the rollup is kept on
PostgreSQL; elsewhere the same reads count the table)."""

from __future__ import annotations

import os
import threading
from collections import Counter as Tally
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_cloudmails import lifecycle, rollup
from django_cloudmails.models import BounceRollup, Delivery, DeliveryRollup, RollupState

ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="the rollup is kept on PostgreSQL")

NOW = timezone.now()
#: A period covering every row these tests write (the last ones are younger than the lag).
PERIOD = rollup.Period(NOW - timedelta(days=3), NOW + timedelta(hours=1))


def make_row(age: timedelta, **fields: Any) -> Delivery:
    """A Delivery created ``age`` ago (auto_now_add is overwritten by an UPDATE)."""
    defaults: dict[str, Any] = {
        "to_email": "reader@example.com",
        "from_email": "shop@shop.example",
        "status": lifecycle.SENT,
    }
    row = Delivery.objects.create(**{**defaults, **fields})
    Delivery.objects.filter(pk=row.pk).update(created_at=NOW - age)
    row.refresh_from_db()
    return row


def into_slot(age: timedelta, seconds: int) -> timedelta:
    """The age of a row ``seconds`` into the slot that holds ``NOW - age``, so that rows
    meant to share a slot do whatever the clock says when the tests run."""
    start = int((NOW - age).timestamp()) // rollup.SLOT_SECONDS * rollup.SLOT_SECONDS
    return NOW - datetime.fromtimestamp(start + seconds, tz=NOW.tzinfo)


def truth(
    period: rollup.Period = PERIOD,
) -> tuple[dict[int, dict[str, int]], Tally[str], Tally[str]]:
    """The counts computed in Python from the rows: per slot, bounce reasons, domains."""
    slots: dict[int, dict[str, int]] = {}
    reasons: Tally[str] = Tally()
    domains: Tally[str] = Tally()
    rows = Delivery.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
    if period.alias is not None:
        rows = rows.filter(alias=period.alias)
    for row in rows:
        slot = int(row.created_at.timestamp()) // rollup.SLOT_SECONDS
        counts = slots.setdefault(slot, dict.fromkeys(rollup.COUNTER_NAMES, 0))
        for counter in rollup.COUNTERS:
            value = getattr(row, counter.column)
            if counter.test == "IS NOT NULL":
                counts[counter.name] += value is not None
            else:
                counts[counter.name] += value == counter.test.split("'")[1]
        if row.status == lifecycle.BOUNCED:
            reasons[row.bounce_reason[: rollup.REASON_LENGTH]] += 1
            domains[row.to_email.rsplit("@", 1)[1].lower()] += 1
    return slots, reasons, domains


def assert_exact(period: rollup.Period = PERIOD) -> None:
    slots, reasons, domains = truth(period)
    assert dict(rollup.slot_counts(period)) == slots
    assert dict(rollup.top_bounces(period, "reason", limit=1000)) == dict(reasons)
    assert dict(rollup.top_bounces(period, "domain", limit=1000)) == dict(domains)


# The reads, on every database.


@pytest.mark.django_db
def test_each_row_counts_in_the_slot_of_its_creation() -> None:
    make_row(into_slot(timedelta(hours=30), 60), status=lifecycle.DELIVERED, first_opened_at=NOW)
    make_row(into_slot(timedelta(hours=30), 120), status=lifecycle.BOUNCED)
    make_row(timedelta(hours=2), status=lifecycle.UNKNOWN, sent_at=None)
    make_row(timedelta(minutes=1), status=lifecycle.DELIVERED, complained_at=NOW)

    counts = rollup.slot_counts(PERIOD)

    assert len(counts) == 3
    assert rollup.totals(counts) == {
        **dict.fromkeys(rollup.COUNTER_NAMES, 0),
        "total": 4,
        "delivered": 2,
        "bounced": 1,
        "unknown": 1,
        "complained": 1,
        "opened": 1,
    }
    assert_exact()


@pytest.mark.django_db
def test_sent_counts_rows_the_api_accepted() -> None:
    make_row(timedelta(hours=3), status=lifecycle.DELIVERED, sent_at=NOW)
    make_row(timedelta(hours=3), status=lifecycle.FAILED, sent_at=None)

    assert rollup.totals(rollup.slot_counts(PERIOD))["sent"] == 1


@pytest.mark.django_db
def test_an_alias_counts_only_its_own_rows() -> None:
    make_row(timedelta(hours=5), alias="default")
    make_row(timedelta(hours=5), alias="marketing")
    make_row(timedelta(hours=5), alias="marketing", status=lifecycle.BOUNCED)
    marketing = rollup.Period(PERIOD.start, PERIOD.end, alias="marketing")

    assert rollup.totals(rollup.slot_counts(marketing))["total"] == 2
    assert_exact(marketing)


@pytest.mark.django_db
def test_the_period_includes_its_start_and_excludes_its_end() -> None:
    start = datetime.fromtimestamp(
        (int(NOW.timestamp()) // 3600 - 10) * 3600, tz=NOW.tzinfo
    )  # a whole hour, ten hours ago
    inside = make_row(NOW - start)
    make_row(NOW - start + timedelta(microseconds=1))
    make_row(NOW - start - timedelta(hours=1))
    period = rollup.Period(start, start + timedelta(hours=1))

    counts = rollup.slot_counts(period)

    assert rollup.totals(counts)["total"] == 1
    assert counts[0][0] == int(inside.created_at.timestamp()) // rollup.SLOT_SECONDS


@pytest.mark.django_db
def test_top_bounces_rank_reasons_and_domains() -> None:
    for address, reason in [
        ("a@gmail.com", "550 user unknown"),
        ("b@Gmail.com", "550 user unknown"),
        ("c@yahoo.com", "552 mailbox full"),
    ]:
        make_row(
            timedelta(hours=4), status=lifecycle.BOUNCED, to_email=address, bounce_reason=reason
        )
    make_row(timedelta(hours=4), status=lifecycle.DELIVERED, to_email="d@yahoo.com")

    assert rollup.top_bounces(PERIOD, "reason") == [
        ("550 user unknown", 2),
        ("552 mailbox full", 1),
    ]
    assert rollup.top_bounces(PERIOD, "domain", limit=1) == [("gmail.com", 2)]


def test_top_bounces_refuses_an_unknown_key() -> None:
    with pytest.raises(ValueError, match="domain"):
        rollup.top_bounces(PERIOD, "subject")


# The rollup, on PostgreSQL.


@pytest.fixture
def rolled_up() -> None:
    """Rows in closed slots, rolled up (the watermark is 15 minutes behind)."""
    make_row(timedelta(days=2), status=lifecycle.DELIVERED)
    make_row(timedelta(hours=6), status=lifecycle.BOUNCED, bounce_reason="550 user unknown")
    assert rollup.materialize() is not None
    assert DeliveryRollup.objects.exists()


@postgresql_only
@pytest.mark.django_db
def test_materializing_moves_the_watermark_to_the_closed_slots(rolled_up: None) -> None:
    mark = rollup.current_watermark()
    expected = (int(timezone.now().timestamp()) - rollup.LAG_SECONDS) // rollup.SLOT_SECONDS

    assert mark is not None
    assert expected - 1 <= mark <= expected
    assert_exact()


@postgresql_only
@pytest.mark.django_db
def test_changes_to_rolled_up_rows_keep_the_counts_exact(rolled_up: None) -> None:
    old = Delivery.objects.order_by("created_at").first()
    assert old is not None
    Delivery.objects.filter(pk=old.pk).update(status=lifecycle.BOUNCED, bounce_reason="spam")
    Delivery.objects.filter(pk=old.pk).update(complained_at=NOW, first_opened_at=NOW)
    make_row(timedelta(days=1), status=lifecycle.DELIVERED, alias="marketing")
    Delivery.objects.filter(status=lifecycle.BOUNCED).update(created_at=NOW - timedelta(hours=20))
    Delivery.objects.filter(alias="marketing").delete()

    assert_exact()
    assert_exact(rollup.Period(PERIOD.start, PERIOD.end, alias="default"))


@postgresql_only
@pytest.mark.django_db
def test_rows_younger_than_the_lag_never_run_the_trigger(rolled_up: None) -> None:
    before = list(DeliveryRollup.objects.order_by("pk").values())
    young = make_row(timedelta(seconds=0), status=lifecycle.QUEUED)
    Delivery.objects.filter(pk=young.pk).update(status=lifecycle.BOUNCED, bounce_reason="x")

    assert list(DeliveryRollup.objects.order_by("pk").values()) == before
    assert_exact()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_truncating_deliveries_empties_the_rollup(rolled_up: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Delivery._meta.db_table} CASCADE")

    assert not DeliveryRollup.objects.exists()
    assert not BounceRollup.objects.exists()
    assert rollup.current_watermark() is None


ENGAGEMENT = ["sent_at", "complained_at", "first_opened_at", "first_clicked_at", "unsubscribed_at"]
OPERATIONS = st.one_of(
    st.tuples(
        st.just("create"),
        st.integers(min_value=0, max_value=48 * 4),
        st.sampled_from(lifecycle.PRECEDENCE),
        st.sampled_from(["default", "marketing"]),
    ),
    st.tuples(st.just("status"), st.integers(0, 30), st.sampled_from(lifecycle.PRECEDENCE)),
    st.tuples(
        st.just("engage"),
        st.integers(0, 30),
        st.sampled_from(
            ["sent_at", "complained_at", "first_opened_at", "first_clicked_at", "unsubscribed_at"]
        ),
    ),
    st.tuples(st.just("move"), st.integers(0, 30), st.integers(min_value=0, max_value=48 * 4)),
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(st.just("materialize")),
)


def apply_operation(operation: tuple[Any, ...]) -> None:
    kind = operation[0]
    if kind == "materialize":
        rollup.materialize()
        return
    if kind == "create":
        _, quarters, status, alias = operation
        make_row(
            timedelta(minutes=15 * quarters + 3),
            status=status,
            alias=alias,
            to_email=f"r{quarters}@d{quarters % 3}.example",
            bounce_reason=f"reason {quarters % 2}",
        )
        return
    rows = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
    if not rows:
        return
    target = Delivery.objects.filter(pk=rows[operation[1] % len(rows)])
    if kind == "status":
        target.update(status=operation[2])
    elif kind == "engage":
        target.update(**{operation[2]: NOW})
    elif kind == "move":
        target.update(created_at=NOW - timedelta(minutes=15 * operation[2] + 7))
    else:
        target.delete()


@postgresql_only
@pytest.mark.django_db
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(OPERATIONS, max_size=25))
def test_any_sequence_of_writes_and_materializations_keeps_the_counts_exact(
    operations: list[tuple[Any, ...]],
) -> None:
    Delivery.objects.all().delete()
    DeliveryRollup.objects.all().delete()
    BounceRollup.objects.all().delete()
    RollupState.objects.all().delete()
    for operation in operations:
        apply_operation(operation)
    assert_exact()
    assert_exact(rollup.Period(PERIOD.start, PERIOD.end, alias="marketing"))


# Concurrent writers (each thread has its own connection).


def in_thread(work: Any) -> threading.Thread:
    def target() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_writer_in_flight_keeps_the_watermark_where_it_is() -> None:
    row = make_row(timedelta(hours=5))
    updated, release = threading.Event(), threading.Event()

    def writer() -> None:
        with transaction.atomic():
            Delivery.objects.filter(pk=row.pk).update(status=lifecycle.BOUNCED)
            updated.set()
            release.wait(10)

    thread = in_thread(writer)
    assert updated.wait(10)
    assert rollup.materialize(lock_timeout=0.1) is None
    release.set()
    thread.join(10)

    assert rollup.materialize() is not None
    assert_exact()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_materializing_waits_for_a_writer_and_counts_its_change() -> None:
    row = make_row(timedelta(hours=5))
    updated = threading.Event()

    def writer() -> None:
        with transaction.atomic():
            Delivery.objects.filter(pk=row.pk).update(status=lifecycle.BOUNCED)
            updated.set()
            threading.Event().wait(0.3)  # hold the row while materialize() waits

    thread = in_thread(writer)
    assert updated.wait(10)
    assert rollup.materialize(lock_timeout=10) is not None
    thread.join(10)

    assert rollup.totals(rollup.slot_counts(PERIOD))["bounced"] == 1
    assert_exact()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_late_events_on_rolled_up_rows_are_all_counted() -> None:
    rows = [make_row(timedelta(hours=3), to_email=f"r{i}@example.com") for i in range(16)]
    rollup.materialize()
    barrier = threading.Barrier(8)

    def work(offset: int) -> None:
        barrier.wait()
        for row in rows[offset::8]:
            Delivery.objects.filter(pk=row.pk).update(
                status=lifecycle.DELIVERED, first_opened_at=NOW
            )

    threads = [in_thread(lambda i=i: work(i)) for i in range(8)]
    for thread in threads:
        thread.join(30)

    totals = rollup.totals(rollup.slot_counts(PERIOD))
    assert (totals["delivered"], totals["opened"]) == (16, 16)
    assert_exact()


def rollup_command() -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("cloudmails_rollup", stdout=out)
    return out.getvalue()


@postgresql_only
@pytest.mark.django_db
def test_the_rollup_command_rolls_up_and_says_how_far() -> None:
    make_row(timedelta(hours=2))

    output = rollup_command()

    mark = rollup.current_watermark()
    assert mark is not None
    assert f"created before {rollup.slot_moment(mark).isoformat()} are rolled up" in output
    assert_exact()


@pytest.mark.skipif(ON_POSTGRESQL, reason="PostgreSQL keeps a rollup")
@pytest.mark.django_db
def test_the_rollup_command_says_when_the_table_is_counted_live() -> None:
    assert "No rollup on this database: the dashboard counts the table." in rollup_command()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_beat_task_rolls_up_on_a_worker(celery_workers: Any) -> None:
    from django_cloudmails import tasks

    make_row(timedelta(hours=2), status=lifecycle.DELIVERED)
    celery_workers.start()

    tasks.materialize_rollup.delay()

    (done,) = celery_workers.events.wait(
        lambda event: (
            event["event"] == "finished" and event["task"] == tasks.materialize_rollup.name
        )
    )
    assert done["state"] == "SUCCESS"
    if ON_POSTGRESQL:
        assert done["result"] == rollup.current_watermark() is not None
        assert DeliveryRollup.objects.exists()
        assert_exact()
    else:  # nothing kept: the dashboard counts the table
        assert done["result"] is None
        assert not RollupState.objects.exists()
