"""Drop-in behaviour for django-anymail users; anymail itself stays optional.

When anymail is installed, a feature the API cannot carry raises an exception that is
both ours and anymail's (``except CloudMailsUnsupportedFeature`` and ``except
AnymailUnsupportedFeature`` both catch it), ``ANYMAIL["IGNORE_UNSUPPORTED_FEATURES"]`` is
honoured when ``CLOUDMAILS`` does not say (see :mod:`.conf`), and each sent message gets the
``anymail_status`` anymail's own backends give it. Without anymail, only our exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from .exceptions import CloudMailsUnsupportedFeature

if TYPE_CHECKING:
    from .models import Delivery

try:
    from anymail.exceptions import AnymailUnsupportedFeature
    from anymail.message import AnymailRecipientStatus, AnymailStatus
except ImportError:  # pragma: no cover - exercised by the suites without anymail
    ANYMAIL_INSTALLED = False
    UnsupportedFeature: type[CloudMailsUnsupportedFeature] = CloudMailsUnsupportedFeature
else:
    ANYMAIL_INSTALLED = True

    class CloudMailsAnymailUnsupportedFeature(
        CloudMailsUnsupportedFeature,
        AnymailUnsupportedFeature,  # type: ignore[misc]  # anymail ships no types
    ):
        """The API cannot carry a feature of the email: ours and anymail's exception."""

    UnsupportedFeature = CloudMailsAnymailUnsupportedFeature


def unsupported_feature(message: str, *, field: str) -> CloudMailsUnsupportedFeature:
    """The error to raise for a feature the API cannot carry (anymail's too, if installed)."""
    return UnsupportedFeature(message, field=field)


#: anymail's status for a row, by the row's status (see ``anymail.message``).
_STATUS = {"queued": "queued", "unknown": "unknown", "failed": "failed"}
_REFUSED = {"suppressed": "rejected", "invalid": "invalid", "unsupported": "invalid"}


def recipient_status(row: Delivery) -> str:
    """One of anymail's ``ANYMAIL_STATUSES`` for what happened to ``row`` on sending."""
    if row.status == "failed":
        return _REFUSED.get(row.error_code, "failed")
    if row.message_id:
        return "queued" if row.batch_id else "sent"
    return _STATUS.get(row.status, "unknown")


def set_anymail_status(email: Any, rows: Sequence[Delivery]) -> None:
    """Give ``email`` the ``anymail_status`` anymail's backends give it, if installed.

    Every envelope recipient is keyed by its addr-spec, as anymail keys them: the ``to``
    of each row, and the ``cc``/``bcc`` riding on the first row with that row's status
    (their payload values are ours, well-formed, so ``parseaddr`` reads them exactly).
    """
    if not ANYMAIL_INSTALLED:
        return
    status = AnymailStatus()
    recipients: dict[str, AnymailRecipientStatus] = {}
    for position, row in enumerate(rows):
        own = AnymailRecipientStatus(row.message_id or None, recipient_status(row))
        recipients.setdefault(row.to_email, own)
        if position == 0:
            for value in _copies(row.payload):
                recipients.setdefault(parseaddr(value)[1], own)
    status.set_recipient_status(recipients)
    status.esp_response = None
    email.anymail_status = status


def _copies(payload: Any) -> Iterable[str]:
    if not isinstance(payload, dict):
        return ()
    return [*payload.get("cc", ()), *payload.get("bcc", ())]
