"""The webhook sender: one thread POSTing signed events to the configured URL.

At-least-once with a retry schedule, as real ESPs deliver: a non-2xx answer or a
connection error is retried after each delay of ``retry_delays`` with the same
``webhook-id`` (re-signed with a fresh timestamp), then given up. Fault switches make
it lose events outright (``webhook_drop_rate``), send duplicates, deliver out of order,
or put several events in one JSON list.
"""

from __future__ import annotations

import base64
import heapq
import http.client
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .faults import Faults
from .signer import secret_key, signature
from .state import Activity, isoformat, utcnow
from .worker import Worker

USER_AGENT = "cloudmails-sandbox"
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass
class Delivery:
    """One webhook request body and its attempts so far."""

    webhook_id: str
    body: bytes
    attempts: int = 0


def encode(payload: Any) -> bytes:
    """Compact JSON bytes, the body that gets signed."""
    return json.dumps(payload, separators=(",", ":")).encode()


URL_SHAPE = "webhook URL must be http(s)://host[:port]/path"


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced by ``***`` (the rest intact)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    username = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{username}:***@{hostport}"))


class _Target:
    """Where webhooks go: connection details and Basic auth parsed from the URL.

    Error messages never quote the URL: its userinfo is the receiver's password.
    """

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            # urlsplit's own messages can quote the netloc, password included.
            raise ValueError(f"{URL_SHAPE} (it could not be parsed)") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{URL_SHAPE} (the scheme is not http or https)")
        if not parts.hostname:
            raise ValueError(f"{URL_SHAPE} (it has no host)")
        self.url = url
        self.redacted = redact_url(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.authorization: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.authorization = "Basic " + base64.b64encode(pair.encode()).decode()

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def make_target(url: str | _Target | None) -> _Target | None:
    """Validate ``url`` into a target (None and "" mean no webhooks); ValueError if bad."""
    if isinstance(url, _Target):
        return url
    return _Target(url) if url else None


class WebhookSender(Worker):
    """Queues events and delivers them from a daemon thread."""

    thread_name = "cloudmails-sandbox-webhooks"

    def __init__(
        self,
        *,
        secret: str,
        retry_delays: Sequence[float],
        faults: Faults,
        activity: Activity,
        rng: random.Random,
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.key = secret_key(secret)
        self.retry_delays = tuple(retry_delays)
        self.faults = faults
        self.activity = activity
        self.rng = rng
        self.timeout = timeout
        self.attempts: list[tuple[str, int | str, bytes]] = []
        self.given_up: list[tuple[str, bytes]] = []
        #: Events the ``webhook_drop_rate`` fault kept from ever being sent.
        self.dropped: list[dict[str, Any]] = []
        self._target: _Target | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._conn_target: _Target | None = None
        self._fresh: list[tuple[str, dict[str, Any]]] = []
        self._ready: deque[Delivery] = deque()
        self._retries: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()

    @property
    def url(self) -> str | None:
        return self._target.url if self._target else None

    def new_id(self) -> str:
        return f"evt_{self.rng.getrandbits(96):024x}"

    def stop(self) -> None:
        super().stop()
        self._close()

    @property
    def redacted_url(self) -> str | None:
        """The URL with its password replaced by ``***``, safe to show."""
        return self._target.redacted if self._target else None

    def configure(self, url: str | _Target | None) -> None:
        """Set (or with None, unset) the URL; a new URL gets the test ping first.

        A bad URL raises ValueError before anything changes.
        """
        target = make_target(url)
        with self._cond:
            self._target = target
            if target is not None:
                ping = {"event": "ping", "timestamp": isoformat(utcnow())}
                self.activity.add()
                self._ready.appendleft(Delivery(self.new_id(), encode(ping)))
                self._cond.notify_all()

    def enqueue(self, events: Sequence[dict[str, Any]]) -> None:
        """Queue events for delivery (nothing happens without a URL); the drop fault
        decides, event by event, which never go out."""
        if self._target is None or not events:
            return
        copies = 2 if self.faults.duplicate_webhooks else 1
        with self._cond:
            queued = 0
            for event in events:
                if self.faults.drop_webhook():
                    self.dropped.append(event)
                    continue
                webhook_id = self.new_id()
                self._fresh.extend([(webhook_id, event)] * copies)
                queued += copies
            self.activity.add(queued)
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget the attempt log (pending deliveries still go out)."""
        with self._cond:
            self.attempts.clear()
            self.given_up.clear()
            self.dropped.clear()

    # The sender thread.

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
                while not batch and not self._stopping:
                    wait = self._retries[0][0] - time.monotonic() if self._retries else None
                    self._cond.wait(wait)
                    batch = self._take()
                if self._stopping:
                    return
            for delivery in batch:
                if self._stopping:
                    return
                self._attempt(delivery)

    def _take(self) -> list[Delivery]:
        """Everything due now, fresh events shuffled and grouped as the switches say."""
        ready = list(self._ready)
        self._ready.clear()
        now = time.monotonic()
        while self._retries and self._retries[0][0] <= now:
            ready.append(heapq.heappop(self._retries)[2])
        fresh, self._fresh = self._fresh, []
        if len(fresh) > 1 and self.faults.shuffle_webhooks:
            original = list(fresh)
            self.rng.shuffle(fresh)
            if fresh == original:
                fresh.append(fresh.pop(0))
        size = max(1, int(self.faults.webhook_batch))
        if size == 1:
            ready.extend(Delivery(wid, encode(event)) for wid, event in fresh)
        else:
            for start in range(0, len(fresh), size):
                group = [event for _, event in fresh[start : start + size]]
                self.activity.add()
                self.activity.remove(len(group))
                ready.append(Delivery(self.new_id(), encode(group)))
        return ready

    def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        result = self._post(delivery)
        self.attempts.append((delivery.webhook_id, result, delivery.body))
        if isinstance(result, int) and 200 <= result < 300:
            self.activity.remove()
            return
        if delivery.attempts > len(self.retry_delays):
            self.given_up.append((delivery.webhook_id, delivery.body))
            self.activity.remove()
            return
        due = time.monotonic() + self.retry_delays[delivery.attempts - 1]
        with self._cond:
            heapq.heappush(self._retries, (due, next(self._seq), delivery))

    def _post(self, delivery: Delivery) -> int | str:
        target = self._target
        if target is None:
            return "no webhook URL configured"
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self.key, delivery.webhook_id, timestamp, delivery.body),
        }
        if target.authorization:
            headers["Authorization"] = target.authorization
        if self._conn_target is not target:
            self._close()
        for retry in (True, False):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = target.connect(self.timeout)
                self._conn_target = target
            try:
                self._conn.request("POST", target.path, delivery.body, headers)
                response = self._conn.getresponse()
                response.read()
                if response.will_close:
                    self._close()
                return response.status
            except _STALE as err:
                self._close()
                if not (retry and reused):
                    return f"{type(err).__name__}: {err}"
            except (OSError, http.client.HTTPException) as err:
                self._close()
                return f"{type(err).__name__}: {err}"
        return "unreachable"  # pragma: no cover

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._conn_target = None
