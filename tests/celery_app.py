"""The test suite's Celery app: the test process enqueues through it, and the worker
processes that tests start run it (``celery -A tests.celery_app worker``).

A worker reports to the test process that started it (``CLOUDMAILS_TEST_EVENTS``, a
loopback port): ``ready`` once it consumes, ``received`` for each message it takes from
the broker (prefetched or not), ``started`` and ``finished`` around each run of a task,
and ``published`` for each task it enqueues (a retry, recovery handing rows back), so
tests wait for events instead of sleeping.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    after_task_publish,
    task_postrun,
    task_prerun,
    task_received,
    worker_ready,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("cloudmails-tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_channel: list[socket.socket] = []
_lock = threading.Lock()


def report(event: str, **fields: Any) -> None:
    """Send one event (a JSON line) to the test process, if one listens."""
    address = os.environ.get("CLOUDMAILS_TEST_EVENTS")
    if not address:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), **fields}, default=repr) + "\n"
    with _lock:
        if not _channel:
            host, port = address.rsplit(":", 1)
            _channel.append(socket.create_connection((host, int(port))))
        _channel[0].sendall(line.encode())


@worker_ready.connect
def _ready(**kwargs: Any) -> None:
    report("ready")


@task_prerun.connect
def _started(task_id: str, task: Any, args: Any = (), **kwargs: Any) -> None:
    report("started", task=task.name, task_id=task_id, args=list(args or ()))


@task_postrun.connect
def _finished(task_id: str, task: Any, retval: Any = None, state: str = "", **kwargs: Any) -> None:
    report("finished", task=task.name, task_id=task_id, state=state, result=retval)


@task_received.connect
def _received(request: Any, **kwargs: Any) -> None:
    report("received", task=request.name, task_id=request.id)


@after_task_publish.connect
def _published(sender: str | None = None, headers: Any = None, **kwargs: Any) -> None:
    report("published", task=sender, task_id=(headers or {}).get("id"))
