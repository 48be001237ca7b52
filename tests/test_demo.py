"""The README's first command: the demo finishes by itself without a terminal, its
counts agree with its table, and with --serve it keeps the admin up for a person."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EXAMPLE_DB": str(tmp_path / "demo.sqlite3")}
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "example_project", "demo", *args],
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


def table_rows(output: str) -> list[str]:
    """The first line of each row of the table."""
    lines = output.split("\n")
    rules = [n for n, line in enumerate(lines) if set(line) == {"-"}]
    return [lines[n + 1] for n in rules[:-1]]


def test_the_demo_finishes_without_a_terminal_and_asks_nothing(output: str) -> None:
    assert "Keep running" not in output
    assert "demo --serve" in output


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
    process = demo(tmp_path, "--serve")
    watchdog = threading.Timer(90, process.kill)  # a hang fails the test, never the suite
    watchdog.start()
    try:
        assert process.stdout is not None
        lines: Iterator[str] = iter(process.stdout.readline, "")
        found = {}
        for line in lines:
            if match := re.search(r"runs at (http://127\.0\.0\.1:\d+/admin/)", line):
                found["base"] = match.group(1)
            if match := re.search(r"log in as demo, password (\S+)", line):
                found["password"] = match.group(1)
                break
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
