"""The admin a support team works in: one module per page.

- :mod:`.deliveries`: the delivery list (filters, columns) and a delivery's page
  (:mod:`.delivery_page` and :mod:`.delivery_status` render its parts, :mod:`.preview`
  serves the HTML body);
- :mod:`.actions`: refreshing from the API (:mod:`.refreshing`), retrying an unknown
  outcome (:mod:`.retrying`) and resending, each behind its own permission and a
  confirmation, their results told in words (:mod:`.outcomes`);
- :mod:`.events`, :mod:`.suppressions`: the other two lists (CSV export and import);
- :mod:`.dashboard`: the delivery dashboard (:mod:`.stats` counts, :mod:`.charts` draws).

Deliveries and events are written by the system and shown read-only; the suppression
list is the one thing staff edit (add by hand or import, delete to lift).
"""

from __future__ import annotations

from .deliveries import DeliveryAdmin
from .events import DeliveryEventAdmin
from .suppressions import SuppressionAdmin

__all__ = ["DeliveryAdmin", "DeliveryEventAdmin", "SuppressionAdmin"]
