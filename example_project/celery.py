"""The example site's Celery app: ``python -m celery -A example_project worker -l INFO``.

With no ``CELERY_BROKER_URL`` the broker is kombu's filesystem transport in
``example_project/broker/`` (or ``EXAMPLE_BROKER_DIR``), so nothing needs a server; the
demo starts a worker of this app by itself. Set ``CELERY_BROKER_URL`` to a
``redis://`` or ``amqp://`` URL for a real broker. ``celery -A example_project beat``
runs the polling and recovery schedule (``CELERY_BEAT_SCHEDULE`` in the settings).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
