"""Real Celery worker processes for the tests, and the events they report.

Each worker is ``celery -A tests.celery_app worker --pool=threads --concurrency=1`` in a
subprocess, on the test run's broker and queue, sharing the test database (its name and
the test's settings go through the environment): one process, so a SIGKILL ends the task
it runs, and the task beside the consumer, as in the prefork pool users run (the solo
pool runs it inside the consumer's callback, where on RabbitMQ a message that arrives
meanwhile waits some ten seconds to be read, a Celery retry among them). Workers report
``ready``, ``started`` and ``finished`` events over a loopback socket (see
``tests/celery_app.py``), which the tests wait for.

What the tests wait for is counted per task chain (a task id: a Celery retry keeps it):
every message published during the test, by the test process or by a worker, ends in one
``finished`` event, unless the worker holding it was killed. Events of messages published
before the test (left by an earlier test) are ignored.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Event = dict[str, Any]


def worker_command(app: str, name: str, *, pool: str = "solo") -> list[str]:
    """``celery -A app worker`` as the tests and benchmarks run it: one process (the solo
    pool runs a task in the consumer's thread; the threads pool, one thread, beside the
    consumer, which may meanwhile prefetch further tasks: either way a SIGKILL ends the
    task it runs), no gossip, mingle or heartbeat traffic."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        f"--pool={pool}",
        *([] if pool == "solo" else ["--concurrency=1"]),
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname={name}-{os.getpid()}@%h",
    ]


