"""The sandbox's own reading of address fields and MIME types (RFC 5322, 5321, 2045).

Written independently of the package (which follows whatever Django does), so that a
test against the sandbox can catch the package sending something no mail system takes.
An address field holds one ``mailbox``: ``addr-spec`` or ``[display-name] <addr-spec>``,
with comments allowed where RFC 5322 allows folding whitespace. The display name may be
any Unicode (RFC 6532: the API encodes it); the addr-spec must be what SMTP carries
without SMTPUTF8: ASCII, a local part of at most 64 octets, a host name or an address
literal as domain (RFC 5321), 254 octets in all. CR, LF and other control characters are
refused everywhere: in a JSON field they could only be header injection.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import NamedTuple

ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MIME_ATOM = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CONTENT_TYPE = re.compile(
    rf"\s*({_MIME_ATOM})/({_MIME_ATOM})\s*((?:;\s*{_MIME_ATOM}\s*=\s*(?:{_MIME_ATOM}|\"(?:[^\"\\]|\\.)*\")\s*)*);?\s*"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


class AddressError(ValueError):
    """The value is not one mailbox the API can send to; the message says why."""


class Mailbox(NamedTuple):
    display_name: str
    local_part: str
    domain: str

    @property
    def addr_spec(self) -> str:
        return f"{self.local_part}@{self.domain}"


class _Reader:
    """A cursor over one address field; each method consumes one RFC 5322 production."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise AddressError(f"expected {what} at position {self.at}")
        self.at += 1

    def cfws(self) -> bool:
        """Skip folding whitespace and comments; whether any was there."""
        start = self.at
        while True:
            char = self.peek()
            if char in (" ", "\t"):
                self.at += 1
            elif char == "(":
                self.comment()
            else:
                return self.at > start

    def comment(self) -> None:
        depth = 0
        while True:
            char = self.peek()
            if not char:
                raise AddressError("unclosed comment")
            self.at += 1
            if char == "\\":
                self.quoted_pair()
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return

    def quoted_pair(self) -> str:
        char = self.peek()
        if not char:
            raise AddressError("a backslash ends the value")
        self.at += 1
        return char

    def atom(self, *, unicode: bool) -> str:
        start = self.at
        while (char := self.peek()) and (char in ATEXT or (unicode and ord(char) > 127)):
            self.at += 1
        return self.text[start : self.at]

    def quoted_string(self) -> str:
        self.expect('"', "a quote")
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise AddressError("unclosed quoted string")
            self.at += 1
            if char == '"':
                return "".join(chars)
            chars.append(self.quoted_pair() if char == "\\" else char)

    def dot_atom(self, what: str) -> str:
        parts = [self.atom(unicode=False)]
        while self.peek() == ".":
            self.at += 1
            parts.append(self.atom(unicode=False))
        if not all(parts):
            raise AddressError(f"the {what} has an empty part between dots")
        return ".".join(parts)


@lru_cache(maxsize=4096)  # a batch names one sender 1,000 times; each `to` is read twice
def parse_mailbox(value: str) -> Mailbox:
    """One mailbox from an API address field; :class:`AddressError` if it is not one."""
    if _CONTROL.search(value):
        raise AddressError("control characters (CR, LF...) are not allowed")
    reader = _Reader(value)
    reader.cfws()
    start = reader.at
    words = _phrase(reader)
    if reader.peek() == "<":
        reader.at += 1
        mailbox = _addr_spec(reader, display_name=" ".join(words))
        reader.expect(">", "'>'")
    else:
        reader.at = start
        mailbox = _addr_spec(reader, display_name="")
    reader.cfws()
    if reader.peek():
        raise AddressError(f"unexpected {reader.peek()!r} at position {reader.at}")
    return _checked(mailbox)


def _phrase(reader: _Reader) -> list[str]:
    """The display-name words before ``<`` (none when the field is a bare addr-spec)."""
    words: list[str] = []
    while True:
        if reader.peek() == '"':
            words.append(reader.quoted_string())
        elif reader.peek() == "." and words:  # obs-phrase: "John Q. Public"
            reader.at += 1
            words[-1] += "."
        else:
            word = reader.atom(unicode=True)
            if not word:
                return words
            words.append(word)
        reader.cfws()


def _addr_spec(reader: _Reader, *, display_name: str) -> Mailbox:
    reader.cfws()
    if reader.peek() == '"':
        local = reader.quoted_string()
        local_part = _quoted_local(local)
    else:
        local_part = reader.dot_atom("local part")
    reader.cfws()
    reader.expect("@", "'@'")
    reader.cfws()
    if reader.peek() == "[":
        start = reader.at
        while reader.peek() not in ("]", ""):
            reader.at += 1
        reader.expect("]", "']'")
        domain = reader.text[start : reader.at]
    else:
        domain = reader.dot_atom("domain")
    reader.cfws()
    return Mailbox(display_name, local_part, domain)


def _quoted_local(local: str) -> str:
    if all(char in ATEXT for part in local.split(".") for char in part) and all(local.split(".")):
        return local  # "john.doe" quoted needlessly is john.doe
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _checked(mailbox: Mailbox) -> Mailbox:
    """RFC 5321's limits on what SMTP can carry, on top of RFC 5322's syntax."""
    if not mailbox.addr_spec.isascii():
        raise AddressError("the address must be ASCII (IDNA-encode the domain)")
    if len(mailbox.local_part) > MAX_LOCAL_PART:
        raise AddressError(f"the local part is longer than {MAX_LOCAL_PART} characters")
    if len(mailbox.addr_spec) > MAX_ADDRESS:
        raise AddressError(f"the address is longer than {MAX_ADDRESS} characters")
    if mailbox.domain.startswith("["):
        _check_literal(mailbox.domain[1:-1])
    elif not all(_LABEL.fullmatch(label) for label in mailbox.domain.split(".")):
        raise AddressError(f"{mailbox.domain!r} is not a host name")
    return mailbox


def _check_literal(literal: str) -> None:
    try:
        if literal[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(literal[5:])
        else:
            ipaddress.IPv4Address(literal)
    except ValueError:
        raise AddressError(f"[{literal}] is not an IPv4 or IPv6 address literal") from None


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``("type/subtype", params)`` of an RFC 2045 Content-Type value; ValueError if not."""
    match = _CONTENT_TYPE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a MIME type (type/subtype; name=value...)")
    params = {}
    for part in re.finditer(rf"({_MIME_ATOM})\s*=\s*({_MIME_ATOM}|\"(?:[^\"\\]|\\.)*\")", match[3]):
        raw = part[2]
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[part[1].lower()] = raw
    return f"{match[1]}/{match[2]}".lower(), params
