"""A minimal SMTP server on loopback that keeps what it receives.

Django's own SMTP backend talks to it through smtplib, so what it keeps is exactly what
Django would send: the envelope (``MAIL FROM``, ``RCPT TO``) and the message bytes.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class Envelope:
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    data: bytes = b""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        self.reply("220 test ESMTP")
        envelope = Envelope()
        while line := self.rfile.readline():
            verb, _, argument = line.decode("ascii", "replace").strip().partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.wfile.write(b"250-test\r\n250 8BITMIME\r\n")
            elif verb in ("HELO", "NOOP"):
                self.reply("250 ok")
            elif verb == "MAIL":
                envelope = Envelope(sender=_path(argument))
                self.reply("250 ok")
            elif verb == "RCPT":
                envelope.recipients.append(_path(argument))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                envelope.data = self._data()
                self.server.received.append(envelope)
                self.reply("250 queued")
            elif verb == "RSET":
                envelope = Envelope()
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _data(self) -> bytes:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)


def _path(argument: str) -> str:
    """The address of ``FROM:<a@b> SIZE=1`` / ``TO:<a@b>``."""
    value = argument.partition(":")[2].strip()
    return value[1 : value.index(">")] if value.startswith("<") else value.split()[0]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    received: list[Envelope]


class SMTPServer:
    """``with SMTPServer() as smtp:`` serves on ``smtp.port`` and keeps ``smtp.received``."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.received = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def received(self) -> list[Envelope]:
        return self._server.received

    def __enter__(self) -> SMTPServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
