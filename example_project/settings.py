"""A small site wired to django-cloudmails, as a user's project would be.

Runs on SQLite in WAL mode with no other service. Point it at the real CloudMails by
setting CLOUDMAILS_API_URL and CLOUDMAILS_API_KEY; by default it talks to a sandbox on
127.0.0.1:8025 (``python -m django_cloudmails.sandbox``). Mail goes out through
``CeleryEmailBackend``: a Celery worker (``example_project/celery.py``) sends it, with
kombu's filesystem transport in a local folder (``EXAMPLE_BROKER_DIR``) unless
CELERY_BROKER_URL names Redis or RabbitMQ.
"""

from __future__ import annotations

import os
from pathlib import Path

import django

from django_cloudmails.brokers import FILESYSTEM_TRANSPORT, filesystem_transport_options
from django_cloudmails.tasks import BEAT_SCHEDULE

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_FROM_EMAIL = "Example Shop <noreply@shop.example>"
SERVER_EMAIL = "alerts@shop.example"
ADMINS = (
    ["delivered+ops@simulator.cloudmails.test"]
    if django.VERSION >= (6, 0)
    else [("Ops", "delivered+ops@simulator.cloudmails.test")]
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cloudmails",
    "example_project.demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

# The caller writes the rows; a Celery worker (python -m celery -A example_project worker)
# sends them. "django_cloudmails.backends.EmailBackend" sends in the caller instead.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django_cloudmails.backends.CeleryEmailBackend")
CLOUDMAILS = {
    "API_KEY": os.environ.get("CLOUDMAILS_API_KEY", "sandbox-key"),
    "API_URL": os.environ.get("CLOUDMAILS_API_URL", "http://127.0.0.1:8025/v1"),
    "WEBHOOK_SECRET": os.environ.get("CLOUDMAILS_WEBHOOK_SECRET", "demo:demo-secret"),
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT = FILESYSTEM_TRANSPORT
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_transport_options(
        os.environ.get("EXAMPLE_BROKER_DIR", BASE_DIR / "broker")
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_cloudmails": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # The worker's line per task: sent, failed, unknown, time.
        "django_cloudmails.sending": {"level": "INFO"},
    },
}
