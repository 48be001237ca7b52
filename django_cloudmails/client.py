"""The CloudMails REST API over HTTP.

This module knows the wire format and nothing of Django, so it can be used on its own:

    with CloudMailsClient("key") as client:
        result = client.send({"to": ..., "from": ..., "subject": ..., "html": ...})

Responses are parsed here, into the small typed objects below, so that a change in the
API's response shape is one edit. A message may be given as a dict or, already encoded,
as :class:`RawJSON`, which goes into the request body as it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from . import __version__
from .exceptions import (
    CloudMailsBadResponse,
    CloudMailsBatchTooLarge,
    CloudMailsError,
    CloudMailsTimeout,
    CloudMailsTransportError,
    error_for_status,
)
from .limits import MAX_BATCH_MESSAGES
from .retry import RetryPolicy

DEFAULT_API_URL = "https://api.cloudmails.eu/v1"
DEFAULT_TIMEOUT = 10.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawJSON:
    """A message already encoded as JSON text, sent without encoding it again.

    For callers that encode a message anyway (to store it, say): ``json.dumps`` of a
    message costs as much as the rest of preparing it for a batch. The text is trusted:
    it must be one JSON object.
    """

    text: str

    @classmethod
    def encode(cls, message: Mapping[str, Any]) -> RawJSON:
        """``message`` encoded as the client encodes a dict."""
        return cls(_dumps(message))


#: A message to send: a dict of API fields, or the same already encoded.
Message = Mapping[str, Any] | RawJSON


@dataclass(frozen=True)
class SendResult:
    """The API accepted one message."""

    message_id: str
    status: str
    attempts: int = 1


@dataclass(frozen=True)
class ErrorDetail:
    """Why the API refused one message of a batch."""

    code: int
    message: str
    field: str | None = None


@dataclass(frozen=True)
class BatchItem:
    """The fate of one message of a batch, in request order."""

    index: int
    message_id: str | None = None
    to: str | None = None
    error: ErrorDetail | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class BatchResult:
    """The API's answer to one batch request."""

    batch_id: str
    items: list[BatchItem]
    attempts: int = 1


@dataclass(frozen=True)
class EmailStatus:
    """What ``GET /emails/{message_id}`` reports."""

    message_id: str
    status: str
    created_at: datetime | None
    delivered_at: datetime | None
    bounce_reason: str | None
    opens: int
    clicks: int
    to: str | None = None


def iter_batches(items: Sequence[T], size: int = MAX_BATCH_MESSAGES) -> Iterator[Sequence[T]]:
    """Split ``items`` into slices that one batch request can carry."""
    if not 1 <= size <= MAX_BATCH_MESSAGES:
        raise ValueError(f"Batch size must be between 1 and {MAX_BATCH_MESSAGES}.")
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CloudMailsClient:
    """A connection to the CloudMails API: one HTTP session, reused across calls."""

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        user_agent: str | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("CloudMailsClient needs an API key.")
        self._api_key = api_key
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy(attempts=1)
        self._owns_session = session is None
        self.session = session or _new_session(self.api_url)
        self._templates: dict[str, requests.PreparedRequest] = {}
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent or f"django-cloudmails/{__version__}",
        }

    def __repr__(self) -> str:
        return f"<CloudMailsClient {self.api_url}>"

    def __enter__(self) -> CloudMailsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session, if this client created it."""
        if self._owns_session:
            self.session.close()

    def send(self, payload: Message, *, idempotency_key: str | None = None) -> SendResult:
        """Send one message (``POST /send``)."""
        body = _encode(payload)
        data, attempts = self.retry.call(
            lambda: self._request("POST", "/send", body, idempotency_key)
        )
        return _parsed(
            "POST /send",
            lambda: SendResult(
                message_id=_string(data["message_id"]),
                status=str(data.get("status", "sent")),
                attempts=attempts,
            ),
            attempts,
        )

    def send_batch(
        self,
        messages: Sequence[Message],
        *,
        idempotency_key: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> BatchResult:
        """Send up to 1000 messages in one request (``POST /send/batch``).

        ``defaults`` fill fields that a message leaves out (a shared ``from``, say).
        """
        if len(messages) > MAX_BATCH_MESSAGES:
            raise CloudMailsBatchTooLarge(
                f"A batch may carry at most {MAX_BATCH_MESSAGES} messages, not "
                f"{len(messages)}; split them with iter_batches()."
            )
        envelope: dict[str, Any] = dict(defaults or {})
        envelope.pop("messages", None)
        envelope["messages"] = []
        # The envelope ends with '"messages":[]}'; the messages are spliced in as text.
        head = _dumps(envelope)[:-2]
        body = f"{head}{','.join(_encode(message) for message in messages)}]}}"
        data, attempts = self.retry.call(
            lambda: self._request("POST", "/send/batch", body, idempotency_key)
        )
        return _parsed(
            "POST /send/batch",
            lambda: BatchResult(
                batch_id=str(data.get("batch_id", "")),
                items=_batch_items(data["messages"], len(messages)),
                attempts=attempts,
            ),
            attempts,
        )

    def get_email(self, message_id: str) -> EmailStatus:
        """Fetch one message's delivery status (``GET /emails/{message_id}``)."""
        path = f"/emails/{quote(message_id, safe='')}"
        data, _ = self.retry.call(lambda: self._request("GET", path, None, None))
        return _parsed(
            f"GET /emails/{message_id}",
            lambda: EmailStatus(
                message_id=_string(data["message_id"]),
                status=str(data["status"]),
                created_at=_parse_datetime(data.get("created_at")),
                delivered_at=_parse_datetime(data.get("delivered_at")),
                bounce_reason=data.get("bounce_reason"),
                opens=int(data.get("opens") or 0),
                clicks=int(data.get("clicks") or 0),
                to=data.get("to"),
            ),
        )

    def _send(
        self, method: str, path: str, body: str | None, idempotency_key: str | None
    ) -> requests.Response:
        """Send one request; POSTs on our own session start from a prepared template.

        Preparing a request from scratch (parsing the URL, merging the session's
        settings) costs about 0.1 ms, a sixth of a loopback round trip, for the same
        result every time. A session the caller gave may carry auth, cookies or hooks of
        its own, so its requests go the ordinary way.
        """
        if self._owns_session and method == "POST":
            template = self._templates.get(path)
            if template is None:
                template = self._templates[path] = self.session.prepare_request(
                    requests.Request(method, self.api_url + path, headers=self._headers)
                )
            prepared = template.copy()
            if idempotency_key:
                prepared.headers["Idempotency-Key"] = idempotency_key
            prepared.prepare_body(body, None)
            return self.session.send(prepared, timeout=self.timeout)
        headers = self._headers
        if idempotency_key:
            headers = {**headers, "Idempotency-Key": idempotency_key}
        return self.session.request(
            method, self.api_url + path, data=body, headers=headers, timeout=self.timeout
        )

    def _request(
        self, method: str, path: str, body: str | None, idempotency_key: str | None
    ) -> dict[str, Any]:
        try:
            response = self._send(method, path, body, idempotency_key)
        except requests.Timeout as err:
            raise CloudMailsTimeout(
                f"CloudMails did not answer {method} {path} within {self.timeout}s.",
                ambiguous=not _never_sent(err),
            ) from err
        except requests.RequestException as err:
            raise CloudMailsTransportError(
                f"{method} {path} to CloudMails did not complete: {type(err).__name__}.",
                ambiguous=not _never_sent(err),
            ) from err
        if response.status_code >= 400:
            raise _error_from_response(response, method, path)
        try:
            data = response.json()
        except ValueError as err:
            raise CloudMailsBadResponse(
                f"CloudMails answered {method} {path} with a body that is not JSON.",
                status_code=response.status_code,
                response=response,
            ) from err
        if not isinstance(data, dict):
            raise CloudMailsBadResponse(
                f"CloudMails answered {method} {path} with JSON that is not an object.",
                status_code=response.status_code,
                response=response,
            )
        return data


