"""The ``/_sandbox/`` inspection API: a loopback tool for looking inside, no auth.

Lets a developer running ``python -m django_cloudmails.sandbox`` see what arrived, reset
it, flip faults and point webhooks somewhere without writing Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .responses import Response, error_response, json_response

if TYPE_CHECKING:
    from .simulator import Sandbox


def _ok(payload: Any, status: int = 200) -> Response:
    return json_response(status, payload)


def _error(status: int, message: str, allow: str | None = None) -> Response:
    return error_response(status, message, None, [("Allow", allow)] if allow else None)


def _body(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def handle_inspection(sb: Sandbox, method: str, path: str, body: bytes) -> Response:
    """Answer one ``/_sandbox/...`` request."""
    path = path.rstrip("/")
    argument = None
    if path.startswith("/_sandbox/messages/"):
        path, _, argument = path.rpartition("/")
        path += "/<id>"
    handlers = ENDPOINTS.get(path)
    if handlers is None:
        return _error(404, f"No such sandbox endpoint: {path}")
    handler = handlers.get(method)
    if handler is None:
        allow = ", ".join(handlers)
        return _error(405, f"Method {method} not allowed.", allow)
    return handler(sb, argument, body)


def _list_messages(sb: Sandbox, _: str | None, body: bytes) -> Response:
    with sb._store.lock:
        return _ok([message.inspect() for message in sb.messages])


def _delete_messages(sb: Sandbox, _: str | None, body: bytes) -> Response:
    count = len(sb.messages)
    sb.reset()
    return _ok({"deleted": count})


def _show_message(sb: Sandbox, message_id: str | None, body: bytes) -> Response:
    message = sb._store.get(message_id or "")
    if message is None:
        return _error(404, "No such message.")
    with sb._store.lock:
        return _ok(message.inspect())


def _list_requests(sb: Sandbox, _: str | None, body: bytes) -> Response:
    """What arrived, without bodies or headers (they hold API keys): for counting
    requests and their messages from another process."""
    with sb._requests_lock:
        records = list(sb.requests)
    return _ok(
        [
            {
                "method": record.method,
                "path": record.path,
                "status": record.status,
                "outcome": record.outcome,
                "received_at": record.received_at,
                "messages": _message_count(record.json),
            }
            for record in records
        ]
    )


def _message_count(data: Any) -> int:
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return len(data["messages"])
    return 1 if isinstance(data, dict) else 0


def _show_faults(sb: Sandbox, _: str | None, body: bytes) -> Response:
    return _ok(sb.faults.as_dict())


def _set_faults(sb: Sandbox, _: str | None, body: bytes) -> Response:
    data = _body(body)
    if data is None:
        return _error(400, "Send a JSON object of fault fields.")
    try:
        sb.faults.update(data)
    except (KeyError, TypeError, ValueError) as err:
        return _error(400, f"Bad fault field or value: {err}")
    return _ok(sb.faults.as_dict())


def _show_webhook(sb: Sandbox, _: str | None, body: bytes) -> Response:
    return _ok(_webhook_state(sb))


def _set_webhook(sb: Sandbox, _: str | None, body: bytes) -> Response:
    data = _body(body)
    url = data.get("url") if data else None
    if url is not None and not isinstance(url, str):
        return _error(400, 'Send {"url": "http://..."}.')
    try:
        sb.configure_webhook(url)
    except ValueError as err:
        return _error(400, str(err))
    return _ok(_webhook_state(sb))


Handler = Callable[["Sandbox", "str | None", bytes], Response]

ENDPOINTS: dict[str, dict[str, Handler]] = {
    "/_sandbox/messages": {"GET": _list_messages, "DELETE": _delete_messages},
    "/_sandbox/messages/<id>": {"GET": _show_message},
    "/_sandbox/requests": {"GET": _list_requests},
    "/_sandbox/faults": {"GET": _show_faults, "POST": _set_faults},
    "/_sandbox/webhook": {"GET": _show_webhook, "POST": _set_webhook},
}


def _webhook_state(sb: Sandbox) -> dict[str, Any]:
    return {
        # The URL's password and the signing secret are the application's real webhook
        # credentials, and this API has no auth: show neither.
        "url": sb._sender.redacted_url,
        "attempts": [
            {
                "webhook_id": webhook_id,
                "result": result,
                "body": body.decode(errors="replace"),
            }
            for webhook_id, result, body in list(sb.webhook_attempts)
        ],
    }
