"""Minimal settings for the test suite. DATABASE_URL selects PostgreSQL, CELERY_BROKER_URL
a Celery broker (Redis or RabbitMQ; by default kombu's filesystem transport).

Celery worker processes started by the tests (tests/conftest.py) read these settings too,
with the test database's name and the test's own settings in the environment.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import django

from django_cloudmails.brokers import FILESYSTEM_TRANSPORT, filesystem_transport_options
from tests.database import is_postgresql, postgresql

#: One id per test run, inherited by its worker processes: their queue, their folder.
RUN_ID = os.environ.setdefault("CLOUDMAILS_TEST_RUN", uuid.uuid4().hex[:12])
RUN_DIR = Path(tempfile.gettempdir()) / f"cloudmails-tests-{RUN_ID}"
#: Set for a worker process: the test database it shares with the test process.
WORKER_DATABASE = os.environ.get("CLOUDMAILS_TEST_DATABASE")
#: A test run or one of its workers (not mypy's plugin, say): it needs the folder.
RUNNING = "pytest" in sys.modules or WORKER_DATABASE is not None
if RUNNING:
    RUN_DIR.mkdir(exist_ok=True)

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_FROM_EMAIL = "Shop <noreply@shop.example>"
SERVER_EMAIL = "server@shop.example"
STATIC_URL = "static/"
ADMINS: list[Any]
MANAGERS: list[Any]
if django.VERSION >= (6, 0):
    ADMINS = ["admin@shop.example"]
    MANAGERS = ["manager@shop.example"]
else:
    ADMINS = [("Admin", "admin@shop.example")]
    MANAGERS = [("Manager", "manager@shop.example")]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # The browser test's live server serves the admin's CSS and scripts.
    "django.contrib.staticfiles",
    "django_cloudmails",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database() -> dict[str, object]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("sqlite:///"):  # a file, for tests that share it with a child process
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url[len("sqlite:///") :]}
    if not is_postgresql(url):
        # A file (in WAL mode, see conftest), not memory: worker processes share it.
        name = WORKER_DATABASE or str(RUN_DIR / "test.sqlite3")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "TEST": {"NAME": name},
            "OPTIONS": {"timeout": 30},
        }
    database = postgresql(url)
    if WORKER_DATABASE:
        database["NAME"] = WORKER_DATABASE
    return database


DATABASES = {"default": _database()}

if django.VERSION >= (6, 1):
    # Django 6.1 deprecates EMAIL_BACKEND (a warning, an error under our pytest config).
    MAILERS = {"default": {"BACKEND": "django_cloudmails.backends.EmailBackend"}}
else:
    EMAIL_BACKEND = "django_cloudmails.backends.EmailBackend"
CLOUDMAILS = {
    "API_KEY": "test-key",
    "API_URL": "http://127.0.0.1:9/v1",
    "WEBHOOK_SECRET": "hook:s3cret",
    "RETRY_BACKOFF": 0.0,
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"visibility_timeout": 60}
if CELERY_BROKER_URL == "filesystem://" and RUNNING:
    CELERY_BROKER_TRANSPORT = FILESYSTEM_TRANSPORT
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_transport_options(
        RUN_DIR / "broker", polling_interval=0.05
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
#: A queue of this run's own: parallel runs on one Redis or RabbitMQ never share tasks.
CELERY_TASK_DEFAULT_QUEUE = f"cloudmails-tests-{RUN_ID}"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_TASK_IGNORE_RESULT = True

# A worker process takes the settings its test set (CLOUDMAILS, MAILERS...).
globals().update(json.loads(os.environ.get("CLOUDMAILS_TEST_SETTINGS") or "{}"))