#: requests errors raised before anything is sent (the URL or a header is malformed).
_BEFORE_SENDING = (
    requests.exceptions.URLRequired,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
)


def _never_sent(err: requests.RequestException) -> bool:
    """Whether ``err`` proves the request never left: the connection was not opened
    (refused, unresolvable host, connect timeout) or the request was not built.

    Anything else (a reset, a closed or timed-out connection after sending, a broken
    answer) may have reached the API.
    """
    if isinstance(err, (requests.exceptions.ConnectTimeout, *_BEFORE_SENDING)):
        return True
    reason = err.args[0] if err.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps it
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


#: ``json.dumps(value, separators=(",", ":"))``, with its encoder built once, not per call.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _encode(message: Message) -> str:
    return message.text if isinstance(message, RawJSON) else _dumps(message)


def _new_session(api_url: str) -> requests.Session:
    """A session that reads proxy and CA settings from the environment once.

    requests otherwise looks them up (and parses ~/.netrc) on every call, which costs
    about a tenth of a millisecond: a sixth of a whole API round trip on loopback.
    """
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(api_url))
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.trust_env = False
    return session


def _error_from_response(response: requests.Response, method: str, path: str) -> CloudMailsError:
    message, field = f"HTTP {response.status_code}", None
    try:
        error = response.json()["error"]
        message = str(error.get("message") or message)
        field = error.get("field")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return error_for_status(
        response.status_code,
        f"CloudMails refused {method} {path} ({response.status_code}): {message}",
        field=field,
        retry_after=_retry_after(response.headers.get("Retry-After")),
        response=response,
    )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _parsed(what: str, build: Callable[[], T], attempts: int = 1) -> T:
    """Build a result from a success body, or say that the body was not what we expect."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        error = CloudMailsBadResponse(
            f"CloudMails answered {what} with an unexpected body ({type(err).__name__}: "
            f"{err}); the message may or may not have been accepted."
        )
        error.attempts = attempts
        raise error from err


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _batch_items(entries: Any, count: int) -> list[BatchItem]:
    """One item per message sent, in request order, as the API promises."""
    items = [_batch_item(entry) for entry in entries]
    if [item.index for item in items] != list(range(count)):
        raise ValueError(f"the entries do not answer the {count} messages in order")
    return items


def _batch_item(entry: Mapping[str, Any]) -> BatchItem:
    error = entry.get("error")
    if error:
        return BatchItem(
            index=int(entry["index"]),
            to=entry.get("to"),
            error=ErrorDetail(
                code=int(error.get("code", 400)),
                message=str(error.get("message", "")),
                field=error.get("field"),
            ),
        )
    return BatchItem(
        index=int(entry["index"]),
        message_id=_string(entry["message_id"]),
        to=entry.get("to"),
    )


def _parse_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
