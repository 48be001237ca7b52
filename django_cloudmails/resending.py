"""Sending stored messages again: the admin's "resend" action, engine-free.

A resend is a new Delivery (``resent_from`` pointing at the original) carrying the
original's stored API message, sent the way the backend sends: rows written first
(:mod:`~.outbox`), then :mod:`~.dispatch`, with the original alias's backend settings.
It is a new message with a new Idempotency-Key, so the recipient may get it twice:
that is what resending means. Suppressed recipients are refused, as the backend does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.utils import timezone
from django.utils.translation import gettext as _

from . import dispatch, lifecycle, outbox
from .exceptions import CloudMailsConfigurationError, CloudMailsError
from .mailers import backend_for
from .models import Delivery, Suppression
from .payloads import ApiMessage
from .suppression import normalize_address, suppressed


@dataclass
class ResendReport:
    """What became of each original: resent as a new row, or refused and why."""

    resent: list[tuple[Delivery, Delivery]] = field(default_factory=list)
    refused: list[tuple[Delivery, str]] = field(default_factory=list)
    #: Errors of the requests (the new rows record them too).
    errors: list[CloudMailsError] = field(default_factory=list)


def refusal(delivery: Delivery) -> str | None:
    """Why ``delivery`` cannot be resent as it is stored, or None."""
    if delivery.body_purged_at is not None:
        return _("its body was purged, so there is nothing to send again")
    payload = delivery.payload if isinstance(delivery.payload, dict) else {}
    if not payload.get("html") or not payload.get("to"):
        return _("no message was stored for it (it never became an API message)")
    if delivery.status == lifecycle.QUEUED:
        return _("it has not been sent yet: it is still waiting to go out")
    return None


def resend(deliveries: Iterable[Delivery]) -> ResendReport:
    """Send each delivery's stored message again as a new Delivery, per alias."""
    report = ResendReport()
    candidates = []
    for original in deliveries:
        reason = refusal(original)
        if reason is None:
            candidates.append(original)
        else:
            report.refused.append((original, reason))
    blocked = suppressed(original.to_email for original in candidates)
    by_alias: dict[str, list[Delivery]] = {}
    for original in candidates:
        why = blocked.get(normalize_address(original.to_email))
        if why is None:
            by_alias.setdefault(original.alias, []).append(original)
        else:
            label = Suppression.Reason(why).label if why in Suppression.Reason.values else why
            text = _("%(address)s is on the suppression list (%(reason)s)")
            report.refused.append(
                (original, text % {"address": original.to_email, "reason": label})
            )
    for alias, originals in by_alias.items():
        _resend_alias(alias, originals, report)
    return report


def _resend_alias(alias: str, originals: list[Delivery], report: ResendReport) -> None:
    try:
        backend = backend_for(alias)
        opened = backend.open()
    except CloudMailsConfigurationError as error:
        report.refused.extend((original, str(error)) for original in originals)
        return
    try:
        rows = [_new_row(original) for original in originals]
        requests = dispatch.chunks(rows, backend.settings.batch_size)
        outbox.assign_idempotency_keys(requests, batch=len(rows) > 1)
        # Rows committed before the call cannot have orphaned events (see outbox).
        link_orphans = not outbox.insert(rows)
        assert backend.client is not None
        dispatcher = dispatch.Dispatcher(backend.client, link_orphans=link_orphans)
        dispatcher.send(requests)
        report.errors.extend(dispatcher.errors)
        report.resent.extend(zip(originals, rows, strict=True))
    finally:
        if opened:
            backend.close()


def _new_row(original: Delivery) -> Delivery:
    """A ``queued`` row carrying the original's API message, claimed for sending now."""
    message = ApiMessage(
        payload=copy.deepcopy(original.payload),  # its custom_args are set anew
        to_email=original.to_email,
        metadata=dict(original.metadata or {}),
        tags=list(original.tags or []),
    )
    row = outbox.new_delivery(message, alias=original.alias)
    row.resent_from = original
    row.attempt_started_at = timezone.now()
    return row
