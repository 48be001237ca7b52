"""Settings of the campaign benchmark, for its caller and its worker processes
(``DJANGO_SETTINGS_MODULE=benchmarks.campaign_site``): the example project's, with the
database, sandbox, broker folder and queue that ``campaign.py`` chose, passed in the
``CAMPAIGN_*`` environment variables so the workers it starts use the same.
"""

from __future__ import annotations

import os
from pathlib import Path

from django_cloudmails.brokers import filesystem_transport_options
from example_project.settings import *  # noqa: F403
from tests.database import is_postgresql, postgresql

_FOLDER = Path(os.environ["CAMPAIGN_DIR"])
_URL = os.environ.get("DATABASE_URL", "")

DEBUG = False
DATABASES = {
    "default": (
        {
            **postgresql(_URL),
            "NAME": os.environ["CAMPAIGN_DB_NAME"],
            "TEST": {"NAME": os.environ["CAMPAIGN_DB_NAME"]},  # created by campaign.py
        }
        if is_postgresql(_URL)
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_FOLDER / "campaign.sqlite3")}
    )
}
EMAIL_BACKEND = "django_cloudmails.backends.CeleryEmailBackend"
CLOUDMAILS = {
    "API_KEY": "bench-key",
    "API_URL": os.environ["CAMPAIGN_API_URL"],
    "WEBHOOK_SECRET": "bench:bench-secret",
    "RETRY_ATTEMPTS": 1,
}
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    filesystem_transport_options(_FOLDER / "broker") if CELERY_BROKER_URL == "filesystem://" else {}
)
CELERY_TASK_DEFAULT_QUEUE = os.environ["CAMPAIGN_QUEUE"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
