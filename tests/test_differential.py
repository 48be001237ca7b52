"""What reaches the sandbox is what Django's own SMTP backend sends, or the same refusal.

Each example builds one email twice from the same recipe: once sent by Django's SMTP
backend to a loopback SMTP server (the reference: envelope and message bytes as they go
on the wire), once by our backend to the sandbox over HTTP. Both sides are then read the
same way: envelope recipients, decoded subject, addresses and bodies, attachment bytes,
filenames and MIME types. Where the reference raises, ours must raise the same kind of
error (``BadHeaderError`` where Django raises it, else ``ValueError``); where the email
uses a feature the API cannot carry, ours must refuse it as unsupported.

Deliberate differences, asserted as such: the API needs a filename (Django may send
none), a plain-text email also gets an ``html`` (its text in ``<pre>``), and text is
compared modulo the line endings and folding whitespace that SMTP itself rewrites.

Example counts are kept small (see ``EXAMPLES``) so the suite stays fast in ``.ci/run``;
``HYPOTHESIS_DIFFERENTIAL_EXAMPLES`` raises them for a longer local run.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import re
from email.message import EmailMessage as MIMEMessage
from html import escape
from typing import Any

import django
import pytest
from django.core.mail.backends import smtp
from django.core.mail.message import BadHeaderError
from hypothesis import HealthCheck, event, given, settings

from django_cloudmails.backends import EmailBackend
from django_cloudmails.exceptions import CloudMailsUnsupportedFeature
from django_cloudmails.sandbox.mailboxes import parse_content_type, parse_mailbox
from tests.conftest import API_KEY
from tests.email_strategies import EmailSpec, emails
from tests.smtp_server import SMTPServer

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("HYPOTHESIS_DIFFERENTIAL_EXAMPLES", "40"))
EXAMPLE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def smtp_server() -> Any:
    with SMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def any_sender_sandbox() -> Any:
    """A sandbox where every sender is verified: From addresses are generated."""
    from django_cloudmails.sandbox import Sandbox

    with Sandbox(api_key=API_KEY) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(any_sender_sandbox: Any, settings: Any) -> Any:
    settings.CLOUDMAILS = {"API_KEY": API_KEY, "API_URL": any_sender_sandbox.url}
    return any_sender_sandbox


def reference_backend(port: int) -> Any:
    if django.VERSION >= (6, 1):
        return smtp.EmailBackend(alias="reference", host="127.0.0.1", port=port)
    return smtp.EmailBackend(host="127.0.0.1", port=port)


def django_sends(spec: EmailSpec, server: SMTPServer) -> Any:
    """The envelope Django's SMTP backend put on the wire, or the exception it raised."""
    server.received.clear()
    backend = reference_backend(server.port)
    try:
        backend.send_messages([spec.build()])
    except Exception as error:  # the reference's refusal is the result
        backend.close()  # Django 4.2 leaves the connection open when _send() raises
        return error
    (envelope,) = server.received
    return envelope


def we_send(spec: EmailSpec, sandbox: Any) -> Any:
    """The API messages the sandbox received, or the exception our backend raised."""
    sandbox.reset()
    email = spec.build()
    try:
        EmailBackend().send_messages([email])
    except Exception as error:  # our refusal is the result
        return error
    # In the email's ``to`` order (a batch request carries its messages in the order of
    # their row ids): cc and bcc ride on the first.
    received = {message.message_id: message.payload for message in sandbox.messages}
    return [received[row.message_id] for row in email.cloudmails_deliveries]


def error_kind(error: BaseException) -> type[BaseException]:
    """Django's documented exception types: BadHeaderError, else ValueError, else exact."""
    for kind in (BadHeaderError, ValueError):
        if isinstance(error, kind):
            return kind
    return type(error)


# Reading both sides the same way


def spaces(text: str) -> str:
    """Header text modulo folding: whitespace runs are one space, none at the ends."""
    return " ".join(text.split())


def lines(text: str) -> str:
    """Body text modulo SMTP's line endings and the final newline Django may add."""
    text = re.sub(r"\r\n?", "\n", text)
    return text[:-1] if text.endswith("\n") else text


def text_bytes(data: bytes) -> bytes:
    data = re.sub(rb"\r\n?", b"\n", data)
    return data if data.endswith(b"\n") else data + b"\n"


def mailbox_of_header(address: Any) -> tuple[str, str]:
    """Display name without whitespace: Python's folder splits a word into two encoded
    words, which its own parser reads back with a space between them."""
    return "".join(address.display_name.split()), address.addr_spec


def mailbox_of_field(value: str) -> tuple[str, str]:
    """An API address field as a reader decodes it once the API writes it in a header."""
    parse_mailbox(value)  # the sandbox's own reading: it must accept what we send
    (address,) = email.policy.default.header_factory("To", value).addresses
    return mailbox_of_header(address)


def envelope_of_field(value: str) -> str:
    return parse_mailbox(value).addr_spec


def leaves(message: MIMEMessage) -> list[MIMEMessage]:
    """The leaf parts, not descending into attached messages."""
    if message.get_content_type() == "message/rfc822" or not message.is_multipart():
        return [message]
    return [leaf for part in message.iter_parts() for leaf in leaves(part)]  # type: ignore[arg-type]


def addresses(message: MIMEMessage, header: str) -> list[Any]:
    return list(message[header].addresses) if message[header] else []


