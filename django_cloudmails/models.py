"""What django-cloudmails stores: a row per API message, per webhook event, per
suppressed address."""

from __future__ import annotations

import uuid

from django.db import models, router
from django.utils.translation import gettext_lazy as _

from . import lifecycle


class Delivery(models.Model):
    """One API message: one recipient of one email, from queued to its final fate.

    The row is written (``queued``) before the API call, so a crash or a lost response
    never loses the message; its id travels in ``custom_args`` and the Idempotency-Key,
    so events and retries find it again. Status changes only through the lifecycle.
    """

    class Status(models.TextChoices):
        QUEUED = lifecycle.QUEUED, _("queued")
        UNKNOWN = lifecycle.UNKNOWN, _("outcome unknown")
        SENT = lifecycle.SENT, _("sent")
        DEFERRED = lifecycle.DEFERRED, _("deferred")
        DELIVERED = lifecycle.DELIVERED, _("delivered")
        FAILED = lifecycle.FAILED, _("failed")
        BOUNCED = lifecycle.BOUNCED, _("bounced")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    alias = models.CharField(_("mailer alias"), max_length=64, default="default")
    #: NULL until the API accepts the message: unique, yet many rows may have none.
    message_id = models.CharField(  # noqa: DJ001
        _("message id"), max_length=128, null=True, blank=True
    )
    batch_id = models.CharField(_("batch id"), max_length=128, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    to_email = models.CharField(_("to"), max_length=320)
    from_email = models.CharField(_("from"), max_length=320)
    subject = models.TextField(_("subject"), blank=True)
    #: The API message as sent (attachments included), enough to send it again.
    payload = models.JSONField(_("payload"), default=dict)
    #: The user's custom_args / metadata, without our own keys.
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    tags = models.JSONField(_("tags"), default=list, blank=True)

    #: The Idempotency-Key of the request the row goes out in, set before it is written:
    #: a row left ``queued`` by a lost answer is resent safely under the same key (the
    #: rows of one batch request share it and go together).
    idempotency_key = models.CharField(_("idempotency key"), max_length=64, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    #: Set before a request carrying the row goes out: a ``queued`` row with it set may
    #: have reached the API (a killed process leaves such rows for recovery).
    attempt_started_at = models.DateTimeField(_("attempt started"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=32, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    sent_at = models.DateTimeField(_("accepted by the API"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    bounced_at = models.DateTimeField(_("bounced"), null=True, blank=True)
    bounce_type = models.CharField(_("bounce type"), max_length=16, blank=True)
    bounce_reason = models.TextField(_("bounce reason"), blank=True)
    complained_at = models.DateTimeField(_("complained"), null=True, blank=True)
    unsubscribed_at = models.DateTimeField(_("unsubscribed"), null=True, blank=True)
    first_opened_at = models.DateTimeField(_("first opened"), null=True, blank=True)
    last_opened_at = models.DateTimeField(_("last opened"), null=True, blank=True)
    first_clicked_at = models.DateTimeField(_("first clicked"), null=True, blank=True)
    last_clicked_at = models.DateTimeField(_("last clicked"), null=True, blank=True)
    opens = models.PositiveIntegerField(_("opens"), default=0)
    clicks = models.PositiveIntegerField(_("clicks"), default=0)
    body_purged_at = models.DateTimeField(_("body purged"), null=True, blank=True)

    #: When status polling next asks the API about this row, and how often it has.
    next_poll_at = models.DateTimeField(_("next status poll"), null=True, blank=True)
    polls = models.PositiveSmallIntegerField(_("status polls"), default=0)
    #: How often recovery has tried to settle this row (it stops at RECOVER_ATTEMPTS).
    recoveries = models.PositiveSmallIntegerField(_("recovery tries"), default=0)
    #: The delivery this one resends (the admin's "resend" action).
    resent_from = models.ForeignKey(
        "self",
        verbose_name=_("resent from"),
        related_name="resends",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,
    )

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-created_at"]
        # Declared here rather than with unique=/db_index=, which on PostgreSQL add a
        # second, LIKE-only index to every CharField: writes pay for each index.
        constraints = [
            models.UniqueConstraint(fields=["message_id"], name="cloudmails_message_id_uniq"),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="cloudmails_created_idx"),
            models.Index(fields=["status", "created_at"], name="cloudmails_status_idx"),
            models.Index(fields=["to_email"], name="cloudmails_to_email_idx"),
            # Resends are rare: only they are indexed, so sending pays nothing for it.
            models.Index(
                fields=["resent_from"],
                condition=models.Q(resent_from__isnull=False),
                name="cloudmails_resent_from_idx",
            ),
            # The admin's batch filter; a single send has no batch id and no entry.
            models.Index(
                fields=["batch_id"], condition=~models.Q(batch_id=""), name="cloudmails_batch_idx"
            ),
        ]
        permissions = [
            ("resend_delivery", _("Can resend deliveries")),
            ("refresh_delivery", _("Can refresh delivery status from the API")),
            ("retry_delivery", _("Can retry deliveries whose outcome is unknown")),
        ]

    def __str__(self) -> str:
        return f"{self.subject!r} to {self.to_email} ({self.status})"


def delivery_database() -> str:
    """The alias Delivery rows are written to (the app's models share it: check E007)."""
    return router.db_for_write(Delivery)


class DeliveryEvent(models.Model):
    """One distinct webhook event, stored once however often it is delivered.

    ``delivery`` is empty while no row matches (the events of a batch can arrive before
    its response); such events are applied when the row learns its message id.
    """

    class Event(models.TextChoices):
        DELIVERED = lifecycle.EVENT_DELIVERED, _("delivered")
        BOUNCED = lifecycle.EVENT_BOUNCED, _("bounced")
        OPENED = lifecycle.EVENT_OPENED, _("opened")
        CLICKED = lifecycle.EVENT_CLICKED, _("clicked")
        UNSUBSCRIBED = lifecycle.EVENT_UNSUBSCRIBED, _("unsubscribed")
        COMPLAINED = lifecycle.EVENT_COMPLAINED, _("complained")
        DEFERRED = lifecycle.EVENT_DEFERRED, _("deferred")
        FAILED = lifecycle.EVENT_FAILED, _("failed")

    delivery = models.ForeignKey(
        Delivery,
        verbose_name=_("delivery"),
        related_name="events",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
    )
    #: ``webhook-id`` when the sender gives one, else a digest of the event's content.
    dedupe_key = models.CharField(_("dedupe key"), max_length=128)
    #: Any short string: event types the lifecycle does not know are stored too.
    event = models.CharField(_("event"), max_length=64, choices=Event.choices)
    message_id = models.CharField(_("message id"), max_length=128)
    #: The Delivery id carried in custom_args, for matching before message_id is known.
    delivery_ref = models.UUIDField(_("delivery reference"), null=True, blank=True)
    recipient = models.CharField(_("recipient"), max_length=320, blank=True)
    occurred_at = models.DateTimeField(_("occurred"))
    received_at = models.DateTimeField(_("received"), auto_now_add=True)
    payload = models.JSONField(_("payload"), default=dict)

    class Meta:
        verbose_name = _("delivery event")
        verbose_name_plural = _("delivery events")
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["dedupe_key"], name="cloudmails_dedupe_key_uniq"),
        ]
        # Only orphans (no delivery yet) are looked up by message id or Delivery id, so
        # the indexes hold only them and cost the common insert nothing.
        indexes = [
            models.Index(
                fields=["message_id"],
                condition=models.Q(delivery__isnull=True),
                name="cloudmails_orphan_event_idx",
            ),
            models.Index(
                fields=["delivery_ref"],
                condition=models.Q(delivery__isnull=True),
                name="cloudmails_orphan_ref_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} for {self.message_id}"


class Suppression(models.Model):
    """An address we no longer send to, and why."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = lifecycle.HARD_BOUNCE, _("hard bounce")
        SOFT_BOUNCE = lifecycle.SOFT_BOUNCE, _("soft bounce")
        COMPLAINED = lifecycle.COMPLAINED, _("complained")
        UNSUBSCRIBED = lifecycle.UNSUBSCRIBED, _("unsubscribed")
        MANUAL = lifecycle.MANUAL, _("added by hand")

    #: Lower-cased bare address.
    address = models.CharField(_("address"), max_length=320)
    reason = models.CharField(_("reason"), max_length=16, choices=Reason.choices)
    source_event = models.ForeignKey(
        DeliveryEvent,
        verbose_name=_("source event"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("suppression")
        verbose_name_plural = _("suppressions")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["address"], name="cloudmails_suppressed_address_uniq"),
        ]
        # The newest-first list and the dashboard's growth chart.
        indexes = [models.Index(fields=["-created_at"], name="cloudmails_suppr_created_idx")]

    def __str__(self) -> str:
        return f"{self.address} ({self.get_reason_display()})"


class SendingPace(models.Model):
    """When background sending may next put a request on the wire, shared by every
    worker (see :mod:`django_cloudmails.pacing`): ``RATE_LIMIT`` books time here, and a
    429's ``Retry-After`` pushes it back for everyone. Times are the database's clock."""

    name = models.CharField(_("name"), max_length=32, primary_key=True)
    not_before = models.DateTimeField(_("not before"))

    class Meta:
        verbose_name = _("sending pace")
        verbose_name_plural = _("sending paces")

    def __str__(self) -> str:
        return f"{self.name}: not before {self.not_before:%Y-%m-%d %H:%M:%S.%f}"


class DeliveryRollup(models.Model):
    """The dashboard's counts of the deliveries created in one 15-minute slot.

    Written only by :mod:`~django_cloudmails.rollup`: slots below the watermark are
    filled once from the table, then kept exact by database triggers on Delivery. A
    shard spreads concurrent updates of one slot over several rows (sum them).
    """

    #: ``floor(epoch seconds / 900)`` of ``created_at`` (UTC).
    slot = models.BigIntegerField(_("slot"))
    alias = models.CharField(_("mailer alias"), max_length=64)
    shard = models.PositiveSmallIntegerField(_("shard"), default=0)
    # Signed: one shard may hold only the minus side of a change.
    total = models.IntegerField(_("created"), default=0)
    sent = models.IntegerField(_("sent"), default=0)
    delivered = models.IntegerField(_("delivered"), default=0)
    bounced = models.IntegerField(_("bounced"), default=0)
    failed = models.IntegerField(_("failed"), default=0)
    unknown = models.IntegerField(_("outcome unknown"), default=0)
    complained = models.IntegerField(_("complained"), default=0)
    opened = models.IntegerField(_("opened"), default=0)
    clicked = models.IntegerField(_("clicked"), default=0)
    unsubscribed = models.IntegerField(_("unsubscribed"), default=0)

    class Meta:
        verbose_name = _("delivery rollup")
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(
                fields=["slot", "alias", "shard"], name="cloudmails_rollup_slot_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"slot {self.slot} {self.alias}/{self.shard}: {self.total}"


class BounceRollup(models.Model):
    """Bounced deliveries per 15-minute slot, recipient domain and reason (the first 200
    characters), kept like :class:`DeliveryRollup`."""

    slot = models.BigIntegerField(_("slot"))
    alias = models.CharField(_("mailer alias"), max_length=64)
    shard = models.PositiveSmallIntegerField(_("shard"), default=0)
    domain = models.CharField(_("recipient domain"), max_length=320)
    reason = models.CharField(_("bounce reason"), max_length=200)
    count = models.IntegerField(_("bounces"), default=0)

    class Meta:
        verbose_name = _("bounce rollup")
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(
                fields=["slot", "alias", "shard", "domain", "reason"],
                name="cloudmails_bounce_rollup_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"slot {self.slot} {self.domain}: {self.count}"


class RollupState(models.Model):
    """One row: the slots below ``watermark`` are in the rollups (NULL: none yet)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    watermark = models.BigIntegerField(_("watermark"), null=True, blank=True)

    class Meta:
        verbose_name = _("rollup state")
        default_permissions = ()

    def __str__(self) -> str:
        return f"rollup below slot {self.watermark}"
