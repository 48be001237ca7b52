"""The README's first command: the demo finishes by itself without a terminal, sends
through a Celery worker it starts (and stops however it ends), its counts agree with its
table, and with --serve it keeps the admin up for a person."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


#: Starts the command after it with SIGINT ignored, as a shell starts a background job.
SIGINT_IGNORED = ["sh", "-c", 'trap "" INT; exec "$0" "$@"']


def demo(
    tmp_path: Path, *args: str, launcher: tuple[str, ...] = (), **environ: str
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "EXAMPLE_DB": str(tmp_path / "demo.sqlite3"),
        "EXAMPLE_BROKER_DIR": str(tmp_path / "broker"),
    }
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "EMAIL_BACKEND"):
        env.pop(name, None)
    env.update(environ)
    return subprocess.Popen(
        [*launcher, sys.executable, "-m", "example_project", "demo", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    process = demo(tmp_path_factory.mktemp("demo"))
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    return out


def worker_pid(output: str) -> int:
    match = re.search(r"Celery worker started \(pid (\d+)\)", output)
    assert match, output
    return int(match.group(1))


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie no parent reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_until(process: subprocess.Popen[str], pattern: str) -> tuple[re.Match[str], str]:
    """Read the demo's output up to the first line matching ``pattern``."""
    assert process.stdout is not None
    seen = []
    for line in iter(process.stdout.readline, ""):
        seen.append(line)
        if match := re.search(pattern, line):
            return match, "".join(seen)
    raise AssertionError(f"{pattern!r} never came:\n{''.join(seen)}")


def table_rows(output: str) -> list[str]:
    """The first line of each row of the table."""
    lines = output.split("\n")
    rules = [n for n, line in enumerate(lines) if set(line) == {"-"}]
    return [lines[n + 1] for n in rules[:-1]]


def test_the_demo_finishes_without_a_terminal_and_asks_nothing(output: str) -> None:
    assert "Keep running" not in output
    assert "demo --serve" in output


def test_a_celery_worker_it_started_sent_every_row(output: str) -> None:
    assert "CeleryEmailBackend wrote their rows 'queued'" in output
    tasks = re.findall(
        r"^  cloudmails: sent (\d+), failed 0, unknown 0 of (\d+) rows", output, re.M
    )
    assert len(tasks) == 4  # one per send_messages call
    assert sum(int(sent) for sent, _ in tasks) == sum(int(rows) for _, rows in tasks) == 8


def test_it_leaves_no_worker_behind(output: str) -> None:
    pid = worker_pid(output)

    assert f"The worker (pid {pid}) is stopped." in output
    assert not running(pid)


@pytest.mark.parametrize(
    ("stop", "launcher"),
    [(signal.SIGINT, ()), (signal.SIGINT, SIGINT_IGNORED), (signal.SIGTERM, ())],
    ids=["ctrl-c", "ctrl-c-started-as-a-background-job", "sigterm"],
)
def test_interrupted_while_sending_it_stops_its_worker(
    tmp_path: Path, stop: int, launcher: list[str]
) -> None:
    process = demo(tmp_path, launcher=tuple(launcher))
    watchdog = threading.Timer(90, process.kill)
    watchdog.start()
    try:
        started, _ = read_until(process, r"Celery worker started \(pid (\d+)\)")
        pid = int(started.group(1))
        assert running(pid)
        process.send_signal(stop)
        out, _ = process.communicate(timeout=60)
    finally:
        watchdog.cancel()

    assert process.returncode == 130, out
    assert f"The worker (pid {pid}) is stopped." in out
    assert "Interrupted." in out
    assert not running(pid)


