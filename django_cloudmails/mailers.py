"""Our backend as configured for a mailer alias: what the commands and the admin's
resend action send with, so that a row goes out again with its own alias's key."""

from __future__ import annotations

import django
from django.conf import settings

from .backends import DEFAULT_ALIAS, EmailBackend
from .exceptions import CloudMailsConfigurationError


def backend_for(alias: str | None = None) -> EmailBackend:
    """The CloudMails backend sending for ``alias`` (None: the default one).

    Django 6.1 ``MAILERS`` builds it from the alias's entry; before that, or without
    ``MAILERS``, only the default alias exists. Raises CloudMailsConfigurationError,
    naming the setting, when there is no such backend of ours.
    """
    if django.VERSION >= (6, 1) and hasattr(settings, "MAILERS"):
        from django.core.mail import mailers

        name = alias or DEFAULT_ALIAS
        if name not in mailers:
            raise CloudMailsConfigurationError(f'MAILERS has no "{name}" alias.')
        backend = mailers[name]
        if not isinstance(backend, EmailBackend):
            raise CloudMailsConfigurationError(
                f'MAILERS["{name}"] does not use the CloudMails backend.'
            )
        return backend
    if alias not in (None, DEFAULT_ALIAS):
        raise CloudMailsConfigurationError(
            f'There is no mailer alias "{alias}": aliases need Django 6.1+ and the MAILERS setting.'
        )
    return EmailBackend(alias=alias)
