"""The processing thread: turns queued batches into sent messages and plays fates.

A small scheduler (a heap of due tasks) so that ``event_delay`` spaces out a message's
timeline without a thread per message. With no delay, all of a batch's steps run in one
go and their events reach the webhook sender together.

Events go out in the API reference's own shape (``event``, ``message_id``,
``timestamp``, ``recipient``, ``custom_args`` and nothing else), so that every test
against the sandbox exercises what CloudMails documents; ``rich_events`` adds the
fields some ESPs send (``bounce_type``, ``bounce_reason``, ``url``). A step's status
change and its event carry the same instant, so ``GET /emails/{id}`` and the event agree.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from .fates import Step, fate_of
from .notifier import WebhookSender
from .state import Activity, MessageStore, SandboxMessage, isoformat, utcnow
from .worker import Worker

Task = Callable[[], None]


def build_event(
    message: SandboxMessage,
    event: str,
    at: datetime,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A webhook event for ``message`` that happened ``at``, in the reference's shape;
    ``extra`` adds fields."""
    body: dict[str, Any] = {
        "event": event,
        "message_id": message.message_id,
        "timestamp": isoformat(at),
        "recipient": message.recipient,
        "custom_args": message.payload.get("custom_args") or {},
    }
    if extra:
        body.update(extra)
    return body


class Processor(Worker):
    """Runs scheduled tasks on one daemon thread, counted in ``activity``."""

    thread_name = "cloudmails-sandbox-processing"

    def __init__(
        self,
        *,
        store: MessageStore,
        sender: WebhookSender,
        activity: Activity,
        event_delay: float = 0.0,
        rich_events: bool = False,
    ) -> None:
        self.store = store
        self.sender = sender
        self.activity = activity
        self.event_delay = event_delay
        self.rich_events = rich_events
        super().__init__()
        self.errors: list[BaseException] = []
        self._heap: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        self._paused = False

    def pause(self) -> None:
        """Hold every task (batches stay ``queued``) until :meth:`resume`."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def submit(self, task: Task, delay: float = 0.0) -> None:
        self.activity.add()
        with self._cond:
            due = time.monotonic() + delay
            heapq.heappush(self._heap, (due, next(self._seq), task))
            self._cond.notify_all()

    def sent(self, message: SandboxMessage) -> None:
        """A single ``/send`` message: already ``sent``, its fate follows."""
        self.submit(lambda: self._start_fates([message]))

    def batch(self, messages: Sequence[SandboxMessage]) -> None:
        """Accepted batch messages: ``queued`` until the worker sends them."""
        self.submit(lambda: self._process_batch(messages))

    def emit(self, message: SandboxMessage, event: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Record a hand-made event on ``message`` and queue its webhook."""
        body = build_event(message, event, utcnow(), extra)
        with self.store.lock:
            message.events.append(body)
        self.sender.enqueue([body])
        return body

    # Tasks.

    def _process_batch(self, messages: Sequence[SandboxMessage]) -> None:
        with self.store.lock:
            for message in messages:
                message.status = "sent"
        self._start_fates(messages)

    def _start_fates(self, messages: Sequence[SandboxMessage]) -> None:
        plans = [(message, fate_of(message.recipient)) for message in messages]
        longest = max((len(steps) for _, steps in plans), default=0)
        events: list[dict[str, Any]] = []
        for index in range(longest):
            items = [(m, steps[index]) for m, steps in plans if len(steps) > index]
            if self.event_delay <= 0:
                events.extend(self._apply(items))
            else:
                self.submit(partial(self._play, items), self.event_delay * (index + 1))
        self.sender.enqueue(events)

    def _play(self, items: Sequence[tuple[SandboxMessage, Step]]) -> None:
        self.sender.enqueue(self._apply(items))

    def _apply(self, items: Sequence[tuple[SandboxMessage, Step]]) -> list[dict[str, Any]]:
        events = []
        now = utcnow()
        with self.store.lock:
            for message, step in items:
                if step.status is not None:
                    message.status = step.status
                    if step.status == "delivered":
                        message.delivered_at = now
                    elif step.status == "bounced":
                        message.bounce_reason = step.extra.get("bounce_reason")
                if step.event is None:
                    continue
                if step.event == "opened":
                    message.opens += 1
                elif step.event == "clicked":
                    message.clicks += 1
                extra = step.extra if self.rich_events else None
                event = build_event(message, step.event, now, extra)
                message.events.append(event)
                events.append(event)
        return events

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._heap and not self._paused:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                    else:
                        wait = None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for task in due:
                try:
                    task()
                except Exception as err:
                    self.errors.append(err)
                finally:
                    self.activity.remove()
