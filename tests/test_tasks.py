"""django_cloudmails.tasks: names, options and the beat schedule users rely on; polling and
recovery run by a real worker."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from django_cloudmails import sending, tasks
from django_cloudmails.limits import SIMULATOR_DOMAIN
from django_cloudmails.models import Delivery
from tests.celery_app import app
from tests.conftest import API_KEY, PREFETCHED, forgets_fetched_tasks
from tests.writing import accepted_per_delivery, ids, statuses, write


def test_tasks_have_stable_names() -> None:
    assert tasks.send_deliveries.name == "cloudmails.send_deliveries"
    assert tasks.poll_statuses.name == "cloudmails.poll_statuses"
    assert tasks.recover_deliveries.name == "cloudmails.recover_deliveries"
    assert tasks.materialize_rollup.name == "cloudmails.materialize_rollup"


def test_sending_is_acknowledged_late_so_a_killed_workers_task_runs_again() -> None:
    task = app.tasks["cloudmails.send_deliveries"]

    assert task.acks_late is True
    assert task.reject_on_worker_lost is True


def test_the_beat_schedule_polls_every_minute_recovers_and_rolls_up_every_five() -> None:
    schedule = tasks.BEAT_SCHEDULE

    assert {entry["task"]: entry["schedule"] for entry in schedule.values()} == {
        "cloudmails.poll_statuses": 60.0,
        "cloudmails.recover_deliveries": 300.0,
        "cloudmails.materialize_rollup": 300.0,
    }
    for entry in schedule.values():
        assert entry["task"] in app.tasks
        assert entry["options"]["expires"] < entry["schedule"]


def test_settings_can_import_the_schedule_before_django_is_set_up() -> None:
    code = (
        "import sys\n"
        "from django_cloudmails.tasks import BEAT_SCHEDULE\n"
        "assert 'django_cloudmails.models' not in sys.modules, 'models imported'\n"
        "assert BEAT_SCHEDULE\n"
    )
    env_free = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env={}
    )

    assert env_free.returncode == 0, env_free.stderr


def test_send_campaign_is_importable_from_tasks_as_a_plain_function() -> None:
    from django_cloudmails.campaigns import send_campaign

    assert tasks.send_campaign is send_campaign
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tasks.nothing  # noqa: B018


# Through a real worker process.


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_poll_statuses_on_a_worker_moves_rows_to_what_the_api_says(
    cloudmails_settings: dict[str, Any], sandbox: Any, celery_workers: Any
) -> None:
    cloudmails_settings["POLL_SCHEDULE"] = (0,)  # every sent row is due at once
    fates = ("delivered", "bounce", "deferred")
    emails = [EmailMessage("Hi", "Body", None, [f"{fate}@{SIMULATOR_DOMAIN}"]) for fate in fates]
    rows = [Delivery.objects.create(**row) for row in sent_rows(sandbox, emails)]
    sandbox.wait_idle(30)  # no webhook configured: only a poll can tell the rows
    celery_workers.start()

    tasks.poll_statuses.delay()
    celery_workers.settle()

    (result,) = celery_workers.results("cloudmails.poll_statuses")
    assert (result["polled"], result["advanced"], result["bounced"]) == (3, 3, 1)
    for row in rows:
        row.refresh_from_db()
        assert row.status == sandbox.message(row.message_id).status
    assert sorted(row.status for row in rows) == ["bounced", "deferred", "delivered"]


def sent_rows(sandbox: Any, emails: list[EmailMessage]) -> list[dict[str, Any]]:
    """Rows as a worker leaves them once the sandbox accepted ``emails``: ``sent``, with
    their message ids (the emails are sent here, through the package's client)."""
    from django_cloudmails.client import CloudMailsClient
    from django_cloudmails.payloads import build_api_messages

    rows = []
    with CloudMailsClient(API_KEY, api_url=sandbox.url) as client:
        for email in emails:
            (message,) = build_api_messages(email)
            result = client.send(message.payload)
            rows.append(
                {
                    "status": "sent",
                    "message_id": result.message_id,
                    "to_email": message.to_email,
                    "from_email": message.payload["from"],
                    "subject": "Hi",
                    "sent_at": timezone.now() - timedelta(minutes=1),
                }
            )
    return rows


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_recover_deliveries_on_a_worker_settles_unknown_rows_and_sends_lost_tasks(
    written: list[list[str]], sandbox: Any, settings: Any, celery_workers: Any
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "RECOVER_AFTER": 0}
    answer_lost = write(2, subject="Answer lost")
    sandbox.faults.script("lose")
    assert sending.send_deliveries(ids(answer_lost)).unknown == 2  # accepted all the same
    task_lost = write(3, subject="Task lost")  # enqueued nowhere: the broker lost it
    celery_workers.start()

    tasks.recover_deliveries.delay()
    celery_workers.settle()

    (result,) = celery_workers.results("cloudmails.recover_deliveries")
    assert (result["requeued"], result["claimed"], result["accepted"]) == (3, 2, 2)
    assert "outcomes" not in result  # per-row details stay out of the broker's results
    assert statuses() == {"sent": 5}
    assert accepted_per_delivery(sandbox) == Counter(ids(answer_lost + task_lost))


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_holding_prefetched_tasks_loses_nothing_after_recover_deliveries(
    written: list[list[str]],
    sandbox: Any,
    settings: Any,
    celery_workers: Any,
    prefetching_worker: Any,
) -> None:
    settings.CLOUDMAILS = {**settings.CLOUDMAILS, "RECOVER_AFTER": 0, "BATCH_SIZE": 2}
    rows = write(8)  # four tasks of one request each
    first, gate = prefetching_worker(1)  # the first request stays in flight
    tasks.enqueue_sends(written)

    held = celery_workers.kill_in_flight(first, gate, holding=PREFETCHED)
    assert len(held) == 4  # the task it ran and three it had prefetched
    lost = held if forgets_fetched_tasks() else set()
    celery_workers.start()
    celery_workers.settle(lost=lost)
    if lost:
        assert statuses() == {"queued": 8}  # 2 claimed by the dead worker, 6 never
        assert Delivery.objects.filter(attempt_started_at__isnull=True).count() == 6
    tasks.recover_deliveries.delay()
    celery_workers.settle(lost=lost)

    (result,) = celery_workers.results("cloudmails.recover_deliveries")
    assert result["requeued"] == (6 if lost else 0)
    assert statuses() == {"sent": 8}
    assert accepted_per_delivery(sandbox) == Counter(ids(rows))
