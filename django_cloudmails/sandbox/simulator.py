"""The :class:`Sandbox`: a local CloudMails API in a thread, for tests and development.

It owns the state, the HTTP server, the processing thread and the webhook thread, and is
what users' own test suites start (``with Sandbox() as sb: ...``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from .api import SandboxAPI
from .faults import Faults
from .notifier import WebhookSender, make_target
from .processing import Processor
from .server import SandboxHTTPServer
from .signer import new_secret
from .state import (
    Activity,
    IdempotencyStore,
    MessageStore,
    RateLimiter,
    RequestRecord,
    SandboxMessage,
)
from .validation import SenderPolicy

DEFAULT_RETRY_DELAYS = (1, 5, 30, 120)


class Sandbox:
    """A faithful local CloudMails API; see the package docstring for the knobs."""

    def __init__(
        self,
        api_key: str | Iterable[str] = "sandbox-key",
        verified_senders: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        webhook_signing_secret: str | None = None,
        webhook_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        event_delay: float = 0.0,
        rich_events: bool = False,
        rate_limit: float | None = None,
        seed: int | None = None,
        keep_requests: int | None = None,
        verbose: bool = False,
    ) -> None:
        keys = [api_key] if isinstance(api_key, str) else list(api_key)
        if not keys:
            raise ValueError("The sandbox needs at least one API key.")
        self.api_keys: list[str] = keys
        self.host = host
        self.port = port
        self.verbose = verbose
        self.keep_requests = keep_requests
        # Validated here, before start() binds a port or starts a thread.
        self._initial_webhook = make_target(webhook_url)
        self.webhook_signing_secret = webhook_signing_secret or new_secret()
        self._rng = random.Random(seed)
        self.faults = Faults(seed)
        self.requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self._senders = SenderPolicy(verified_senders)
        self._store = MessageStore()
        self._idempotency = IdempotencyStore()
        self._limiter = RateLimiter(rate_limit)
        self._activity = Activity()
        self._sender = WebhookSender(
            secret=self.webhook_signing_secret,
            retry_delays=webhook_retry_delays,
            faults=self.faults,
            activity=self._activity,
            rng=self._rng,
        )
        self._processor = Processor(
            store=self._store,
            sender=self._sender,
            activity=self._activity,
            event_delay=event_delay,
            rich_events=rich_events,
        )
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle.

    def start(self) -> Sandbox:
        """Bind, then serve from a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("The sandbox is already running.")
        self._server = SandboxHTTPServer(
            (self.host, self.port), SandboxAPI(self), verbose=self.verbose
        )
        try:
            self.port = self._server.server_address[1]
            self._processor.start()
            self._sender.start()
            thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="cloudmails-sandbox-server",
                daemon=True,
            )
            thread.start()
            self._thread = thread  # set only once started: stop() waits for it
            if self._initial_webhook is not None:
                self._sender.configure(self._initial_webhook)
        except BaseException:
            self.stop()  # leave no thread running and no port bound
            raise
        return self

    def stop(self) -> None:
        """Stop serving, end open connections and join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        thread, self._thread = self._thread, None
        if thread is not None:  # shutdown() would wait forever for a loop never started
            server.shutdown()
        server.close_all()
        server.server_close()
        if thread is not None:
            thread.join()
        self._processor.stop()
        self._sender.stop()
        self._activity.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # What tests look at.

    @property
    def url(self) -> str:
        """The base URL of the API, ending in ``/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def messages(self) -> list[SandboxMessage]:
        """Accepted messages in arrival order (the live list)."""
        return self._store.messages

    def message(self, message_id: str) -> SandboxMessage:
        """The message with ``message_id``; KeyError when there is none."""
        message = self._store.get(message_id)
        if message is None:
            raise KeyError(message_id)
        return message

    @property
    def webhook_url(self) -> str | None:
        return self._sender.url

    @property
    def rich_events(self) -> bool:
        """Whether events carry ``bounce_type``, ``bounce_reason`` and ``url`` besides the
        API reference's fields (settable at any time; events already queued keep theirs)."""
        return self._processor.rich_events

    @rich_events.setter
    def rich_events(self, value: bool) -> None:
        self._processor.rich_events = bool(value)

    @property
    def webhook_attempts(self) -> list[tuple[str, int | str, bytes]]:
        """``(webhook_id, status code or error text, body)`` per delivery attempt."""
        return self._sender.attempts

    @property
    def webhook_failures(self) -> list[tuple[str, bytes]]:
        """``(webhook_id, body)`` of deliveries given up after the last retry."""
        return self._sender.given_up

    @property
    def webhook_dropped(self) -> list[dict[str, Any]]:
        """Events the ``webhook_drop_rate`` fault never sent (still in ``message.events``
        and reflected by ``GET /emails/{id}``)."""
        return self._sender.dropped

    @property
    def processing_errors(self) -> list[BaseException]:
        """Exceptions in background processing (a sandbox bug if not empty)."""
        return self._processor.errors

    def wait_idle(self, timeout: float = 10) -> None:
        """Block until batches, fates and webhooks are all done (or given up)."""
        if not self._activity.wait_idle(timeout):
            raise TimeoutError(
                f"The sandbox still had {self._activity.pending} pending tasks after {timeout} s."
            )

    # What tests change.

    def reset(self) -> None:
        """Forget messages, requests, idempotent responses and webhook attempts."""
        self._store.clear()
        with self._requests_lock:
            self.requests.clear()
        self._idempotency.clear()
        self._sender.clear()

    def configure_webhook(self, url: str | None) -> None:
        """Point webhooks at ``url`` (None: stop sending); a URL gets the test ping.

        A bad URL raises ValueError (without quoting the URL) and changes nothing.
        """
        target = make_target(url)
        self._sender.configure(target)

    def emit(self, message_id: str, event: str, **extra: Any) -> dict[str, Any]:
        """Queue a webhook ``event`` for a message by hand; its status stays as is."""
        return self._processor.emit(self.message(message_id), event, extra)

    def pause_processing(self) -> None:
        """Hold batches (they stay ``queued``) and fates until :meth:`resume_processing`."""
        self._processor.pause()

    def resume_processing(self) -> None:
        self._processor.resume()

    # Used by the API.

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self._rng.getrandbits(96):024x}"

    def _record(self, record: RequestRecord) -> None:
        limit = self.keep_requests
        if limit == 0:
            return
        with self._requests_lock:
            self.requests.append(record)
            if limit is not None and len(self.requests) > 2 * limit:
                del self.requests[: len(self.requests) - limit]
