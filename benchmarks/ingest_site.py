"""The example project on PostgreSQL: settings and WSGI app of the webhook ingestion
benchmark (``DJANGO_SETTINGS_MODULE=benchmarks.ingest_site``; URLs in ``ingest_urls``).

Both endpoints go through the same server, middleware and settings, so the ratio
measures only what the webhook view adds. Persistent connections (``CONN_MAX_AGE``), as
any production PostgreSQL site sets them.
"""

from __future__ import annotations

import os
from typing import Any

from example_project.settings import *  # noqa: F403
from tests.database import postgresql

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/cloudmails_bench"
WEBHOOK_CREDENTIALS = "bench:bench-secret"

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "benchmarks.ingest_urls"
DATABASES = {
    "default": {
        **postgresql(
            os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            default_name="cloudmails_bench",
        ),
        "CONN_MAX_AGE": None,
    }
}
CLOUDMAILS = {**CLOUDMAILS, "WEBHOOK_SECRET": WEBHOOK_CREDENTIALS}  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False}


_application: Any = None


def application(environ: dict[str, Any], start_response: Any) -> Any:
    """The WSGI app, built on first use (this module is also the settings module)."""
    global _application  # noqa: PLW0603
    if _application is None:
        from django.core.wsgi import get_wsgi_application

        _application = get_wsgi_application()
    return _application(environ, start_response)