def django_view(envelope: Any) -> dict[str, Any]:
    message = email.message_from_bytes(envelope.data, policy=email.policy.default)
    assert isinstance(message, MIMEMessage)
    view: dict[str, Any] = {
        "envelope": sorted(envelope.recipients),
        "subject": spaces(str(message["Subject"] or "")),
        "from": mailbox_of_header(message["From"].addresses[0]),
        "to": sorted(mailbox_of_header(a) for h in ("To", "Cc") for a in addresses(message, h)),
        "reply_to": [mailbox_of_header(a) for a in addresses(message, "Reply-To")],
        "text": "",
        "html": None,
        "attachments": [],
    }
    for part in leaves(message):
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html") and part.get_content_disposition() is None:
            view["text" if kind == "text/plain" else "html"] = lines(part.get_content())
        else:
            view["attachments"].append(attachment_of_part(part))
    return view


def attachment_of_part(part: MIMEMessage) -> dict[str, Any]:
    kind = part.get_content_type()
    item = {
        "filename": part.get_filename(),
        "type": kind,
        "charset": part.get_param("charset") if kind.startswith("text/") else None,
        "content_id": str(part["Content-ID"]).strip("<> ") if part["Content-ID"] else None,
    }
    if kind == "message/rfc822":
        inner = part.get_payload(0)
        item["data"] = (spaces(str(inner["Subject"])), lines(inner.get_content()))
    else:
        data = part.get_payload(decode=True)
        item["data"] = text_bytes(data) if kind.startswith("text/") else data
    return item


def our_view(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    first = payloads[0]
    envelope = [envelope_of_field(p["to"]) for p in payloads]
    envelope += [envelope_of_field(v) for v in first.get("cc", []) + first.get("bcc", [])]
    for payload in payloads[1:]:  # every API message carries the same email
        assert {k: v for k, v in payload.items() if k not in ("to", "custom_args")} == {
            k: v for k, v in first.items() if k not in ("to", "custom_args", "cc", "bcc")
        }
    text = first.get("text", "")
    return {
        "envelope": sorted(envelope),
        "subject": spaces(first["subject"]),
        "from": mailbox_of_field(first["from"]),
        "to": sorted(
            mailbox_of_field(v) for v in [p["to"] for p in payloads] + first.get("cc", [])
        ),
        "reply_to": [mailbox_of_field(first["reply_to"])] if "reply_to" in first else [],
        "text": lines(text),
        "html": first["html"],
        "attachments": [attachment_of_item(i) for i in first.get("attachments", [])],
    }


def attachment_of_item(item: dict[str, str]) -> dict[str, Any]:
    kind, params = parse_content_type(item["content_type"])
    data = base64.b64decode(item["content"])
    view: dict[str, Any] = {
        "filename": item["filename"],
        "type": kind,
        "charset": params.get("charset") if kind.startswith("text/") else None,
        "content_id": item.get("content_id"),
    }
    if kind == "message/rfc822":
        inner = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(inner, MIMEMessage)
        view["data"] = (spaces(str(inner["Subject"])), lines(inner.get_content()))
    else:
        view["data"] = text_bytes(data) if kind.startswith("text/") else data
    return view


def assert_same(spec: EmailSpec, theirs: Any, ours: Any) -> None:
    event(f"Django: {type(theirs).__name__}; ours: {type(ours).__name__}")
    if not isinstance(theirs, Exception) and re.search(r"[\r\n]", str(spec.kwargs["subject"])):
        # Django 6.x lets one trailing line break through (Python's policy does), and
        # Python may write it as a blank line that ends the header block, From and To
        # falling into the body. We refuse every CR and LF, as Django < 6.0 does.
        assert django.VERSION >= (6, 0)
        assert isinstance(ours, BadHeaderError), ours
        return
    if isinstance(theirs, Exception):
        assert isinstance(ours, Exception), f"Django refused with {theirs!r}; we sent {ours}"
        assert isinstance(ours, error_kind(theirs)), (ours, theirs)
        assert not isinstance(ours, CloudMailsUnsupportedFeature)
        return
    if spec.unsupported:
        assert isinstance(ours, CloudMailsUnsupportedFeature), ours
        assert ours.field in spec.unsupported
        return
    assert not isinstance(ours, Exception), f"Django sent it; we raised {ours!r}"
    expected, actual = django_view(theirs), our_view(ours)
    actual["html"] = lines(actual["html"])
    if expected["html"] is None or (expected["html"] == "" and actual["html"]):
        # The API needs a non-empty html: a plain email gets its text in <pre>.
        assert ours[0]["html"] == f"<pre>{escape(ours[0].get('text', ''), quote=False)}</pre>"
        actual["html"] = expected["html"]
    for mine, reference in zip(actual["attachments"], expected["attachments"], strict=True):
        if reference["filename"] is None:  # the API needs one; Django sent none
            assert mine["filename"].startswith("attachment-")
            mine["filename"] = None
    # Python's header folder may encode a list's comma into an encoded word (seen with
    # 3.12), so Django's To/Cc can read as fewer mailboxes than it sent to (its
    # envelope has them all): each mailbox its headers show must be one we sent.
    assert set(expected.pop("to")) <= set(actual.pop("to"))
    event(f"compared, {len(expected['attachments'])} attachments")
    assert actual == expected


@EXAMPLE_SETTINGS
@given(spec=emails(attachments=False))
def test_addresses_subjects_and_bodies_match_djangos_smtp_backend(
    spec: EmailSpec, smtp_server: SMTPServer, sandbox: Any
) -> None:
    assert_same(spec, django_sends(spec, smtp_server), we_send(spec, sandbox))


@EXAMPLE_SETTINGS
@given(spec=emails(valid_only=True))
def test_attachments_and_alternatives_match_djangos_smtp_backend(
    spec: EmailSpec, smtp_server: SMTPServer, sandbox: Any
) -> None:
    assert_same(spec, django_sends(spec, smtp_server), we_send(spec, sandbox))
