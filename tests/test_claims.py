"""Claims: a compare-and-set of ``attempt_started_at`` on whole requests, for a worker's
first claim, a retry's renewal, the hold before each request, and recovery's takeover."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_cloudmails import claims, identity
from django_cloudmails.models import Delivery
from tests.threads import run_threads
from tests.writing import ids, write

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def batches_of(written: Any, settings: Any) -> Any:
    """``batches_of(n)``: rows written from now on go out in requests of ``n``."""

    def use(size: int) -> None:
        settings.CLOUDMAILS = {**settings.CLOUDMAILS, "BATCH_SIZE": size}

    return use


def stamps() -> set[Any]:
    return set(Delivery.objects.values_list("attempt_started_at", flat=True))


def test_a_claim_stamps_the_rows_and_a_second_claim_gets_none(written: Any) -> None:
    rows = write(3)

    first = claims.claim(ids(rows))
    second = claims.claim(ids(rows))

    assert sorted(row.pk for row in first.rows) == sorted(row.pk for row in rows)
    assert list(second.rows) == []
    assert stamps() == {first.at}


def test_a_claim_takes_every_row_of_the_requests_of_the_ids_given(written: Any) -> None:
    rows = write(4)

    claimed = claims.claim([str(rows[2].pk)])

    (request,) = claimed.requests
    assert {row.pk for row in request} == {row.pk for row in rows}


def test_requests_come_in_the_order_of_the_ids_and_rows_in_the_order_of_their_key(
    batches_of: Any,
) -> None:
    batches_of(2)
    rows = write(4)

    claimed = claims.claim(list(reversed(ids(rows))))

    assert [{row.to_email for row in r} for r in claimed.requests] == [
        {"u3@example.com", "u2@example.com"},
        {"u1@example.com", "u0@example.com"},
    ]
    for request in claimed.requests:
        # Rebuilt as the key was computed: a resend under it is the same request.
        assert request == identity.in_request_order(request)
        key = identity.request_key([row.id for row in request], batch=True)
        assert {row.idempotency_key for row in request} == {key}


def test_a_claim_skips_rows_not_queued_or_claimed_already(written: Any) -> None:
    rows = write(1, subject="Sent") + write(1, subject="Claimed") + write(1)
    Delivery.objects.filter(subject="Sent").update(status="sent")
    Delivery.objects.filter(subject="Claimed").update(attempt_started_at=timezone.now())

    claimed = claims.claim(ids(rows))

    assert [row.subject for row in claimed.rows] == ["Hi"]


def test_rows_without_an_idempotency_key_are_never_claimed(written: Any) -> None:
    row = Delivery.objects.create(status="queued", to_email="a@example.com", payload={})

    assert list(claims.claim([str(row.pk)]).rows) == []


def test_concurrent_claims_share_out_whole_requests_once_each(batches_of: Any) -> None:
    batches_of(3)
    rows = write(30)
    given = ids(rows)

    taken: list[claims.Claim] = run_threads(lambda index: claims.claim(given), 6)

    by_row = Counter(row.pk for claim in taken for row in claim.rows)
    assert set(by_row) == {row.pk for row in rows}
    assert set(by_row.values()) == {1}
    keys = Counter(row.idempotency_key for row in rows)
    for claim in taken:
        for request in claim.requests:
            assert len(request) == keys[request[0].idempotency_key]


# A retry's renewal.


def test_a_retry_renews_only_the_claim_it_owns(written: Any) -> None:
    rows = write(3)
    first = claims.claim(ids(rows))

    stranger = claims.renew(ids(rows), owned_at=first.at - timedelta(microseconds=1))
    renewed = claims.renew(ids(rows), owned_at=first.at)
    stale = claims.renew(ids(rows), owned_at=first.at)

    assert list(stranger.rows) == []
    assert sorted(row.pk for row in renewed.rows) == sorted(row.pk for row in rows)
    assert renewed.at > first.at
    assert list(stale.rows) == []


def test_a_claim_taken_over_by_recovery_is_not_renewed(written: Any) -> None:
    rows = write(2)
    first = claims.claim(ids(rows))
    now = timezone.now()
    assert claims.take_over(list(first.rows), now, now) is not None

    assert list(claims.renew(ids(rows), owned_at=first.at).rows) == []


# Holding each request right before it goes out.


def test_the_first_request_goes_out_on_the_claim_and_later_ones_renew_it(
    batches_of: Any,
) -> None:
    batches_of(2)
    rows = write(4)
    claim = claims.claim(ids(rows))
    first, second = claim.requests

    assert claim.hold(first)
    assert stamps() == {claim.at}
    assert claim.hold(second)
    renewed = {r.attempt_started_at for r in Delivery.objects.filter(pk__in=[r.pk for r in second])}
    assert len(renewed) == 1
    assert renewed.pop() > claim.at


def test_a_request_taken_over_meanwhile_is_not_held(batches_of: Any) -> None:
    batches_of(2)
    rows = write(4)
    claim = claims.claim(ids(rows))
    first, second = claim.requests
    assert claim.hold(first)
    now = timezone.now()
    as_recovery_reads_them = list(Delivery.objects.filter(pk__in=[row.pk for row in second]))
    assert claims.take_over(as_recovery_reads_them, now, now) is not None  # told any age

    assert not claim.hold(second)
    assert not claim.held & {row.pk for row in second}


def test_rows_handed_back_keep_the_claim_time_they_share(batches_of: Any) -> None:
    batches_of(2)
    rows = write(4)
    claim = claims.claim(ids(rows))

    at, owned = claim.hand_back(list(claim.rows))

    assert at == claim.at
    assert {row.pk for row in owned} == {row.pk for row in rows}


def test_rows_handed_back_with_different_claim_times_get_one(batches_of: Any) -> None:
    batches_of(2)
    rows = write(4)
    claim = claims.claim(ids(rows))
    first, second = claim.requests
    claim.hold(first)
    claim.hold(second)  # renewed: the two requests now carry different times

    at, owned = claim.hand_back(list(claim.rows))

    assert at > claim.at
    assert len(owned) == 4
    assert stamps() == {at}
    assert sorted(row.pk for row in claims.renew(ids(rows), owned_at=at).rows) == sorted(
        row.pk for row in rows
    )
