"""The demo's Celery worker: one process of the example project's app, started and
stopped by the demo, whose log it reads line by line.

    with Worker.running({"CLOUDMAILS_API_URL": sandbox.url}) as worker:
        ...                             # send through CeleryEmailBackend
        worker.wait_for_rows(8)         # until its log accounts for 8 rows

The worker gets a session of its own, so a Ctrl-C in the terminal reaches the demo only,
which then stops the worker in order (a warm shutdown: a task it runs finishes), as it
does on an error or a SIGTERM. Its log is read all along (a full pipe would stall it);
the lines of ``django_cloudmails.sending``, one per task, are kept to be shown.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from django.core.management.base import CommandError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
#: The sending module's line per task: "cloudmails: sent 4, failed 0, unknown 0 of 4 rows ...".
TASK_LINE = re.compile(r"^cloudmails: sent .* of (\d+) rows")
#: Lines of the log kept, to explain a worker that stopped.
TAIL = 40


def command() -> list[str]:
    """``celery -A example_project worker``: one process (the solo pool), and none of the
    broadcast traffic (gossip, mingle, heartbeats) a one-worker demo has no use for."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "example_project",
        "worker",
        "--pool=solo",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname=demo-{os.getpid()}@%h",
    ]


class Worker:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        #: The sending lines, one per task, in order.
        self.reports: list[str] = []
        #: Called with each sending line as it comes (the demo echoes them while serving).
        self.echo: Callable[[str], None] | None = None
        self._tail: deque[str] = deque(maxlen=TAIL)
        self._rows = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="demo-worker-log", daemon=True)
        self._reader.start()

    @classmethod
    @contextlib.contextmanager
    def running(cls, env: dict[str, str]) -> Iterator[Worker]:
        """A worker with ``env`` added to this process's environment; stopped on leaving,
        whatever ends the block."""
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command(),
            cwd=PROJECT_ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "example_project.settings",
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
                ),
                **env,
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        worker = cls(process)
        try:
            yield worker
        finally:
            worker.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip()
            with self._cond:
                self._tail.append(line)
                if match := TASK_LINE.match(line):
                    self.reports.append(line)
                    self._rows += int(match.group(1))
                    if self.echo is not None:
                        self.echo(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_rows(
        self, rows: int, timeout: float = 60, *, check: Callable[[], None] | None = None
    ) -> None:
        """Until the worker's lines account for ``rows`` rows; a worker that exits or
        takes longer than ``timeout`` seconds is a CommandError showing its log. ``check``
        is called while waiting and may raise (to stop waiting)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._rows < rows:
                if check is not None:
                    check()
                if self.process.poll() is not None:
                    raise CommandError(self._failure(f"exited ({self.process.returncode})"))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommandError(self._failure(f"did not send {rows} rows in {timeout} s"))
                self._cond.wait(min(left, 0.5))

    def _failure(self, what: str) -> str:
        log = "\n".join(f"  {line}" for line in self._tail)
        return f"The Celery worker (pid {self.pid}) {what}. The end of its log:\n{log}"

    def stop(self, timeout: float = 20) -> None:
        """A warm shutdown (SIGTERM: the running task finishes); SIGKILL after
        ``timeout`` seconds, or at once on a second Ctrl-C."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
