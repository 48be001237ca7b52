"""django_cloudmails.tasks: names, options and the beat schedule users rely on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from django_cloudmails import tasks
from tests.celery_app import app


def test_tasks_have_stable_names() -> None:
    assert tasks.send_deliveries.name == "cloudmails.send_deliveries"
    assert tasks.poll_statuses.name == "cloudmails.poll_statuses"
    assert tasks.recover_deliveries.name == "cloudmails.recover_deliveries"


def test_sending_is_acknowledged_late_so_a_killed_workers_task_runs_again() -> None:
    task = app.tasks["cloudmails.send_deliveries"]

    assert task.acks_late is True
    assert task.reject_on_worker_lost is True


def test_the_beat_schedule_polls_every_minute_and_recovers_every_five() -> None:
    schedule = tasks.BEAT_SCHEDULE

    assert {entry["task"]: entry["schedule"] for entry in schedule.values()} == {
        "cloudmails.poll_statuses": 60.0,
        "cloudmails.recover_deliveries": 300.0,
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
