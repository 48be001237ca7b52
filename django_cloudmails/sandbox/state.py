"""What the sandbox remembers: messages, requests, idempotent responses, rate buckets.

Every structure here is shared between the HTTP handler threads, the processing thread
and the webhook thread, so each one guards itself with a lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` and microseconds, as the wire format wants."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class SandboxMessage:
    """One accepted message and everything that happened to it since."""

    message_id: str
    payload: dict[str, Any]
    to: str
    recipient: str
    status: str
    batch_id: str | None = None
    idempotency_key: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    delivered_at: datetime | None = None
    bounce_reason: str | None = None
    opens: int = 0
    clicks: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def status_body(self) -> dict[str, Any]:
        """The ``GET /emails/{id}`` response body."""
        return {
            "message_id": self.message_id,
            "status": self.status,
            "created_at": isoformat(self.created_at),
            "delivered_at": isoformat(self.delivered_at),
            "bounce_reason": self.bounce_reason,
            "opens": self.opens,
            "clicks": self.clicks,
            "to": self.to,
        }

    def inspect(self) -> dict[str, Any]:
        """Everything, for the ``/_sandbox/`` inspection API."""
        body = self.status_body()
        body.update(
            batch_id=self.batch_id,
            idempotency_key=self.idempotency_key,
            payload=self.payload,
            events=list(self.events),
        )
        return body


@dataclass
class RequestRecord:
    """One request the sandbox received, and how it answered (None: no answer)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int | None = None
    outcome: str = "answered"
    peer: tuple[str, int] | None = None
    #: ``time.time()`` when the request was read, before any answer.
    received_at: float = field(default_factory=time.time)


class MessageStore:
    """Accepted messages in arrival order, with lookup by id."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.messages: list[SandboxMessage] = []
        self._by_id: dict[str, SandboxMessage] = {}

    def add(self, messages: list[SandboxMessage]) -> None:
        with self.lock:
            self.messages.extend(messages)
            for message in messages:
                self._by_id[message.message_id] = message

    def get(self, message_id: str) -> SandboxMessage | None:
        return self._by_id.get(message_id)

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self._by_id.clear()


@dataclass
class StoredResponse:
    """A response kept for replay under an Idempotency-Key."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class IdempotencyStore:
    """First response per (API key, Idempotency-Key); concurrent twins wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str], StoredResponse] = {}
        self._running: dict[tuple[str, str], threading.Event] = {}

    def run(
        self, key: tuple[str, str], produce: Callable[[], StoredResponse]
    ) -> tuple[StoredResponse, bool]:
        """Return ``(response, replayed)``: the stored one, or ``produce()`` stored."""
        while True:
            with self._lock:
                stored = self._done.get(key)
                if stored is not None:
                    return stored, True
                waiting = self._running.get(key)
                if waiting is None:
                    self._running[key] = threading.Event()
                    break
            waiting.wait()
        try:
            response = produce()
            with self._lock:
                self._done[key] = response
            return response, False
        finally:
            with self._lock:
                self._running.pop(key).set()

    def clear(self) -> None:
        with self._lock:
            self._done.clear()


class RateLimiter:
    """A token bucket per API key: ``rate`` requests per second, burst of ``rate``."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> int | None:
        """Take a token; return None when allowed, else the seconds to wait (>= 1)."""
        rate = self.rate
        if not rate:
            return None
        burst = max(rate, 1.0)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / rate))


class Activity:
    """Counts outstanding background work, so that ``wait_idle`` can block on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0

    def add(self, count: int = 1) -> None:
        with self._cond:
            self._pending += count

    def remove(self, count: int = 1) -> None:
        with self._cond:
            self._pending -= count
            if self._pending <= 0:
                self._pending = 0
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def clear(self) -> None:
        with self._cond:
            self._pending = 0
            self._cond.notify_all()
