"""The HTTP layer: a threading HTTP/1.1 server tuned for many keep-alive requests.

Each response (status line, headers, body) goes out in one ``write`` on a TCP_NODELAY
socket; without that, Python's ``http.server`` stalls about 40 ms per keep-alive request
on Nagle's algorithm and delayed ACKs, and the sandbox would be the benchmarks'
bottleneck. Every failure becomes a JSON error; the server keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from django_cloudmails.limits import MAX_REQUEST_BYTES

from .responses import Response, error_response

if TYPE_CHECKING:
    from .api import SandboxAPI

logger = logging.getLogger("django_cloudmails.sandbox")

REASONS = {status.value: status.phrase for status in HTTPStatus}
LINGER_SECONDS = 2.0


class RequestTooLarge(Exception):
    """The body is over :data:`MAX_REQUEST_BYTES`; answer before reading it."""


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Reads one request, asks the API, writes the answer in one piece."""

    protocol_version = "HTTP/1.1"
    server_version = "cloudmails-sandbox"
    timeout = 120  # idle keep-alive connections free their thread eventually
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._dispatch()
        except OSError:
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_REQUEST_BYTES:
            return True  # the 400 comes instead of "100 Continue"
        return super().handle_expect_100()

    def _dispatch(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body = self._read_body(headers)
        except RequestTooLarge:
            self._write(
                error_response(
                    400,
                    f"The request body is larger than {MAX_REQUEST_BYTES} bytes.",
                    "body",
                ),
                close=True,
            )
            self._linger()
            return
        except ValueError as err:
            self._write(error_response(400, str(err), "body"), close=True)
            return
        if body is None:  # the client went away mid-body
            self.close_connection = True
            return
        response = self.server.api.handle(
            self.command, self.path, headers, body, self.client_address[:2]
        )
        if response.outcome != "answered":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(response, close=response.close)

    def _read_body(self, headers: dict[str, str]) -> bytes | None:
        encoding = headers.get("transfer-encoding", "").lower()
        if encoding:
            if encoding != "chunked":
                raise ValueError(f"Unsupported Transfer-Encoding: {encoding}")
            return self._read_chunked()
        raw = headers.get("content-length")
        try:
            length = int(raw) if raw else 0
        except ValueError:
            raise ValueError("Invalid Content-Length header.") from None
        if length < 0:
            raise ValueError("Invalid Content-Length header.")
        if length > MAX_REQUEST_BYTES:
            raise RequestTooLarge
        if not length:
            return b""
        body = self.rfile.read(length)
        return body if len(body) == length else None

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                return None
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("Malformed chunked body.") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_REQUEST_BYTES:
                raise RequestTooLarge
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                return None
            parts.append(chunk[:size])

    def _write(self, response: Response, *, close: bool = False) -> None:
        status = response.status
        lines = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
            "Content-Type: application/json",
            f"Content-Length: {len(response.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if close or self.close_connection:
            self.close_connection = True
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = b"" if self.command == "HEAD" else response.body
        self.wfile.write(head + body)
        if self.server.verbose:
            self.log_request(status, len(response.body))

    def _linger(self) -> None:
        """Discard what the client still sends, so it reads our 400 (lingering close)."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + LINGER_SECONDS
            while time.monotonic() < deadline and self.connection.recv(1 << 16):
                pass
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, huge headers) as JSON too."""
        self.close_connection = True
        if not hasattr(self, "command") or self.command is None:
            self.command = "GET"
        text = message or REASONS.get(int(code), "Error")
        self._write(error_response(int(code), text), close=True)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class SandboxHTTPServer(ThreadingHTTPServer):
    """Tracks connections so that ``close_all`` can end them and join their threads."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: SandboxAPI, *, verbose: bool = False) -> None:
        self.api = api
        self.verbose = verbose
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, SandboxRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="cloudmails-sandbox-connection",
            daemon=True,
        )
        with self._lock:
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # a client that went away is not the sandbox's problem
        logger.exception("Sandbox connection error from %s", client_address)

    def close_all(self, timeout: float = 5.0) -> None:
        """End every open connection and wait for its thread."""
        with self._lock:
            connections = list(self._connections.items())
        for _, sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread, _ in connections:
            thread.join(timeout)
