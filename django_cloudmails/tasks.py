"""Celery tasks: thin wrappers over engine-free functions.

    # settings.py
    from django_cloudmails.tasks import BEAT_SCHEDULE
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE}

Each task has a stable name and takes JSON primitives (row ids, never rows or bodies);
the work lives in :mod:`~django_cloudmails.sending`, ``polling`` and ``recovery``, so
Django's Tasks framework could wrap the same functions. Every task is safe to run twice:
rows are claimed atomically, so a task that runs again (``acks_late``: a killed worker's
task is delivered again) or beside a twin sends nothing twice. Importing this module
imports nothing from the app's models, so settings can import :data:`BEAT_SCHEDULE`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from celery import Task, shared_task

logger = logging.getLogger("django_cloudmails.tasks")

#: Merged into ``CELERY_BEAT_SCHEDULE``: poll statuses every minute, recover every five,
#: roll the dashboard's counts up every five. A run that no worker picked up in time
#: expires rather than pile up behind the next.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "cloudmails-poll-statuses": {
        "task": "cloudmails.poll_statuses",
        "schedule": 60.0,
        "options": {"expires": 55.0},
    },
    "cloudmails-recover-deliveries": {
        "task": "cloudmails.recover_deliveries",
        "schedule": 300.0,
        "options": {"expires": 290.0},
    },
    "cloudmails-rollup": {
        "task": "cloudmails.materialize_rollup",
        "schedule": 300.0,
        "options": {"expires": 290.0},
    },
}


@shared_task(
    bind=True,
    name="cloudmails.send_deliveries",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # RETRY_ATTEMPTS of each row's alias decides: see sending
)
def send_deliveries(
    self: Task[Any, Any], ids: list[str], claimed_at: str | None = None
) -> dict[str, Any]:
    """Send the queued rows among ``ids`` (see :func:`.sending.send_deliveries`).

    Rows a retryable refusal handed back are retried by this task, with their ids only,
    after the wait the run asked for, owning the claim it made (``claimed_at``, ISO
    8601): a retry never sends rows recovery took over meanwhile.
    """
    from datetime import datetime

    from .sending import send_deliveries as send

    owned = datetime.fromisoformat(claimed_at) if claimed_at else None
    report = send(ids, claimed_at=owned, attempt=self.request.retries + 1)
    if report.retry_ids:
        raise self.retry(
            args=(report.retry_ids,),
            kwargs={"claimed_at": report.claimed_at},
            countdown=report.retry_in,
        )
    return report.as_dict()


@shared_task(name="cloudmails.poll_statuses", ignore_result=True)
def poll_statuses() -> dict[str, Any]:
    """Ask the API for the status of rows not yet final (see ``polling.poll``)."""
    from .polling import poll

    return _counts(poll())


@shared_task(name="cloudmails.recover_deliveries", ignore_result=True)
def recover_deliveries() -> dict[str, Any]:
    """Hand rows whose task was lost to a worker again, then settle rows whose outcome
    is unknown (see :func:`.sending.unclaimed_requests` and ``recovery.recover``)."""
    from .recovery import recover
    from .sending import unclaimed_requests

    lost = unclaimed_requests()
    enqueue_sends(lost)
    report = _counts(recover())
    report["requeued"] = sum(len(ids) for ids in lost)
    return report


@shared_task(name="cloudmails.materialize_rollup", ignore_result=True)
def materialize_rollup() -> int | None:
    """Roll the closed 15-minute slots up for the dashboard (PostgreSQL; elsewhere the
    dashboard counts the table and this does nothing). See ``rollup.materialize``."""
    from .rollup import materialize

    return materialize()


def _counts(report: Any) -> dict[str, Any]:
    """A run's report without its per-row details: a task's result goes through the
    serializer, so it holds counts, whatever the number of rows (and no UUID keys)."""
    values = ((field.name, getattr(report, field.name)) for field in fields(report))
    return {name: value for name, value in values if not isinstance(value, dict)}


def enqueue_sends(tasks: Sequence[Sequence[str]]) -> None:
    """Enqueue one :func:`send_deliveries` per list of ids.

    A broker that refuses is logged, not raised: the rows are committed already (the
    caller's transaction is over), and ``recover_deliveries`` hands them to a worker
    once they are older than ``RECOVER_AFTER``.
    """
    for position, ids in enumerate(tasks):
        try:
            send_deliveries.delay(list(ids))
        except Exception:
            left = sum(len(later) for later in tasks[position:])
            logger.exception(
                "cloudmails: could not enqueue the sending of %d rows; recover_deliveries "
                "will hand them to a worker after RECOVER_AFTER.",
                left,
            )
            return


def __getattr__(name: str) -> Any:
    # send_campaign imports the models: only once asked for (settings import this module).
    if name == "send_campaign":
        from .campaigns import send_campaign

        return send_campaign
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
