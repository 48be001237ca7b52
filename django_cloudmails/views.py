"""The webhook endpoint CloudMails posts events to: authenticate, parse, record, answer.

Answers, in the order they are decided:

* 405 for any method but POST;
* 401 (``WWW-Authenticate: Basic``) without valid Basic credentials;
* 413 when the body is larger than ``WEBHOOK_MAX_BODY_BYTES`` (checked on Content-Length
  and with a bounded read, so an oversized body is never held in memory);
* 403 when signing secrets are set and the signature is missing, wrong or stale;
* 200 ``{"ok": true}`` for the test ping;
* 400 ``{"error": reason}`` for any malformed body (nothing is recorded);
* 200 ``{"received": n, "new": m}`` once every event is stored;
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
from .webhooks import WebhookError, check_basic_auth, check_signature, parse_body

logger = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024


def _error(status: int, reason: str) -> JsonResponse:
    response = JsonResponse({"error": reason}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="cloudmails"'
    return response


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes without reading it all."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise WebhookError(400, "Content-Length is not a number.") from None
    if declared > limit:
        raise WebhookError(413, f"The body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.read(min(_READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise WebhookError(413, f"The body is larger than {limit} bytes.")
    return b"".join(chunks)


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
        try:
            check_basic_auth(request.META.get("HTTP_AUTHORIZATION"), conf.webhook_secrets)
            body = read_body(request, conf.webhook_max_body_bytes)
            if conf.webhook_signing_secrets:
                check_signature(
                    request.headers,
                    body,
                    conf.webhook_signing_secrets,
                    tolerance=conf.webhook_tolerance,
                )
            parsed = parse_body(body, request.META.get("HTTP_WEBHOOK_ID"))
        except WebhookError as err:
            logger.warning("Refused a CloudMails webhook (%s): %s", err.status, err.reason)
            return _error(err.status, err.reason)
        if parsed.ping:
            return JsonResponse({"ok": True})
        try:
            result = record_events(parsed.events)
        except DatabaseError:
            logger.exception("Could not record CloudMails webhook events; asking for a retry.")
            return _error(503, "The events could not be stored; retry later.")
        return JsonResponse({"received": result.received, "new": result.new})
