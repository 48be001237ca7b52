"""Signals sent when CloudMails reports what happened to a message.

Every signal is sent once per distinct event, after the transaction that recorded it
commits, with two keyword arguments: ``delivery`` (the :class:`~.models.Delivery`, or
``None`` while no row matches the event) and ``event`` (the :class:`~.models.DeliveryEvent`).
"""

from __future__ import annotations

from django.dispatch import Signal

#: Every new event. Receivers get ``delivery`` and ``event``.
email_event = Signal()

#: The recipient's server accepted the message. Receivers get ``delivery`` and ``event``.
email_delivered = Signal()

#: The message bounced; ``delivery.bounce_type`` says hard or soft (an event without a
#: ``bounce_type`` is a hard bounce). Receivers get ``delivery`` and ``event``.
email_bounced = Signal()

#: The recipient marked the message as spam. Receivers get ``delivery`` and ``event``.
email_complained = Signal()

#: The recipient opened the message. Receivers get ``delivery`` and ``event``.
email_opened = Signal()

#: The recipient clicked a link (``event.payload.get("url")``, when the sender gave it).
#: Receivers get ``delivery`` and ``event``.
email_clicked = Signal()

#: The recipient unsubscribed. Receivers get ``delivery`` and ``event``.
email_unsubscribed = Signal()
