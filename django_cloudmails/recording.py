"""Recording webhook events against Delivery rows (owned by the webhook work, issue 4)."""

from __future__ import annotations

from collections.abc import Collection


def apply_orphan_events(message_ids: Collection[str]) -> int:
    """Link and apply stored events that arrived before their Delivery knew its
    message id. Called by the outbox after it stores message ids. Returns how many."""
    return 0