def test_with_the_in_process_backend_it_sends_without_a_worker(tmp_path: Path) -> None:
    process = demo(tmp_path, EMAIL_BACKEND="django_cloudmails.backends.EmailBackend")

    out, _ = process.communicate(timeout=120)

    assert process.returncode == 0, out
    assert "EMAIL_BACKEND is django_cloudmails.backends.EmailBackend: this process sends" in out
    assert "Celery worker" not in out
    assert "8 API messages: bounced 1, delivered 6, sent 1." in out


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What the demo gives its worker, for a worker started by a test."""
    return {
        "EXAMPLE_DB": str(tmp_path / "demo.sqlite3"),
        "EXAMPLE_BROKER_DIR": str(tmp_path / "broker"),
        "CELERY_BROKER_URL": "filesystem://",
        **extra,
    }


def test_an_error_while_the_worker_runs_stops_it(tmp_path: Path) -> None:
    from example_project.demo.worker import Worker

    pids = []

    def fail_with_a_worker() -> None:
        with Worker.running(worker_env(tmp_path)) as worker:
            pids.append(worker.pid)
            assert running(worker.pid)
            raise RuntimeError("the demo failed")

    with pytest.raises(RuntimeError, match="the demo failed"):
        fail_with_a_worker()

    assert not running(pids[0])


def test_a_worker_that_cannot_start_is_an_error_showing_its_log(tmp_path: Path) -> None:
    from django.core.management.base import CommandError

    from example_project.demo.worker import Worker

    env = worker_env(tmp_path, DJANGO_SETTINGS_MODULE="example_project.no_such_settings")
    with Worker.running(env) as worker:
        with pytest.raises(CommandError) as error:
            worker.wait_for_rows(1)

    message = str(error.value)
    assert f"The Celery worker (pid {worker.pid}) exited (1)" in message
    assert "No module named 'example_project.no_such_settings'" in message


def test_its_counts_agree_with_its_table(output: str) -> None:
    rows = table_rows(output)
    stated = re.search(r"(\d+) API messages \(one per 'to' address", output)
    assert stated
    assert int(stated.group(1)) == len(rows) == 8
    statuses = Counter(row.split()[-3] for row in rows)
    summary = re.search(r"8 API messages: (.*)\. \(", output)
    assert summary
    assert summary.group(1) == ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))


def test_the_table_shows_subject_recipients_cc_and_message_ids(output: str) -> None:
    assert "Invoice for March       Reader <open@simulator.cloudmails.test>" in output
    assert "cc delivered+accounts@simulator.cloudmails.test" in output
    assert len(re.findall(r"^  msg_[0-9a-f]{24} ", output, flags=re.MULTILINE)) == 8


def test_it_prints_the_credentials_it_set(output: str) -> None:
    assert "with credentials demo:demo-secret" in output
    assert "USER:PASSWORD" not in output


def test_with_serve_it_keeps_the_admin_up_with_a_password(tmp_path: Path) -> None:
    process = demo(tmp_path, "--serve", launcher=tuple(SIGINT_IGNORED))
    watchdog = threading.Timer(90, process.kill)  # a hang fails the test, never the suite
    watchdog.start()
    try:
        _, before = read_until(process, r"log in as demo, password")
        found = {
            "base": re.findall(r"runs at (http://127\.0\.0\.1:\d+/admin/)", before)[0],
            "password": re.findall(r"log in as demo, password (\S+)", before)[0],
        }
        pid = worker_pid(before)
        assert running(pid)
        with requests.Session() as http:
            login = f"{found['base']}login/"
            http.get(login)
            http.post(
                login,
                data={
                    "username": "demo",
                    "password": found["password"],
                    "csrfmiddlewaretoken": http.cookies["csrftoken"],
                    "next": "/admin/",
                },
                headers={"Referer": login},
            )
            page = http.get(f"{found['base']}cloudmails/delivery/dashboard/")
        assert page.status_code == 200
        assert "Delivery dashboard" in page.text
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        watchdog.cancel()
    assert "Stopped." in out
    assert f"The worker (pid {pid}) is stopped." in out
    assert process.returncode == 0
    assert not running(pid)
