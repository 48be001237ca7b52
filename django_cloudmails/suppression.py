"""The suppression list: addresses that bounced hard, complained or unsubscribed.

Sending to them again harms the sender's reputation, so the backend checks here first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import parseaddr

from django.db import connections, router

from .models import DeliveryEvent, Suppression

#: Addresses per SELECT, well under every database's parameter limit.
LOOKUP_CHUNK = 500

_ATOM = r'[^\s"(),.:;<>@\[\\\]]+'
#: A bare address of dot-separated atoms: ``parseaddr`` returns such a string unchanged.
_BARE_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*")


def normalize_address(address: str) -> str:
    """The bare, lower-cased address of ``"Name <Addr@Example.com>"``."""
    if _BARE_ADDRESS.fullmatch(address):
        # The common case, and every Delivery.to_email: parseaddr costs ~6 us an address.
        return address.lower()
    return parseaddr(address)[1].strip().lower() or address.strip().lower()


def suppressed(addresses: Iterable[str]) -> dict[str, str]:
    """Map each suppressed address among ``addresses`` (normalized) to its reason.

    One plain SELECT: it runs before every send, and the ORM's query building costs
    about 0.12 ms, as much as the SELECT itself nine times over.
    """
    wanted = sorted({normalize_address(address) for address in addresses})
    if not wanted:
        return {}
    connection = connections[router.db_for_read(Suppression)]
    quote = connection.ops.quote_name
    found: dict[str, str] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        sql = "SELECT {}, {} FROM {} WHERE {} IN ({})".format(  # noqa: S608 - model names
            quote("address"),
            quote("reason"),
            quote(Suppression._meta.db_table),
            quote("address"),
            ", ".join(["%s"] * len(chunk)),
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, chunk)
            found.update(cursor.fetchall())
    return found


def suppress(
    address: str, reason: str, event: DeliveryEvent | None = None, *, using: str | None = None
) -> bool:
    """Add ``address`` to the list; returns False when it was already there (the first
    reason wins). ``using`` is the database alias; None asks the router."""
    _, created = Suppression.objects.using(using).get_or_create(
        address=normalize_address(address),
        defaults={"reason": reason, "source_event": event},
    )
    return bool(created)


def lift(address: str) -> bool:
    """Remove ``address`` from the list; returns False when it was not there."""
    deleted, _ = Suppression.objects.filter(address=normalize_address(address)).delete()
    return bool(deleted)
