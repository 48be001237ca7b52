"""What the sandbox answers: the /v1 endpoints, faults, auth, rate limit, idempotency.

Transport-free (bytes in, :class:`Response` out) so that the HTTP layer in
:mod:`.server` stays a thin, fast writer and this module reads like the contract.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from django_cloudmails.limits import MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES

from .faults import Injection
from .inspection import handle_inspection
from .responses import Response, error_response, json_response
from .state import RequestRecord, SandboxMessage, StoredResponse
from .validation import ValidationError, bare_address, validate_envelope, validate_message

if TYPE_CHECKING:
    from .simulator import Sandbox

logger = logging.getLogger("django_cloudmails.sandbox")

ROUTES: dict[str, str] = {"/v1/send": "POST", "/v1/send/batch": "POST"}
EMAILS_PREFIX = "/v1/emails/"
_NOT_JSON = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """The parsed body, or ``_NOT_JSON`` (invalid JSON, bad UTF-8, too deep)."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return _NOT_JSON


class SandboxAPI:
    """Handles one request against the sandbox's state."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        peer: tuple[str, int] | None = None,
    ) -> Response:
        path = target.split("?", 1)[0]
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return handle_inspection(self.sb, method, path, body)
        data = parse_json(body) if body else None
        record = RequestRecord(
            method,
            path,
            dict(headers),
            body,
            None if data is _NOT_JSON else data,
            peer=peer,
        )
        try:
            response = self._handle(method, path, headers, body, data)
        except Exception:
            logger.exception("Sandbox error on %s %s", method, path)
            response = error_response(500, "Internal sandbox error.")
        record.status = None if response.outcome == "dropped" else response.status
        record.outcome = response.outcome
        self.sb._record(record)
        return response

    def _handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        data: Any,
    ) -> Response:
        path, message_id, refusal = self._route(method, path)
        if refusal is not None:
            return refusal
        injection = self.sb.faults.draw()
        if injection.latency > 0:
            time.sleep(injection.latency)
        early = self._injected(injection)
        if early is not None:
            return early

        api_key = self._authenticate(headers)
        if api_key is None:
            return error_response(
                401, "Missing or invalid API key.", None, [("WWW-Authenticate", "Bearer")]
            )
        wait = self.sb._limiter.acquire(api_key)
        if wait is not None:
            return self._throttled(wait)

        if message_id is not None:
            response = self._status(message_id)
        else:
            response = self._post(path, headers, body, data, api_key)
        if injection.action == "lose":
            return replace(response, outcome="lost", close=True)
        return response

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None, Response | None]:
        """``(path, message_id, 404/405 response or None)`` for a /v1 path."""
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        allowed = ROUTES.get(path)
        message_id = None
        if allowed is None and path.startswith(EMAILS_PREFIX):
            message_id = path[len(EMAILS_PREFIX) :]
            if message_id and "/" not in message_id:
                allowed = "GET"
        if allowed is None:
            return path, None, error_response(404, f"No such endpoint: {path}")
        if method != allowed:
            refusal = error_response(
                405, f"Method {method} not allowed on {path}.", None, [("Allow", allowed)]
            )
            return path, None, refusal
        return path, message_id, None

    def _injected(self, injection: Injection) -> Response | None:
        """The answer a fault gives instead of processing, if any."""
        if injection.action == "drop":
            return Response(0, outcome="dropped", close=True)
        if injection.action == "fail":
            return error_response(injection.status, "Injected server error.")
        if injection.action == "throttle":
            return self._throttled(injection.retry_after)
        return None

    @staticmethod
    def _throttled(retry_after: int) -> Response:
        return error_response(
            429, "Too many requests, slow down.", None, [("Retry-After", str(retry_after))]
        )

    def _authenticate(self, headers: Mapping[str, str]) -> str | None:
        scheme, _, key = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        offered = key.strip().encode()
        for candidate in self.sb.api_keys:
            if hmac.compare_digest(candidate.encode(), offered):
                return candidate
        return None

    def _post(
        self,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        data: Any,
        api_key: str,
    ) -> Response:
        idempotency_key = headers.get("idempotency-key") or None
        if path == "/v1/send":

            def produce() -> StoredResponse:
                return self._send(body, data, idempotency_key)
        else:

            def produce() -> StoredResponse:
                return self._batch(body, data, idempotency_key)

        if idempotency_key is None or self.sb.faults.ignore_idempotency:
            stored = produce()
        else:
            stored, replayed = self.sb._idempotency.run((api_key, idempotency_key), produce)
            if replayed:
                headers_out = [*stored.headers, ("Idempotent-Replayed", "true")]
                return Response(stored.status, stored.body, headers_out)
        return Response(stored.status, stored.body, list(stored.headers))

    @staticmethod
    def _stored_error(err: ValidationError) -> StoredResponse:
        response = error_response(err.status, err.message, err.field if err.status == 400 else None)
        return StoredResponse(response.status, response.body)

    def _check_object(self, data: Any) -> None:
        if data is _NOT_JSON:
            raise ValidationError("The request body is not valid JSON.", "body")
        if not isinstance(data, dict):
            raise ValidationError("The request body must be a JSON object.", "body")

    def _new_message(
        self,
        payload: dict[str, Any],
        status: str,
        idempotency_key: str | None,
        batch_id: str | None = None,
    ) -> SandboxMessage:
        return SandboxMessage(
            message_id=self.sb._new_id("msg"),
            payload=payload,
            to=payload["to"],
            recipient=bare_address(payload["to"]),
            status=status,
            batch_id=batch_id,
            idempotency_key=idempotency_key,
        )

    def _send(self, body: bytes, data: Any, idempotency_key: str | None) -> StoredResponse:
        try:
            self._check_object(data)
            payload = validate_message(data, check_size=len(body) > MAX_MESSAGE_BYTES)
            self.sb._senders.check(payload["from"])
        except ValidationError as err:
            return self._stored_error(err)
        message = self._new_message(payload, "sent", idempotency_key)
        self.sb._store.add([message])
        self.sb._processor.sent(message)
        response = json_response(200, {"message_id": message.message_id, "status": "sent"})
        return StoredResponse(response.status, response.body)

    def _batch(self, body: bytes, data: Any, idempotency_key: str | None) -> StoredResponse:
        try:
            self._check_object(data)
            messages = data.get("messages")
            if "messages" not in data:
                raise ValidationError("Missing required field 'messages'.", "messages")
            if not isinstance(messages, list) or not messages:
                raise ValidationError(
                    "'messages' must be a non-empty list of message objects.", "messages"
                )
            if len(messages) > MAX_BATCH_MESSAGES:
                raise ValidationError(
                    f"A batch holds at most {MAX_BATCH_MESSAGES} messages, not {len(messages)}.",
                    "messages",
                )
            defaults = validate_envelope(data)
        except ValidationError as err:
            return self._stored_error(err)

        check_size = len(body) > MAX_MESSAGE_BYTES
        batch_id = self.sb._new_id("bat")
        entries: list[dict[str, Any]] = []
        accepted: list[SandboxMessage] = []
        for index, raw in enumerate(messages):
            payload = {**defaults, **raw} if defaults and isinstance(raw, dict) else raw
            try:
                validate_message(payload, check_size=check_size)
                self.sb._senders.check(payload["from"])
            except ValidationError as err:
                entries.append({"index": index, "error": err.as_error()})
                continue
            message = self._new_message(payload, "queued", idempotency_key, batch_id)
            accepted.append(message)
            entries.append({"index": index, "message_id": message.message_id, "to": message.to})
        if accepted:
            self.sb._store.add(accepted)
            self.sb._processor.batch(accepted)
        response = json_response(202, {"batch_id": batch_id, "messages": entries})
        return StoredResponse(response.status, response.body)

    def _status(self, message_id: str) -> Response:
        message = self.sb._store.get(message_id)
        if message is None:
            return error_response(404, f"No message with id {message_id!r}.")
        with self.sb._store.lock:
            body = message.status_body()
        return json_response(200, body)
