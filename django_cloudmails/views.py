"""The webhook endpoint CloudMails posts events to: authenticate, read, record, answer.

Answers, in the order they are decided:

* 405 for any method but POST;
* 401 (``WWW-Authenticate: Basic``) without valid Basic credentials;
* 413 when the body is larger than ``WEBHOOK_MAX_BODY_BYTES`` (checked on Content-Length
  and with a bounded read, so an oversized body is never held in memory); 411 for a
  chunked body on a server that cannot give it to us;
* 403 when signing secrets are set and the signature is missing, wrong or stale;
* 200 ``{"ok": true}`` for a test ping;
* 400 ``{"error": reason}`` for a body that cannot be read at all (not JSON, nested too
  deep, one unreadable event; a list of which no event could be read also carries
  ``"invalid"``); nothing is recorded;
* 200 ``{"received": n, "new": m, "invalid": [{"index": i, "error": reason}, ...]}``
  once every readable event is stored: ``received`` counts the readable events, ``new``
  those stored for the first time, ``invalid`` the unreadable events of a list (each
  also logged), which were skipped;
* 503 when the database fails, so that CloudMails retries (events already stored are
  deduplicated on the retry). No request body can cause a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .conf import app_settings
from .recording import record_events
from .webhooks import (
    InvalidEvent,
    WebhookError,
    check_basic_auth,
    check_signature,
    parse_body,
)

logger = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
#: Unreadable events of one list named in the log line (all are in the answer).
_LOGGED = 10


def _error(status: int, reason: str, invalid: tuple[InvalidEvent, ...] = ()) -> JsonResponse:
    body: dict[str, Any] = {"error": reason}
    if invalid:
        body["invalid"] = [item.as_dict() for item in invalid]
    response = JsonResponse(body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="cloudmails"'
    return response


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes without reading it all.

    A chunked body has no Content-Length, and Django's request stream then reads nothing;
    when the WSGI server says its input ends where the body does
    (``wsgi.input_terminated``, as gunicorn sets it), the body is read from it directly.
    """
    meta = request.META
    length = meta.get("CONTENT_LENGTH")
    if length:
        try:
            declared = int(length)
        except ValueError:
            raise WebhookError(400, "Content-Length is not a number.") from None
        if declared > limit:
            raise WebhookError(413, f"The body is larger than {limit} bytes.")
        read = request.read
    elif meta.get("wsgi.input_terminated"):
        read = meta["wsgi.input"].read
    elif "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        raise WebhookError(
            411,
            "This server cannot read a chunked body: send a Content-Length, or serve the "
            "site with a WSGI server that supports chunked requests (gunicorn does).",
        )
    else:
        return b""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = read(min(_READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise WebhookError(413, f"The body is larger than {limit} bytes.")
    return b"".join(chunks)


def _log_invalid(invalid: tuple[InvalidEvent, ...]) -> None:
    shown = "; ".join(f"events[{item.index}]: {item.error}" for item in invalid[:_LOGGED])
    more = f" (and {len(invalid) - _LOGGED} more)" if len(invalid) > _LOGGED else ""
    logger.warning(
        "Skipped %d unreadable events of a CloudMails webhook list: %s%s",
        len(invalid),
        shown,
        more,
    )


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    """``POST /cloudmails/webhook/``: one event or a list of them from CloudMails."""

    http_method_names = ["post"]

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> JsonResponse:
        response = _error(405, f"Method {request.method} not allowed; use POST.")
        response["Allow"] = "POST"
        return response

    def post(self, request: HttpRequest) -> JsonResponse:
        conf = app_settings
        meta = request.META
        try:
            check_basic_auth(meta.get("HTTP_AUTHORIZATION"), conf.webhook_secrets)
            body = read_body(request, conf.webhook_max_body_bytes)
            if conf.webhook_signing_secrets:
                check_signature(
                    request.headers,
                    body,
                    conf.webhook_signing_secrets,
                    tolerance=conf.webhook_tolerance,
                )
            parsed = parse_body(body, meta.get("HTTP_WEBHOOK_ID") or meta.get("HTTP_SVIX_ID"))
        except WebhookError as err:
            logger.warning("Refused a CloudMails webhook (%s): %s", err.status, err.reason)
            return _error(err.status, err.reason, err.invalid)
        if parsed.ping:
            logger.info("Answered a CloudMails test ping.")
            return JsonResponse({"ok": True})
        if parsed.invalid:
            _log_invalid(parsed.invalid)
        try:
            result = record_events(parsed.events)
        except DatabaseError:
            logger.exception("Could not record CloudMails webhook events; asking for a retry.")
            return _error(503, "The events could not be stored; retry later.")
        return JsonResponse(
            {
                "received": result.received,
                "new": result.new,
                "invalid": [item.as_dict() for item in parsed.invalid],
            }
        )
