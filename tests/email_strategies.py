"""Hypothesis strategies for Django emails as users write them.

An :class:`EmailSpec` builds a fresh ``EmailMessage``/``EmailMultiAlternatives`` each
time (so the SMTP reference and our backend never share state), and says which of its
features the API cannot carry, so a differential test knows when "unsupported" is the
right answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from typing import Any

import django
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.functional import lazystr
from hypothesis import strategies as st

ASCII_WORDS = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
LOCAL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
IDN_LABELS = ["bücher", "münchen", "пример", "例え", "ñandú", "straße-x"]
#: Charsets a project may set as message.encoding (None: DEFAULT_CHARSET, utf-8); most
#: emails use the default, so most examples get past the charset to the rest.
CHARSETS = [None] * 6 + ["utf-8", "iso-8859-1", "latin-1", "cp1252", "shift_jis", "koi8-r"]
TEXT = st.characters(blacklist_categories=("Cs", "Cc"))  # printable, any script


@st.composite
def local_parts(draw: st.DrawFn, *, ascii_only: bool = False) -> str:
    kinds = ["atom", "atom", "dotted"] if ascii_only else ["atom", "atom", "dotted", "unicode"]
    if django.VERSION >= (6, 0):
        # Django < 6.0 re-quotes a quoted local part in any header holding non-ASCII
        # text ('"a b"' becomes '"\\"a b\\""'): a bug of its own we do not reproduce.
        kinds.append("quoted")
    kind = draw(st.sampled_from(kinds))
    if kind == "atom":
        return draw(st.text(LOCAL_CHARS, min_size=1, max_size=12))
    if kind == "dotted":
        return ".".join(draw(st.lists(ASCII_WORDS, min_size=2, max_size=3)))
    if kind == "quoted":
        # Always a special inside: Python's Address.addr_spec unquotes "." and "a..b"
        # into something unparsable, a bug we do not reproduce (see addresses.py).
        inner = draw(st.text("abc xyz.", max_size=5)) + draw(st.sampled_from(" ,@()"))
        return '"' + inner + '"'
    return draw(st.sampled_from(["üser", "josé", "用户", "ölaf.x"]))


@st.composite
def domains(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["ascii", "ascii", "idn", "literal"]))
    if kind == "literal":
        return f"[192.0.2.{draw(st.integers(1, 254))}]"
    labels = draw(st.lists(ASCII_WORDS, min_size=1, max_size=2))
    if kind == "idn":
        labels[0] = draw(st.sampled_from(IDN_LABELS))
    return ".".join([*labels, draw(st.sampled_from(["example", "test", "org"]))])


@st.composite
def display_names(draw: st.DrawFn) -> str:
    words = draw(
        st.lists(
            st.one_of(
                ASCII_WORDS,
                st.sampled_from(["Doe,", "O'Brien", '"The Boss"', "Zoë", "Сергей", "日本", "Jr."]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return " ".join(words)


@st.composite
def addresses(draw: st.DrawFn, *, valid_only: bool = False) -> Any:
    """An address as users pass one: bare, ``Name <a@b>`` quoted properly, or raw.

    ``valid_only`` also keeps local parts ASCII: Django checks no address outside the
    envelope (reply_to) beyond line breaks, where the API needs one it can deliver to.
    """
    addr_spec = f"{draw(local_parts(ascii_only=valid_only))}@{draw(domains())}"
    style = draw(st.sampled_from(["bare", "named", "named", "raw", "lazy"]))
    if valid_only and style == "raw":
        style = "named"
    if style == "bare":
        return addr_spec
    name = draw(display_names())
    if style == "raw":  # unquoted: Django refuses names with specials such as commas
        return f"{name} <{addr_spec}>"
    local, _, domain = addr_spec.rpartition("@")
    try:
        formatted = str(Address(display_name=name, addr_spec=addr_spec))
    except ValueError:  # a local part Address() itself rejects: write it by hand
        formatted = f'"{name}" <{local}@{domain}>'
    return lazystr(formatted) if style == "lazy" else formatted


def _text(draw: st.DrawFn, *, max_size: int, lines: bool = True) -> str:
    if not lines:
        return draw(st.text(TEXT, max_size=max_size))
    pieces = st.one_of(st.text(TEXT, max_size=20), st.sampled_from(["\n", "\r\n"]))
    return "".join(draw(st.lists(pieces, max_size=max_size // 10)))


@dataclass
class EmailSpec:
    """A recipe for one email; ``build()`` makes a fresh message from it."""

    kwargs: dict[str, Any]
    multi: bool
    html_body: bool = False
    encoding: str | None = None
    alternatives: list[tuple[str, str]] = field(default_factory=list)
    attachments: list[Callable[[EmailMessage], None]] = field(default_factory=list)
    #: Features the API cannot carry (the backend must refuse them, naming one).
    unsupported: list[str] = field(default_factory=list)

    def build(self) -> EmailMessage:
        cls = EmailMultiAlternatives if self.multi else EmailMessage
        message = cls(**self.kwargs)
        if self.html_body:
            message.content_subtype = "html"
        if self.encoding:
            message.encoding = self.encoding
        for content, mimetype in self.alternatives:
            assert isinstance(message, EmailMultiAlternatives)
            message.attach_alternative(content, mimetype)
        for attach in self.attachments:
            attach(message)
        return message


@st.composite
def emails(draw: st.DrawFn, *, attachments: bool = True, valid_only: bool = False) -> EmailSpec:
    address = addresses(valid_only=valid_only)
    kind = draw(st.sampled_from(["short"] * 7 + ["long", "long", "line-break"]))
    if kind == "short":
        subject = draw(st.text(TEXT, max_size=30))
    elif kind == "long":  # folded by Django
        subject = draw(st.text(TEXT, min_size=100, max_size=300))
    else:
        subject = draw(st.text(TEXT, max_size=5)) + draw(st.sampled_from(["\n", "\r\n", "\r"]))
        subject += draw(st.text(TEXT, max_size=5))
    if valid_only:
        subject = subject.replace("\n", " ").replace("\r", " ")
    kwargs: dict[str, Any] = {
        "subject": lazystr(subject) if draw(st.booleans()) else subject,
        "body": _text(draw, max_size=200),
        "from_email": draw(address),
        "to": draw(st.lists(address, min_size=1, max_size=3)),
        "cc": draw(st.lists(address, max_size=2)),
        "bcc": draw(st.lists(address, max_size=2)),
        # Django checks reply_to only for line breaks (it is no envelope address); the API
        # needs one deliverable mailbox, so a malformed one is refused: see test_addresses.
        "reply_to": draw(
            st.lists(addresses(valid_only=True), max_size=draw(st.sampled_from([1, 1, 1, 2])))
        ),
    }
    spec = EmailSpec(
        kwargs=kwargs, multi=draw(st.booleans()), encoding=draw(st.sampled_from(CHARSETS))
    )
    if len(kwargs["reply_to"]) > 1:
        spec.unsupported.append("reply_to")
    _bodies(draw, spec)
    if attachments:
        for _ in range(draw(st.integers(0, 3))):
            spec.attachments.append(draw(attachment_makers(spec)))
    return spec


def _bodies(draw: st.DrawFn, spec: EmailSpec) -> None:
    if not spec.multi:
        spec.html_body = draw(st.booleans())
        return
    kind = draw(
        st.sampled_from(["none"] * 3 + ["html"] * 5 + ["calendar", "two-html", "html-body"])
    )
    html = "<p>" + _text(draw, max_size=80, lines=False) + "</p>"
    if kind == "html":
        spec.alternatives.append((html, "text/html"))
    elif kind == "calendar":
        spec.alternatives.append(("BEGIN:VCALENDAR\nEND:VCALENDAR\n", "text/calendar"))
        spec.unsupported.append("alternatives")
    elif kind == "two-html":
        spec.alternatives += [(html, "text/html"), ("<p>2</p>", "text/html")]
        spec.unsupported.append("alternatives")
    elif kind == "html-body":  # an html body with a plain-text alternative
        spec.html_body = True
        spec.alternatives.append(("plain", "text/plain"))
        spec.unsupported.append("alternatives")


FILENAMES = st.one_of(
    st.builds("{}.{}".format, ASCII_WORDS, st.sampled_from(["txt", "csv", "bin", "pdf"])),
    st.sampled_from(["résumé.txt", "отчёт.pdf", "my file (1).txt", 'quote"d.txt', "日本.csv"]),
)


@st.composite
def attachment_makers(draw: st.DrawFn, spec: EmailSpec) -> Callable[[EmailMessage], None]:
    """One attachment, of any kind Django takes, as a function attaching it."""
    kinds = ["bytes", "text", "text-bytes", "str-binary", "rfc822", "inline", "mime-text"]
    kind = draw(st.sampled_from(kinds * 3 + ["multi"]))
    filename = draw(FILENAMES)
    if kind == "multi":
        spec.unsupported.append("attachments")
        return lambda m: m.attach(_multipart())
    if kind == "inline":
        cid = draw(ASCII_WORDS)
        png = b"\x89PNG\r\n\x1a\n\x00"
        return lambda m: m.attach(_mime_part(png, "image", "png", filename, cid))
    if kind == "mime-text":
        text = draw(st.text(TEXT, min_size=1, max_size=30))
        return lambda m: m.attach(_mime_part(text, "text", "plain", filename, None))
    args = _ATTACH_ARGUMENTS[kind](draw, filename)
    return lambda m: m.attach(*args)


def _bytes_file(draw: st.DrawFn, filename: str) -> tuple[Any, ...]:
    name = draw(st.one_of(st.none(), st.just(filename)))
    return name, draw(st.binary(max_size=64)), "application/octet-stream"


def _text_file(draw: st.DrawFn, filename: str) -> tuple[Any, ...]:
    mimetype = draw(st.sampled_from(["text/plain", "text/csv", "text/plain; format=flowed"]))
    return filename, _text(draw, max_size=60), mimetype


def _text_bytes_file(draw: st.DrawFn, filename: str) -> tuple[Any, ...]:
    # attach() decodes UTF-8 bytes for text/*, else falls back to octet-stream
    data = draw(st.one_of(st.text(TEXT, max_size=30).map(str.encode), st.binary(max_size=20)))
    return filename, data, "text/plain"


def _str_binary_file(draw: st.DrawFn, filename: str) -> tuple[Any, ...]:
    return filename, draw(st.text(TEXT, max_size=20)), "application/json"


def _forwarded(draw: st.DrawFn, filename: str) -> tuple[Any, ...]:
    inner = EmailMessage(
        draw(st.text(TEXT, max_size=20)), "inner body", "a@example.org", ["b@example.org"]
    )
    return "fwd.eml", inner, "message/rfc822"


_ATTACH_ARGUMENTS: dict[str, Callable[[st.DrawFn, str], tuple[Any, ...]]] = {
    "bytes": _bytes_file,
    "text": _text_file,
    "text-bytes": _text_bytes_file,
    "str-binary": _str_binary_file,
    "rfc822": _forwarded,
}


def _mime_part(content: Any, maintype: str, subtype: str, filename: str, cid: str | None) -> Any:
    if django.VERSION >= (6, 0):  # MIMEBase attachments are deprecated there
        from email.message import MIMEPart

        part = MIMEPart()
        extra: dict[str, Any] = {"cid": f"<{cid}@inline>"} if cid else {}
        if maintype == "text":
            part.set_content(content, subtype=subtype, filename=filename, disposition="attachment")
        else:
            part.set_content(
                content,
                maintype=maintype,
                subtype=subtype,
                filename=filename,
                disposition="inline" if cid else "attachment",
                **extra,
            )
        return part
    from email.mime.image import MIMEImage
    from email.mime.text import MIMEText

    legacy = (
        MIMEText(content, subtype, "utf-8") if maintype == "text" else MIMEImage(content, subtype)
    )
    legacy.add_header("Content-Disposition", "inline" if cid else "attachment", filename=filename)
    if cid:
        legacy.add_header("Content-ID", f"<{cid}@inline>")
    return legacy


def _multipart() -> Any:
    if django.VERSION >= (6, 0):
        from email.message import MIMEPart

        part = MIMEPart()
        part.set_content("one")
        part.add_alternative("<p>one</p>", subtype="html")
        return part
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    return MIMEMultipart("alternative", _subparts=[MIMEText("one"), MIMEText("<p>one</p>", "html")])
