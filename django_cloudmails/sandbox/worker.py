"""A daemon thread that sleeps on a condition until it has work or is told to stop."""

from __future__ import annotations

import threading


class Worker:
    """Base of the sandbox's background threads; subclasses implement :meth:`_run`,
    waiting on ``self._cond`` and returning once ``self._stopping`` is set."""

    thread_name = "cloudmails-sandbox-worker"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Wake the thread, let it finish what it is doing, and join it."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError
