"""Errors raised by django-cloudmails.

Every failure to send is a :class:`CloudMailsError`; its ``retryable`` attribute says
whether trying the same request again can help, and ``outcome_unknown`` whether the API
may have accepted the request all the same (an attempt may have reached it and no usable
answer came): a message in that state is neither sent nor failed. Configuration mistakes are
:class:`CloudMailsConfigurationError`, deliberately outside that tree, so that
``fail_silently=True`` never hides a broken setup. This module imports nothing from
Django, so the HTTP client stays usable on its own.
"""

from __future__ import annotations

from typing import Any


class CloudMailsError(Exception):
    """Base class of every error about sending or tracking a message."""

    #: Whether repeating the same request may succeed.
    retryable: bool = False
    #: Whether this failure leaves open that the API acted on the request: it may have
    #: reached the API and no usable answer came. An HTTP error status is a definite
    #: answer; so is a connection that never opened.
    ambiguous: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response: Any = None,
        ambiguous: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.response = response
        if ambiguous is not None:
            self.ambiguous = ambiguous
        #: How many requests were made before giving up (set by the client).
        self.attempts = 0
        #: Whether any attempt of the call may have reached the API while none succeeded
        #: (set by the client across retries): the outcome is unknown, whatever this last
        #: error says. Do not send the message again with another key; recovery settles it.
        self.outcome_unknown = self.ambiguous


class CloudMailsAPIError(CloudMailsError):
    """The API answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response: Any = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, response=response)
        #: The request field the API blamed, when it named one.
        self.field = field


class CloudMailsInvalidRequest(CloudMailsAPIError):
    """400: the API refused the message as malformed. Fix the message; do not retry."""


class CloudMailsUnauthorized(CloudMailsAPIError):
    """401: the API key is missing or wrong. Check CLOUDMAILS["API_KEY"]."""


class CloudMailsSenderNotVerified(CloudMailsAPIError):
    """403: the ``from`` address is not a verified sender in the CloudMails dashboard."""


class CloudMailsNotFound(CloudMailsAPIError):
    """404: the API has no such message or endpoint."""


class CloudMailsRateLimited(CloudMailsAPIError):
    """429: too many requests. Wait ``retry_after`` seconds (when given), then retry."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class CloudMailsServerError(CloudMailsAPIError):
    """5xx: CloudMails failed internally. Retrying later usually helps."""

    retryable = True


class CloudMailsTransportError(CloudMailsError):
    """The request did not complete: connection refused, reset, or the response was lost.

    Unless the connection never opened (``ambiguous`` False), the API may or may not have
    accepted the message; a retry with the same Idempotency-Key cannot send it twice
    where the API honours the key.
    """

    retryable = True
    ambiguous = True


class CloudMailsTimeout(CloudMailsTransportError):
    """The API did not answer within the configured timeout."""


class CloudMailsBadResponse(CloudMailsError):
    """The API answered with success but a body we cannot read.

    The message may or may not have been accepted: its row becomes ``unknown``.
    """

    ambiguous = True


class CloudMailsBatchTooLarge(CloudMailsError):
    """More messages than one batch request may carry; split them with ``iter_batches``."""


class CloudMailsInvalidMessage(CloudMailsError):
    """An email cannot become an API message (no ``to``, a bad address, too large)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CloudMailsInvalidAddress(CloudMailsInvalidMessage, ValueError):
    """An address Django refuses (a ``ValueError``, as Django raises) or without a domain."""


class CloudMailsUnencodable(CloudMailsInvalidMessage, ValueError):
    """Text the message's charset cannot encode (Django raises ``UnicodeEncodeError``)."""


class CloudMailsUnsupportedFeature(CloudMailsInvalidMessage):
    """The email uses something the API cannot carry (custom headers, extra HTML parts).

    Remove the feature, or set CLOUDMAILS["IGNORE_UNSUPPORTED_FEATURES"] = True to send
    the message without it.
    """


class CloudMailsSuppressed(CloudMailsError):
    """The recipient is on the suppression list (bounced, complained or unsubscribed)."""

    def __init__(self, message: str, *, address: str, reason: str) -> None:
        super().__init__(message)
        self.address = address
        self.reason = reason


class CloudMailsConfigurationError(Exception):
    """django-cloudmails is set up wrongly; the message names the setting to fix."""


def error_for_status(
    status_code: int,
    message: str,
    *,
    field: str | None = None,
    retry_after: float | None = None,
    response: Any = None,
) -> CloudMailsAPIError:
    """Build the exception that matches an HTTP error status."""
    kw: dict[str, Any] = {
        "status_code": status_code,
        "response": response,
        "field": field,
    }
    if status_code == 429:
        return CloudMailsRateLimited(message, retry_after=retry_after, **kw)
    if status_code >= 500:
        return CloudMailsServerError(message, **kw)
    cls = _BY_STATUS.get(status_code, CloudMailsAPIError)
    return cls(message, **kw)


_BY_STATUS: dict[int, type[CloudMailsAPIError]] = {
    400: CloudMailsInvalidRequest,
    401: CloudMailsUnauthorized,
    403: CloudMailsSenderNotVerified,
    404: CloudMailsNotFound,
}
