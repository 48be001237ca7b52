"""Fault injection: the ways a real API misbehaves, as switches tests can flip.

Rates are random (seeded by the sandbox's ``seed``): each is the share of API requests
that meet its fault, decided by one draw per request (``drop_rate``, ``error_rate``,
``throttle_rate``, ``lose_response_rate``, in that order, share the unit interval; where
they add up to more than 1, the later ones get what is left). The ``*_next`` switches are
deterministic one-shots, which is what most tests want, and :meth:`Faults.script` a
deterministic sequence consumed one step per API request, before any other switch.
``ignore_idempotency`` makes the sandbox act like an API without ``Idempotency-Key``
support (every request is processed anew), to show what duplicates then.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

#: Fault fields settable by name (the CLI and ``POST /_sandbox/faults``).
SETTABLE = (
    "error_rate",
    "error_status",
    "throttle_rate",
    "retry_after",
    "latency",
    "drop_rate",
    "lose_response_rate",
    "duplicate_webhooks",
    "shuffle_webhooks",
    "webhook_batch",
    "webhook_drop_rate",
    "ignore_idempotency",
)
#: Steps of a script besides HTTP statuses.
SCRIPT_STEPS = ("ok", "lose", "drop")


@dataclass
class Injection:
    """What to do with one API request before (or instead of) answering it."""

    latency: float = 0.0
    #: "fail", "throttle", "drop", "lose", "ok" (a script's step: answer normally, no
    #: random fault either) or None.
    action: str | None = None
    status: int = 500
    retry_after: int = 1


class Faults:
    """Mutable at runtime; every field is read per request."""

    def __init__(self, seed: int | None = None) -> None:
        self.error_rate = 0.0
        self.error_status = 500
        #: Share of requests answered 429 with ``Retry-After: retry_after`` (seconds).
        self.throttle_rate = 0.0
        self.retry_after = 1
        self.latency = 0.0
        self.drop_rate = 0.0
        self.lose_response_rate = 0.0
        self.duplicate_webhooks = False
        self.shuffle_webhooks = False
        self.webhook_batch = 1
        #: Share of webhook events never delivered at all, decided per event.
        self.webhook_drop_rate = 0.0
        self.ignore_idempotency = False
        self.random = random.Random(seed)
        # Its own stream, so that webhook drops repeat for a seed whatever the API does.
        self._webhook_random = random.Random(None if seed is None else f"webhooks-{seed}")
        self._lock = threading.Lock()
        self._fail: list[int] = []
        self._throttle: list[int] = []
        self._drop = 0
        self._lose = 0
        self._script: deque[str | int] = deque()

    def script(self, *steps: str | int) -> None:
        """Answer the next API requests by ``steps``, one per request, in order, before
        any other switch: ``"ok"`` (answer normally), ``"lose"`` (process, then close
        without answering), ``"drop"`` (close before processing) or an HTTP status (429
        with ``Retry-After: 1``). ``script("lose", 500, 500)``."""
        for step in steps:
            if not (step in SCRIPT_STEPS or (isinstance(step, int) and 400 <= step <= 599)):
                raise ValueError(f"A script step is one of {SCRIPT_STEPS} or a 4xx/5xx status.")
        with self._lock:
            self._script.extend(steps)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` API requests with ``status`` without processing them."""
        with self._lock:
            self._fail.extend([status] * n)

    def throttle_next(self, n: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``n`` API requests with 429 and ``Retry-After``."""
        with self._lock:
            self._throttle.extend([retry_after] * n)

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` API requests before processing."""
        with self._lock:
            self._drop += n

    def lose_next(self, n: int = 1) -> None:
        """Process the next ``n`` API requests, then close without answering."""
        with self._lock:
            self._lose += n

    def clear(self) -> None:
        """Turn every fault off."""
        with self._lock:
            self._fail.clear()
            self._throttle.clear()
            self._drop = self._lose = 0
            self._script.clear()
        self.error_rate = self.drop_rate = self.lose_response_rate = 0.0
        self.throttle_rate = 0.0
        self.retry_after = 1
        self.latency = 0.0
        self.error_status = 500
        self.duplicate_webhooks = self.shuffle_webhooks = False
        self.webhook_batch = 1
        self.webhook_drop_rate = 0.0
        self.ignore_idempotency = False

    def drop_webhook(self) -> bool:
        """Whether the next webhook event is lost for good (``webhook_drop_rate``)."""
        rate = self.webhook_drop_rate
        if not rate:
            return False
        with self._lock:
            return self._webhook_random.random() < rate

    def update(self, values: dict[str, Any]) -> None:
        """Apply a JSON object of fault fields (and ``*_next`` counts)."""
        for key, value in values.items():
            if key in SETTABLE:
                current = getattr(self, key)
                setattr(self, key, type(current)(value))
            elif key == "fail_next":
                self.fail_next(int(value), int(values.get("fail_status", 500)))
            elif key == "throttle_next":
                self.throttle_next(int(value), int(values.get("retry_after", 1)))
            elif key == "drop_next":
                self.drop_next(int(value))
            elif key == "lose_next":
                self.lose_next(int(value))
            elif key == "script":
                if not isinstance(value, list):
                    raise TypeError("'script' takes a list of steps.")
                self.script(*value)
            elif key == "clear" and value:
                self.clear()
            elif key not in ("fail_status", "retry_after"):
                raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        """The current switches, for ``GET /_sandbox/faults``."""
        state: dict[str, Any] = {name: getattr(self, name) for name in SETTABLE}
        with self._lock:
            state.update(
                fail_next=len(self._fail),
                throttle_next=len(self._throttle),
                drop_next=self._drop,
                lose_next=self._lose,
                script=list(self._script),
            )
        return state

    def draw(self) -> Injection:
        """Decide the fate of one API request (consumes one-shot switches)."""
        injection = Injection(latency=self.latency)
        with self._lock:
            step = self._script.popleft() if self._script else None
            if step is not None:
                _scripted(injection, step)
            elif self._drop:
                self._drop -= 1
                injection.action = "drop"
            elif self._fail:
                injection.action, injection.status = "fail", self._fail.pop(0)
            elif self._throttle:
                injection.action = "throttle"
                injection.retry_after = self._throttle.pop(0)
            elif self._lose:
                self._lose -= 1
                injection.action = "lose"
        if injection.action is None:
            _by_rate(injection, self)
        return injection


def _by_rate(injection: Injection, faults: Faults) -> None:
    """Set ``injection`` by one draw against the rates, which share the unit interval."""
    rates = (
        (faults.drop_rate, "drop"),
        (faults.error_rate, "fail"),
        (faults.throttle_rate, "throttle"),
        (faults.lose_response_rate, "lose"),
    )
    if not any(rate for rate, _ in rates):
        return
    draw = faults.random.random()
    bound = 0.0
    for rate, action in rates:
        bound += rate
        if draw < bound:
            injection.action = action
            injection.status = faults.error_status
            injection.retry_after = faults.retry_after
            return


def _scripted(injection: Injection, step: str | int) -> None:
    """Set ``injection`` to what one script step does."""
    if step == "lose":
        injection.action = "lose"
    elif step == "drop":
        injection.action = "drop"
    elif step == 429:
        injection.action = "throttle"
    elif isinstance(step, int):
        injection.action, injection.status = "fail", step
    else:
        injection.action = "ok"
