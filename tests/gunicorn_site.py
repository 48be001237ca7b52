"""The settings of the test site gunicorn serves in a child process
(``DJANGO_SETTINGS_MODULE=tests.gunicorn_site``; the app is ``tests.gunicorn_wsgi``).

The child cannot share the suite's in-memory SQLite or its open transactions, so it gets
a database of its own from ``CLOUDMAILS_TEST_SERVER_DATABASE`` (a JSON DATABASES entry),
and a webhook size limit from ``CLOUDMAILS_TEST_SERVER_MAX_BODY``.
"""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403

DATABASES = {"default": json.loads(os.environ["CLOUDMAILS_TEST_SERVER_DATABASE"])}
CLOUDMAILS = {
    **CLOUDMAILS,  # noqa: F405
    "WEBHOOK_MAX_BODY_BYTES": int(os.environ.get("CLOUDMAILS_TEST_SERVER_MAX_BODY", "1048576")),
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
