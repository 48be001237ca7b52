"""Responses in the wire format, shared by the API and the inspection endpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    """An answer to write, or (``outcome`` "dropped"/"lost") a connection to close."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False
    outcome: str = "answered"


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, json.dumps(payload).encode(), headers or [])


def error_response(
    status: int,
    message: str,
    field: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    """The error body of the wire format; ``field`` only for 400 validation errors."""
    error: dict[str, Any] = {"code": status, "message": message}
    if field is not None:
        error["field"] = field
    return json_response(status, {"error": error}, headers)
