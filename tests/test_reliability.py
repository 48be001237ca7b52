"""Exactly once under faults, with real worker processes, on every broker (``.ci/run``
runs the Celery tests on the filesystem transport, Redis and RabbitMQ).

The sandbox answers each API request by one seeded draw: 20% 5xx, 10% 429 with
``Retry-After: 1``, 5% dropped connections, 5% responses lost after the messages were
accepted; the rest normally. 2,000 messages are written by CeleryEmailBackend in requests
of 50 (forty tasks). Workers retry refusals themselves (Celery retries); a dropped or lost
answer leaves its rows ``unknown``. Then one recovery run (the ``recover_deliveries``
task), faults still on. Each message must then be accepted by the sandbox exactly once,
counted by the Delivery id it carries in ``custom_args``, and every row be ``sent``.

Retry-After is a whole second at least, and a 429 holds every worker: some ten 429s
among the sixty-odd requests are most of the time these tests take, which is why the
messages go in requests of 50 rather than fewer, larger ones (which would meet fewer
faults).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from django_cloudmails import tasks
from django_cloudmails.sandbox import Sandbox
from tests.conftest import API_KEY, PREFETCHED, VERIFIED_SENDERS, forgets_fetched_tasks
from tests.writing import accepted_per_delivery, ids, send_requests, statuses, write

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

MESSAGES = 2000
FAULTS = {
    "error_rate": 0.2,
    "error_status": 503,
    "throttle_rate": 0.1,
    "retry_after": 1,
    "drop_rate": 0.05,
    "lose_response_rate": 0.05,
}
#: The draws of this seed give every fault within the first forty requests.
SEED = 8


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The suite's sandbox, seeded: the sequence of faults is the same every run (which
    request meets which depends on the workers' timing)."""
    with Sandbox(api_key=API_KEY, verified_senders=VERIFIED_SENDERS, seed=SEED) as sb:
        yield sb


@pytest.fixture
def unreliable(written: list[list[str]], settings: Any, sandbox: Sandbox) -> list[list[str]]:
    """Workers that retry a request up to 12 times (the odds that 12 draws in a row are
    refusals are 0.3 ** 12), backing off from 50 ms to at most 1 s, and recover at once
    when told to; the id lists CeleryEmailBackend wrote, not enqueued yet."""
    settings.CLOUDMAILS = {
        **settings.CLOUDMAILS,
        "API_URL": sandbox.url,
        "BATCH_SIZE": 50,
        "RETRY_ATTEMPTS": 12,
        "RETRY_BACKOFF": 0.05,
        "RETRY_MAX_BACKOFF": 1.0,
        "RECOVER_AFTER": 0,
    }
    return written


def assert_each_message_accepted_once_and_every_row_sent(sandbox: Sandbox, rows: Any) -> None:
    assert statuses() == {"sent": MESSAGES}
    accepted = accepted_per_delivery(sandbox)
    assert len(accepted) == MESSAGES
    assert accepted == Counter(ids(rows))  # no loss, no duplicate


def assert_every_fault_happened(sandbox: Sandbox) -> None:
    outcomes = Counter(
        r.status if r.outcome == "answered" else r.outcome for r in send_requests(sandbox)
    )
    for fault in (503, 429, "dropped", "lost"):
        assert outcomes[fault], outcomes


def test_under_faults_each_message_is_accepted_once_and_every_row_is_final_after_recovery(
    unreliable: list[list[str]], sandbox: Sandbox, celery_workers: Any
) -> None:
    rows = write(MESSAGES)
    sandbox.faults.update(FAULTS)
    celery_workers.start(2)

    tasks.enqueue_sends(unreliable)
    celery_workers.settle()
    assert set(statuses()) <= {"sent", "unknown"}  # no refusal outlasted its retries
    tasks.recover_deliveries.delay()
    celery_workers.settle()

    assert_every_fault_happened(sandbox)
    assert_each_message_accepted_once_and_every_row_sent(sandbox, rows)


def test_a_worker_killed_in_the_middle_of_a_batch_and_started_again_loses_and_repeats_nothing(
    unreliable: list[list[str]], sandbox: Sandbox, celery_workers: Any, prefetching_worker: Any
) -> None:
    rows = write(MESSAGES)
    sandbox.faults.update(FAULTS)
    first, gate = prefetching_worker(5)  # the fifth request stays in flight

    tasks.enqueue_sends(unreliable)
    held = celery_workers.kill_in_flight(first, gate, holding=PREFETCHED)
    # The filesystem transport forgot what the dead worker fetched; Redis and RabbitMQ
    # deliver it again (its claims make that rerun harmless).
    lost = held if forgets_fetched_tasks() else set()
    celery_workers.start(2)
    celery_workers.settle(lost=lost)
    # The outage is over: the rows of tasks the broker lost go out for the first time in
    # the recovery run (and a first send that meets a lost answer needs a recovery of
    # its own).
    sandbox.faults.clear()
    tasks.recover_deliveries.delay()
    celery_workers.settle(lost=lost)

    assert first.process.returncode == -9
    assert_each_message_accepted_once_and_every_row_sent(sandbox, rows)
