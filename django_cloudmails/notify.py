"""Our signals for recorded events, sent after commit, each receiver on its own.

``email_event`` goes out once per new event; the event's own signal with it, except
``email_bounced``, which goes out once per Delivery: for the event (webhook or poll) that
moved the Delivery into ``bounced``. A receiver that raises is logged and changes
nothing that was recorded.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

from . import lifecycle, signals
from .models import Delivery, DeliveryEvent

logger = logging.getLogger(__name__)

#: The specific signal sent for each event type (besides ``email_event``).
EVENT_SIGNALS: dict[str, Signal] = {
    lifecycle.EVENT_DELIVERED: signals.email_delivered,
    lifecycle.EVENT_BOUNCED: signals.email_bounced,
    lifecycle.EVENT_OPENED: signals.email_opened,
    lifecycle.EVENT_CLICKED: signals.email_clicked,
    lifecycle.EVENT_UNSUBSCRIBED: signals.email_unsubscribed,
    lifecycle.EVENT_COMPLAINED: signals.email_complained,
}


def send_signals(
    event: DeliveryEvent,
    using: str | None = None,
    *,
    first_bounce: bool = False,
    specific_only: bool = False,
) -> None:
    """Send ``email_event`` and the event's own signal; log receivers that raise.

    ``first_bounce`` says that the event bounced its Delivery (else ``email_bounced`` is
    not sent); ``specific_only`` skips ``email_event`` (an orphan, signalled when it was
    stored, that bounces its Delivery once linked). The Delivery is read from ``using``,
    the database the event was written to (None asks the router), so receivers see the
    row the event just updated.
    """
    specific = EVENT_SIGNALS.get(event.event)
    if event.event == lifecycle.EVENT_BOUNCED and not first_bounce:
        specific = None
    candidates = (specific,) if specific_only else (signals.email_event, specific)
    wanted = [signal for signal in candidates if signal is not None and signal.has_listeners()]
    if not wanted:
        return
    try:
        delivery = (
            Delivery.objects.using(using).filter(pk=event.delivery_id).first()
            if event.delivery_id
            else None
        )
        for signal in wanted:
            responses = signal.send_robust(sender=Delivery, delivery=delivery, event=event)
            for receiver, result in responses:
                if isinstance(result, BaseException):
                    logger.error(
                        "A receiver of the %s signal raised for event %s: %r",
                        event.event,
                        event.pk,
                        receiver,
                        exc_info=result,
                    )
    except Exception:
        logger.exception("Sending signals for CloudMails event %s failed.", event.pk)
