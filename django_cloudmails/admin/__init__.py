"""The admin a support team works in: one module per page.

- :mod:`.deliveries`: the delivery list (filters, columns) and a delivery's page
  (:mod:`.delivery_page` renders its parts, :mod:`.preview` serves the HTML body);
- :mod:`.actions`: resending, each action behind its own permission and confirmation;
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
