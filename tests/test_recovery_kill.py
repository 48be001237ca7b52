"""``kill -9`` in the middle of a ``send_mass_mail`` of 5,000, then ``cloudmails_recover``.

The sender runs in a child process against the sandbox (in this process, over HTTP),
with each API request held a while in flight; it is killed as the second batch request
arrives, which the sandbox then accepts with no one left to read the answer. Recovery,
in another child process, must leave every row ``sent`` and every message accepted by
the sandbox exactly once: the batch in flight is answered from the sandbox's record of
its key, the batches never sent are sent now.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from tests.conftest import API_KEY

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 5000
TIMEOUT = 120

SEND = """
import django
django.setup()
from django.conf import settings
from django.core import mail
settings.CLOUDMAILS = {"API_KEY": %(key)r, "API_URL": %(url)r, "RETRY_ATTEMPTS": 1}
mail.send_mass_mail(
    [(f"Order {i}", "Body", None, [f"u{i}@example.com"]) for i in range(%(count)d)]
)
"""

RECOVER = """
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
settings.CLOUDMAILS = {"API_KEY": %(key)r, "API_URL": %(url)r, "RETRY_BACKOFF": 0.0}
call_command("cloudmails_recover", "--older-than", "0")
"""

ROWS = """
import json, django
django.setup()
from django_cloudmails.models import Delivery
print(json.dumps([[str(pk), status, mid] for pk, status, mid in
                  Delivery.objects.values_list("pk", "status", "message_id")]))
"""


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A DATABASE_URL for child processes: this test's PostgreSQL database, or an SQLite
    file (the suite's in-memory one cannot be shared), migrated."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        user = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
        yield f"postgresql://{user}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        return
    url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
    child(
        url,
        "from django.core.management import call_command; import django; "
        "django.setup(); call_command('migrate', verbosity=0)",
    )
    yield url


def environment(database_url: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def child(database_url: str, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment(database_url),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def batch_posts(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.requests if r.path == "/v1/send/batch"]


def test_kill_during_send_mass_mail_then_recover_sends_each_message_once(
    sandbox: Any, database_url: str
) -> None:
    arrived = threading.Event()
    draws = []
    draw = sandbox.faults.draw

    def counting_draw() -> Any:
        draws.append(1)
        if len(draws) == 2:
            arrived.set()
        return draw()

    sandbox.faults.draw = counting_draw
    sandbox.faults.latency = 0.5  # every request stays a while in flight
    values = {"key": API_KEY, "url": sandbox.url, "count": MESSAGES}
    sender = subprocess.Popen(
        [sys.executable, "-c", SEND % values],
        cwd=ROOT,
        env=environment(database_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert arrived.wait(TIMEOUT), "the second batch request never arrived"
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait(TIMEOUT)
    finally:
        if sender.poll() is None:
            sender.kill()
    assert sender.returncode == -signal.SIGKILL
    deadline = time.monotonic() + TIMEOUT
    while len(batch_posts(sandbox)) < 2:  # the request in flight, accepted after the kill
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sandbox.faults.latency = 0.0
    before = json.loads(child(database_url, ROWS))
    assert len(before) == MESSAGES
    assert {status for _, status, _ in before} <= {"queued", "sent"}
    assert sum(status == "sent" for _, status, _ in before) <= 1000
    assert len(sandbox.messages) == 2000  # the batch in flight was accepted all the same

    child(database_url, RECOVER % values)

    sandbox.wait_idle(TIMEOUT)
    rows = {pk: (status, mid) for pk, status, mid in json.loads(child(database_url, ROWS))}
    accepted = {
        message.payload["custom_args"]["cloudmails_delivery_id"]: message.message_id
        for message in sandbox.messages
    }
    assert len(sandbox.messages) == MESSAGES  # each message accepted exactly once
    assert accepted == {pk: mid for pk, (_, mid) in rows.items()}
    assert {status for status, _ in rows.values()} == {"sent"}
