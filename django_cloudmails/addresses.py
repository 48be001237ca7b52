"""Email addresses parsed and rewritten exactly as the running Django sends them.

Django's SMTP backend is the reference: every envelope address goes through
``django.core.mail.message.sanitize_address`` on Django < 6.0 and through
``email.headerregistry`` (``EmailBackend.prep_address``) on 6.0+, so what one Django
version refuses or rewrites differs from another's. We run the same machinery, so an
address Django refuses is refused with Django's exception type (``ValueError``) and an
address Django rewrites (IDNA domains to punycode, a non-ASCII local part to an
encoded word on < 6.0) is rewritten the same way. Display names are kept decoded, quoted
where RFC 5322 needs it, for the API to encode.

Two refusals are ours, because the API needs a deliverable mailbox: an address without a
domain (Django accepts ``webmaster`` as a local mailbox) and, on Django < 6.0, an
address whose header Django would send malformed (``Ann <ann@example.com``, which
``sanitize_address`` repairs for the envelope but not for the header); Django 6.0+
refuses the latter itself.

The sandbox does not use this module: it checks addresses with its own code, so a test
against it can catch a mistake here.
"""

from __future__ import annotations

from email import _header_value_parser as parser
from email.header import Header
from email.headerregistry import Address, AddressHeader
from functools import lru_cache
from typing import NamedTuple

import django
from django.core.mail.message import sanitize_address
from django.utils.encoding import force_str, punycode

from .exceptions import CloudMailsInvalidAddress

_MODERN = django.VERSION >= (6, 0)
#: Defects Django itself tolerates (a local mailbox is refused below, for the API).
_TOLERATED = frozenset({"addr-spec local part with no domain"})
_NON_ASCII_LOCAL_PART = "local-part contains non-ASCII characters)"


class ParsedAddress(NamedTuple):
    """One mailbox as Django sends it: decoded display name, wire-ready addr-spec."""

    display_name: str
    addr_spec: str

    @property
    def formatted(self) -> str:
        """``Name <addr>`` (name quoted where needed) or the bare addr-spec, for the API."""
        if not self.display_name:
            return self.addr_spec
        return str(Address(display_name=self.display_name, addr_spec=self.addr_spec))


def parse_address(value: object, *, field: str, encoding: str = "utf-8") -> ParsedAddress:
    """``value`` parsed as the running Django's SMTP backend parses it.

    Raises :class:`~.exceptions.CloudMailsInvalidAddress` (a ``ValueError``, as Django
    raises) naming ``field``.
    """
    text = force_str(value)
    try:
        return _parse(text, encoding)
    except ValueError as error:  # UnicodeError (IDNA) included
        raise CloudMailsInvalidAddress(
            f"{field}: {text!r} is not a valid email address ({error}).", field=field
        ) from error


@lru_cache(maxsize=4096)  # a batch parses one sender thousands of times
def _parse(text: str, encoding: str) -> ParsedAddress:
    parsed = _parse_modern(text) if _MODERN else _parse_legacy(text, encoding)
    if not parsed.addr_spec.partition("@")[2]:
        raise ValueError("CloudMails needs an address with a domain")
    return parsed


def _parse_legacy(text: str, encoding: str) -> ParsedAddress:
    """Django < 6.0: ``sanitize_address`` decides, its own parse gives the parts."""
    sanitize_address(text, encoding)  # Django's refusals, with Django's messages
    token, _rest = parser.get_mailbox(text)
    defects = {str(defect) for defect in token.all_defects} - _TOLERATED
    defects.discard(_NON_ASCII_LOCAL_PART)  # Django < 6.0 rewrites it, below
    if defects:
        raise ValueError(f"Django would send the header malformed: {'; '.join(sorted(defects))}")
    local_part = token.local_part
    if not local_part.isascii():
        local_part = Header(local_part, encoding).encode()
    domain = punycode(token.domain or "")
    addr_spec = Address(username=local_part, domain=domain).addr_spec
    return ParsedAddress(token.display_name or "", addr_spec)


def _parse_modern(text: str) -> ParsedAddress:
    """Django 6.0+: ``EmailBackend.prep_address`` with ``force_ascii`` (its default)."""
    parsed = AddressHeader.value_parser(text)
    defects = {str(defect) for defect in parsed.all_defects} - _TOLERATED
    if defects:
        raise ValueError("; ".join(sorted(defects)))
    mailboxes = parsed.all_mailboxes
    if len(mailboxes) != 1:
        raise ValueError("must be a single address")
    mailbox = mailboxes[0]
    addr_spec = mailbox.addr_spec
    if mailbox.domain and not mailbox.domain.isascii():
        addr_spec = str(Address(username=mailbox.local_part, domain=punycode(mailbox.domain)))
    return ParsedAddress(mailbox.display_name or "", addr_spec)