class Events:
    """Events from every worker, in arrival order; waiting consumes them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[Event] = []
        self.history: list[Event] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._readers: list[socket.socket] = []
        threading.Thread(target=self._accept, name="worker-events", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self._readers.append(connection)
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        pid = None
        with connection, connection.makefile("r", encoding="utf-8") as lines:
            for line in lines:
                event = json.loads(line)
                pid = event["pid"]
                self.record(event)
        # Every event the process sent is in: it exited (or closed its channel).
        self.record({"event": "disconnected", "pid": pid})

    def record(self, event: Event) -> None:
        """Add an event (a worker's, or one of the test process's own)."""
        with self._cond:
            self._pending.append(event)
            self.history.append(event)
            self._cond.notify_all()

    def until(
        self,
        condition: Callable[[list[Event]], bool],
        *,
        timeout: float = 60,
        alive: Callable[[], None] | None = None,
        what: str = "a condition on the worker events",
    ) -> None:
        """Wait until ``condition(history)`` holds (checked at each new event)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self.history):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what}: not after {timeout} s")
                self._cond.wait(min(left, 0.5))
                if alive is not None:
                    alive()

    def wait(
        self,
        match: Callable[[Event], bool],
        count: int = 1,
        *,
        timeout: float = 60,
        alive: Callable[[], None] | None = None,
    ) -> list[Event]:
        """Wait for ``count`` events for which ``match`` is true; consume and return them.

        ``alive`` is called while waiting and may raise (a worker that died).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [event for event in self._pending if match(event)]
                if len(found) >= count:
                    taken = found[:count]
                    self._pending = [e for e in self._pending if not any(e is t for t in taken)]
                    return taken
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(found)} of {count} awaited worker events after {timeout} s; "
                        f"pending: {self._pending}"
                    )
                self._cond.wait(min(left, 0.5))
                if alive is not None:
                    alive()

    def close(self) -> None:
        self._server.close()
        for connection in self._readers:
            connection.close()


class Worker:
    """One worker process; its output goes to ``log``."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would: no cleanup at all."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """A warm shutdown (the running task finishes); SIGKILL after ``timeout``."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerPool:
    """Starts workers for one test and stops them all at its end."""

    def __init__(self, folder: Path, database: str, settings: Callable[[], dict[str, Any]]):
        self.folder = folder
        self.database = database
        self.settings = settings
        self.events = Events()
        self.workers: list[Worker] = []
        from celery.signals import after_task_publish

        after_task_publish.connect(self._published, weak=False)

    def _published(self, sender: str | None = None, headers: Any = None, **kwargs: Any) -> None:
        """A task this test process enqueued (workers report their own)."""
        task_id = (headers or {}).get("id")
        self.events.record(
            {"event": "published", "task": sender, "task_id": task_id, "pid": os.getpid()}
        )

    def start(self, count: int = 1, *, pool: str = "threads", timeout: float = 90) -> list[Worker]:
        """Start ``count`` workers (``pool``: see :func:`worker_command` and the module's
        docstring) with the test's current settings; return once each one consumes from
        the queue."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "CLOUDMAILS_TEST_DATABASE": self.database,
            "CLOUDMAILS_TEST_SETTINGS": json.dumps(self.settings()),
            "CLOUDMAILS_TEST_EVENTS": self.events.address,
        }
        started = []
        for _ in range(count):
            number = len(self.workers) + 1
            log = self.folder / f"worker-{number}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    worker_command("tests.celery_app", f"worker{number}", pool=pool),
                    cwd=ROOT,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            worker = Worker(process, log)
            self.workers.append(worker)
            started.append(worker)
        pids = {worker.pid for worker in started}
        self.events.wait(
            lambda event: event["event"] == "ready" and event["pid"] in pids,
            count,
            timeout=timeout,
            alive=lambda: self._check_alive(started),
        )
        return started

    def finished(self, count: int = 1, *, timeout: float = 120) -> list[Any]:
        """Wait until workers finished ``count`` more ``send_deliveries`` tasks; return
        their results (each task's SendReport as a dict)."""
        published = self.published()
        events = self.events.wait(
            lambda event: (
                event["event"] == "finished"
                and event["task"] == "cloudmails.send_deliveries"
                and event["task_id"] in published
            ),
            count,
            timeout=timeout,
            alive=lambda: self._check_alive(self.workers),
        )
        return [event["result"] for event in events]

    def published(self) -> set[str]:
        """Ids of the tasks published during this test (so far)."""
        return {e["task_id"] for e in self.events.history if e["event"] == "published"}

    def outstanding(self, lost: Collection[str] = ()) -> Counter[str]:
        """Messages published during this test and not finished yet, by task id;
        those in ``lost`` (taken by a killed worker from a broker that forgets them)
        excluded."""
        left: Counter[str] = Counter()
        for event in self.events.history:
            if event["event"] == "published":
                left[event["task_id"]] += 1
            elif event["event"] == "finished" and left[event["task_id"]] > 0:
                # (A message a broker delivered twice finishes twice.)
                left[event["task_id"]] -= 1
        return Counter({task: n for task, n in left.items() if n > 0 and task not in lost})

    def settle(self, *, lost: Collection[str] = (), timeout: float = 180) -> None:
        """Wait until every message published during this test has finished its run
        (retries included, and what workers enqueued), but those in ``lost``."""
        self.events.until(
            lambda history: not self.outstanding(lost),
            timeout=timeout,
            alive=lambda: self._check_alive(self.workers),
            what="tasks still outstanding",
        )

    def held_by(self, worker: Worker) -> set[str]:
        """Ids of tasks whose messages ``worker`` received and did not finish: what a
        SIGKILL takes with it where the broker forgets fetched messages."""
        held: Counter[str] = Counter()
        for event in self.events.history:
            if event.get("pid") != worker.pid:
                continue
            if event["event"] == "received":
                held[event["task_id"]] += 1
            elif event["event"] == "finished":
                held[event["task_id"]] -= 1
        return {task for task, n in held.items() if n > 0}

    def results(self, task: str = "cloudmails.send_deliveries") -> list[Any]:
        """What the runs of ``task`` published during this test returned, so far."""
        published = self.published()
        return [
            event["result"]
            for event in self.events.history
            if event["event"] == "finished"
            and event["task"] == task
            and event["task_id"] in published
        ]

    def output(self) -> str:
        return "\n".join(worker.output() for worker in self.workers)

    def kill_in_flight(self, worker: Worker, gate: Any, *, holding: int) -> set[str]:
        """SIGKILL ``worker`` once the request ``gate`` holds (a :class:`RequestGate`)
        is in flight and the worker holds ``holding`` tasks (the one it runs and those it
        prefetched), then let the request through, answered to no one. Returns the ids
        of the tasks it held (see :meth:`held_by`).

        ``holding`` must be all the worker may hold (its prefetch count): below it, the
        worker may fetch one more message and die before saying so, and a broker that
        forgets fetched messages loses a task no one knows of."""
        deadline = time.monotonic() + 60
        while not gate.arrived.wait(0.5):
            self._check_alive([worker])
            if time.monotonic() > deadline:
                raise TimeoutError("No request to hold arrived:\n" + worker.output()[-4000:])
        self.events.until(
            lambda history: len(self.held_by(worker)) >= holding,
            what=f"{holding} tasks held by worker {worker.pid}",
        )
        self.kill(worker)
        gate.release()
        return self.held_by(worker)

    def kill(self, worker: Worker) -> None:
        """SIGKILL ``worker`` (see :meth:`Worker.kill`); return once every event it sent
        before dying is in."""
        worker.kill()
        self.events.wait(
            lambda event: event["event"] == "disconnected" and event["pid"] == worker.pid
        )

    def stop(self) -> None:
        """End every worker. Those with no task running get SIGKILL (a warm shutdown
        of a worker on a polling transport takes seconds); others a warm shutdown."""
        busy = self.busy()
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM if worker.pid in busy else signal.SIGKILL)
        for worker in self.workers:
            worker.stop()
        self.events.close()
        from celery.signals import after_task_publish

        after_task_publish.disconnect(self._published)

    def busy(self) -> set[int]:
        """The pids of workers that started a task they have not finished."""
        running: dict[str, int] = {}
        for event in self.events.history:
            if event["event"] == "started":
                running[event["task_id"]] = event["pid"]
            elif event["event"] == "finished":
                running.pop(event["task_id"], None)
        return set(running.values())

    @staticmethod
    def _check_alive(workers: list[Worker]) -> None:
        for worker in workers:
            if worker.process.poll() is not None and worker.process.returncode != -9:
                raise RuntimeError(
                    f"Worker {worker.pid} exited ({worker.process.returncode}):\n"
                    + worker.output()[-4000:]
                )
