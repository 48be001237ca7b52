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
address whose header Django would send malformed (``Ann <ann@example.com``: an invalid,
not merely obsolete, syntax that ``sanitize_address`` repairs for the envelope but not
for the header); Django 6.0+ refuses the latter itself.

The sandbox does not use this module: it checks addresses with its own code, so a test
against it can catch a mistake here.
"""

from __future__ import annotations

import re
from email import _header_value_parser as parser
from email import errors
from email.header import Header
from email.headerregistry import AddressHeader
from functools import lru_cache
from typing import NamedTuple

import django
from django.core.mail.message import sanitize_address
from django.utils.encoding import force_str, punycode

from .exceptions import CloudMailsInvalidAddress

_MODERN = django.VERSION >= (6, 0)
#: Defects Django itself tolerates (a local mailbox is refused below, for the API).
_TOLERATED = frozenset({"addr-spec local part with no domain"})
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: ``local@domain`` in plain ASCII (a dot-atom, then short labels): every Django version
#: sends it unchanged, so the parsers are not needed (they cost ~50 us an address).
_PLAIN = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")


class ParsedAddress(NamedTuple):
    """One mailbox as Django sends it: decoded display name, wire-ready addr-spec."""

    display_name: str
    addr_spec: str

    @property
    def formatted(self) -> str:
        """``Name <addr>`` (name quoted where needed) or the bare addr-spec, for the API."""
        name = self.display_name
        if not name:
            return self.addr_spec
        if not parser.SPECIALS.isdisjoint(name):  # as Address.__str__ quotes it
            name = parser.quote_string(name)
        return f"{name} <{self.addr_spec}>"


def parse_address(value: object, *, field: str, encoding: str = "utf-8") -> ParsedAddress:
    """``value`` parsed as the running Django's SMTP backend parses it.

    Raises :class:`~.exceptions.CloudMailsInvalidAddress` (a ``ValueError``, as Django
    raises) naming ``field``.
    """
    text = force_str(value)
    if _PLAIN.fullmatch(text):
        return ParsedAddress("", text)
    try:
        return _parse(text, encoding)
    # UnicodeError (IDNA) is a ValueError; the standard library's header parser raises
    # HeaderParseError, and on some Python releases (3.12.1) IndexError for ``ann@``.
    except (ValueError, errors.HeaderParseError, IndexError) as error:
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
    # Obsolete syntax (``Jr. <a@b>``) still reads fine; a non-ASCII local part is
    # rewritten below, as Django < 6.0 rewrites it.
    defects = {
        str(defect) for defect in token.all_defects if type(defect) is errors.InvalidHeaderDefect
    } - _TOLERATED
    if defects:
        raise ValueError(f"Django would send the header malformed: {'; '.join(sorted(defects))}")
    local_part = token.local_part
    if not local_part.isascii():
        local_part = Header(local_part, encoding).encode()
    domain = punycode(token.domain or "")
    return ParsedAddress(token.display_name or "", _addr_spec(local_part, domain))


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
    domain = mailbox.domain or ""
    if not domain.isascii():
        domain = punycode(domain)
    return ParsedAddress(mailbox.display_name or "", _addr_spec(mailbox.local_part, domain))


def _addr_spec(local_part: str, domain: str) -> str:
    """``local@domain``, the local part quoted unless it is a dot-atom.

    ``Address.addr_spec`` (which Django uses) leaves a quoted ``"."`` or ``"a..b"``
    unquoted, which no longer parses; quoting by the RFC 5322 rule keeps the same mailbox.
    """
    atoms = local_part.split(".")
    if not all(atoms) or any(not parser.DOT_ATOM_ENDS.isdisjoint(atom) for atom in atoms):
        local_part = parser.quote_string(local_part)
    return f"{local_part}@{domain}" if domain else local_part
