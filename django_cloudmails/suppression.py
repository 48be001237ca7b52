"""The suppression list: addresses that bounced hard, complained or unsubscribed.

Sending to them again harms the sender's reputation, so the backend checks here first.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import parseaddr

from .models import DeliveryEvent, Suppression


def normalize_address(address: str) -> str:
    """The bare, lower-cased address of ``"Name <Addr@Example.com>"``."""
    return parseaddr(address)[1].strip().lower() or address.strip().lower()


def suppressed(addresses: Iterable[str]) -> dict[str, str]:
    """Map each suppressed address among ``addresses`` (normalized) to its reason."""
    wanted = {normalize_address(address) for address in addresses}
    if not wanted:
        return {}
    rows = Suppression.objects.filter(address__in=wanted).values_list("address", "reason")
    return dict(rows)


def suppress(address: str, reason: str, event: DeliveryEvent | None = None) -> bool:
    """Add ``address`` to the list; returns False when it was already there."""
    _, created = Suppression.objects.get_or_create(
        address=normalize_address(address),
        defaults={"reason": reason, "source_event": event},
    )
    return bool(created)


def lift(address: str) -> bool:
    """Remove ``address`` from the list; returns False when it was not there."""
    deleted, _ = Suppression.objects.filter(address=normalize_address(address)).delete()
    return bool(deleted)
