from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CloudMailsConfig(AppConfig):
    name = "django_cloudmails"
    label = "cloudmails"
    verbose_name = _("CloudMails")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_settings

        checks.register(check_settings, "cloudmails")
